"""Every push provider, found by name — and the one list to add a provider to.

A delivery row names its provider (``apns``, ``fcm``, ``sandbox``), chosen by the API when the
push was accepted from the device's platform and the key's mode (:meth:`Registry.provider_for`).
The worker looks that name up here, connects the provider from the project's credential and
has it spell and send the push. A name nobody registered is :class:`UnknownProvider`, and the
delivery fails saying so; a platform or push kind a provider does not declare fails the same
way (:class:`workers.providers.base.Unsendable`). Nothing falls back to another provider.

Adding a provider is its module (a :class:`~workers.providers.base.ProviderKind` and the
connected provider, see ``base.py``) and its line in :data:`LIVE`; the sandbox then spells
test-mode pushes for its platforms as it does.

The API reaches this registry only through ``controlplane/app.py``, which hands it to the app
as ``app.state.providers``: the HTTP layer knows it as a
:class:`controlplane.payloads.ProviderCatalog` and never imports the worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from controlplane.models.devices import TokenSlot
from controlplane.payloads import ProviderCatalog, PushContent, WirePreview, WireSize
from controlplane.settings import Settings
from workers.providers import apns, fcm
from workers.providers.base import Credential, Provider, ProviderKind
from workers.providers.sandbox import sandbox_of


class UnknownProvider(LookupError):
    """No registered provider has this name, or none sends to this platform."""


class Registry:
    """The providers by name; at most one live and one test-mode provider per platform."""

    def __init__(self, kinds: Iterable[ProviderKind]) -> None:
        self._kinds: dict[str, ProviderKind] = {}
        serving: dict[tuple[str, bool], str] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"two providers are named {kind.name!r}")
            for platform in kind.platforms:
                other = serving.setdefault((platform, kind.test_mode), kind.name)
                if other != kind.name:
                    raise ValueError(f"{other} and {kind.name} both send to {platform} devices")
            self._kinds[kind.name] = kind

    def __getitem__(self, name: str) -> ProviderKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownProvider(f"no push provider is named {name!r}") from None

    def __iter__(self) -> Iterator[ProviderKind]:
        return iter(self._kinds.values())

    def for_platform(self, platform: str, *, test_mode: bool) -> ProviderKind:
        """The provider that sends live (or test-mode) pushes to ``platform`` devices."""
        for kind in self:
            if platform in kind.platforms and kind.test_mode == test_mode:
                return kind
        mode = "test-mode" if test_mode else "live"
        raise UnknownProvider(f"no push provider sends {mode} pushes to {platform} devices")

    def connect(self, name: str, credential: Credential, settings: Settings) -> Provider:
        return self[name].connect(credential, settings)

    # What the API asks (controlplane.payloads.ProviderCatalog):

    def provider_for(self, platform: str, *, test_mode: bool) -> str:
        return self.for_platform(platform, test_mode=test_mode).name

    def token_slot(self, content: PushContent, platform: str) -> TokenSlot:
        return self.for_platform(platform, test_mode=False).token_slot(content, platform)

    def wire_sizes(self, content: PushContent) -> list[WireSize]:
        return [
            WireSize(kind.label, kind.encoded_size(content), kind.max_payload_bytes)
            for kind in self
            if kind.encoded_size is not None and content.kind in kind.kinds
        ]

    def previews(self, content: PushContent) -> list[WirePreview]:
        return [
            WirePreview(
                kind.label,
                kind.wire_form(content),
                kind.encoded_size(content),
                kind.max_payload_bytes,
            )
            for kind in self
            if kind.wire_form is not None
            and kind.encoded_size is not None
            and content.kind in kind.kinds
        ]


# The providers that reach real devices, each with its own wire; one line per provider.
LIVE: tuple[ProviderKind, ...] = (
    apns.APNS,
    fcm.FCM,
)
PROVIDERS = Registry([*LIVE, sandbox_of(LIVE)])

_: ProviderCatalog = PROVIDERS  # mypy checks that the registry answers what the API asks
