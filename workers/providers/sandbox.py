"""The sandbox: where test-mode pushes go. Nothing leaves the process; outcomes are scripted.

Each push is spelled exactly as the live provider for its device's platform would spell it
(APNs for iOS, FCM for Android: :func:`sandbox_of` takes them from the registry), goes to the
same one of the device's tokens, and what that provider cannot send fails here too — so a
test-mode push exercises the same requests, and the same refusals, as a live one. The sandbox
has no credential: an APNs topic reads ``sandbox``.

Like Stripe's test cards, a few documented device tokens simulate what Apple and Google can
answer; every other token is delivered. A tenant's code — and its handling of dead tokens and
retries — can so be exercised end to end with test keys, no Apple or Google account needed.

iOS tokens are 64 hex digits: all zeros but the last three, which name the outcome. Android
tokens are ``brik-sandbox:<outcome>``. The table is :data:`MAGIC_TOKENS` and is in docs/api.md.

What it "delivered" is kept for inspection, but only the last :data:`RECENT_SENDS`: one sandbox
lives as long as its worker, and a production worker serving test-mode keys for months must not
grow with every test push it ever took.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.models.devices import TokenSlot
from controlplane.payloads import PushContent
from controlplane.settings import Settings
from workers.providers.base import (
    Credential,
    Outcome,
    ProviderKind,
    Recipient,
    Unsendable,
    WireRequest,
)

RECENT_SENDS = 1000  # delivered test pushes kept in memory (a ring buffer: the oldest go)
STAND_IN_DETAILS = {"topic": "sandbox"}  # what a credential would say (APNs: the bundle id)


@dataclass(frozen=True)
class Script:
    """Fail the first ``failures`` attempts with ``outcome`` (forever if None), then deliver."""

    outcome: Outcome
    failures: int | None = None
    description: str = ""


def _ios(code: str) -> str:
    return "0" * 61 + code


MAGIC_TOKENS: dict[str, Script] = {
    _ios("410"): Script(Outcome.invalid_token("Unregistered"), None,
                        "unregistered: the device is marked invalid"),
    _ios("400"): Script(Outcome.invalid_token("BadDeviceToken"), None,
                        "bad token: the device is marked invalid"),
    _ios("503"): Script(Outcome.retry("ServiceUnavailable"), 2,
                        "503 twice, then delivered on the third attempt"),
    _ios("429"): Script(Outcome.retry("TooManyRequests", 1.0), 1,
                        "429 once (retry after 1 s), then delivered"),
    _ios("403"): Script(Outcome.credential_refused(
                            "InvalidProviderToken: the APNs auth key was refused"),
                        None, "credential error: failed, not retried"),
    "brik-sandbox:unregistered": Script(Outcome.invalid_token("UNREGISTERED"), None,
                                        "unregistered: the device is marked invalid"),
    "brik-sandbox:invalid-argument": Script(
        Outcome.invalid_token("INVALID_ARGUMENT: not a valid FCM registration token"), None,
        "bad token: the device is marked invalid"),
    "brik-sandbox:unavailable-twice": Script(Outcome.retry("UNAVAILABLE"), 2,
                                             "503 twice, then delivered on the third attempt"),
    "brik-sandbox:quota-once": Script(Outcome.retry("QUOTA_EXCEEDED", 1.0), 1,
                                      "429 once (retry after 1 s), then delivered"),
    "brik-sandbox:auth-error": Script(
        Outcome.credential_refused("THIRD_PARTY_AUTH_ERROR: the service account was refused"),
        None,
        "credential error: failed, not retried"),
}  # fmt: skip


class SandboxProvider:
    name = "sandbox"

    def __init__(self, spelled_as: Sequence[ProviderKind] = (), keep: int = RECENT_SENDS) -> None:
        self._live = {platform: kind for kind in spelled_as for platform in kind.platforms}
        self.sent: deque[WireRequest] = deque(maxlen=keep)

    def request(self, content: PushContent, recipient: Recipient) -> WireRequest:
        live = self._live.get(recipient.platform)
        if live is None:
            raise Unsendable(f"the sandbox does not send to {recipient.platform} devices")
        return live.request(content, recipient, STAND_IN_DETAILS)

    async def send(self, pushes: Sequence[WireRequest]) -> list[Outcome]:
        outcomes = []
        for push in pushes:
            script = MAGIC_TOKENS.get(push.token)
            if script is not None and (script.failures is None or push.attempt <= script.failures):
                outcomes.append(script.outcome)
                continue
            self.sent.append(push)
            outcomes.append(Outcome.delivered("sandbox"))
        return outcomes

    async def close(self) -> None:
        return None


def sandbox_of(live: Sequence[ProviderKind]) -> ProviderKind:
    """The sandbox's registry entry: it takes test-mode pushes for every platform the ``live``
    providers send to, and spells each as the one for its platform would."""

    def connect(credential: Credential, settings: Settings) -> SandboxProvider:
        return SandboxProvider(live)

    by_platform = {platform: kind for kind in live for platform in kind.platforms}

    def tokens(content: PushContent, platform: str) -> TokenSlot:
        spelled_as = by_platform.get(platform)
        return TokenSlot.DEVICE if spelled_as is None else spelled_as.token_slot(content, platform)

    return ProviderKind(
        name="sandbox",
        label="the sandbox",
        platforms=frozenset(by_platform),
        kinds=frozenset(push_kind for kind in live for push_kind in kind.kinds),
        connect=connect,
        test_mode=True,
        tokens=tokens,
    )
