"""The provider contract: what a provider declares, how it spells a push, how it answers.

A provider is one module of this package (``apns.py``, ``fcm.py``, ``sandbox.py``) and one line
in :mod:`workers.providers.registry`. The module defines two things:

* its :class:`ProviderKind`, the registry entry — its name, what it can send (platforms and
  push kinds), which of a device's tokens each push goes to (its :class:`TokenSlot`: the
  device token, its Live Activity, push-to-start or widget push token, or the token there of
  an activity Brik addresses by id), how a push's content is spelled on its wire (and so how
  many bytes it takes there, which the API checks at accept time), and how it is connected
  from a credential;
* the connected :class:`Provider` — built from one project's credential, it builds the wire
  request for one delivery (:meth:`Provider.request`) and sends batches of them.

What a provider cannot send — a platform it does not serve, a kind of push it has no spelling
for — raises :class:`Unsendable` when the request is built, and that delivery fails with the
reason: nothing unknown is ever spelled as some other provider's push.

Providers never raise for what a push provider answers: every push ends in exactly one
:class:`Outcome` — delivered, the token is dead, try again (maybe after a delay), or failed
for good with a reason the tenant can act on. That split, taken from sygnal's permanent vs
temporary dispatch errors, maps onto arq's ``Retry(defer=…)`` and onto invalidating devices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from controlplane.models.devices import TokenSlot
from controlplane.payloads import PushContent
from controlplane.settings import Settings


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    INVALID_TOKEN = "invalid_token"
    RETRY = "retry"
    FAILED = "failed"
    RATE_LIMITED = "rate_limited"  # over the per-device cap; never sent


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    reason: str = ""
    retry_after: float | None = None
    provider_message_id: str | None = None
    # FAILED because the provider refused the project's credential (not this push or token):
    # every send through it fails until it is fixed, which a webhook tells (credential.failing).
    credential_rejected: bool = False

    @classmethod
    def delivered(cls, provider_message_id: str | None = None) -> Outcome:
        return cls(OutcomeKind.DELIVERED, provider_message_id=provider_message_id)

    @classmethod
    def invalid_token(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.INVALID_TOKEN, reason)

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None) -> Outcome:
        return cls(OutcomeKind.RETRY, reason, retry_after)

    @classmethod
    def failed(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.FAILED, reason)

    @classmethod
    def credential_refused(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.FAILED, reason, credential_rejected=True)

    @classmethod
    def rate_limited(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.RATE_LIMITED, reason)


class Unsendable(Exception):
    """This provider cannot send this push (platform or kind); the delivery fails, saying why."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One delivery as a wire request needs it: where it goes and what stays the same across
    its attempts."""

    token: str  # "" for a broadcast
    platform: str
    message_id: str  # the delivery's own id, the same on every attempt (APNs' apns-id)
    attempt: int = 1  # which try this is (the sandbox's scripted tokens count them)
    collapse_id: str | None = None  # one notification on the device, even if sent twice
    expires_at: int | None = None  # unix seconds; None: the provider's default storage
    # An APNs broadcast channel (iOS 18 Live Activities): one request reaches every device
    # subscribed to it, instead of one device's token.
    channel_id: str | None = None


class WireRequest(Protocol):
    """One request for one device, spelled for its provider and ready to send."""

    @property
    def token(self) -> str: ...

    @property
    def attempt(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Credential:
    """A project's credential for one provider: the decrypted secret and the public details."""

    secret: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """A connected provider: one credential's warm connections."""

    name: str

    def request(self, content: PushContent, recipient: Recipient) -> WireRequest:
        """The wire request for one delivery; raises :class:`Unsendable`."""

    async def send(self, pushes: Sequence[Any]) -> list[Outcome]:
        """Send ``pushes`` (wire requests; concurrently, bounded); one outcome each, in order."""

    async def close(self) -> None:
        """Release connections."""


# How a provider spells a push for one recipient; the mapping is its credential's details
# (for APNs the topic, the app's bundle id).
Spelling = Callable[[PushContent, Recipient, Mapping[str, Any]], WireRequest]
# Which of a device's tokens a push goes to, for a device of this platform.
TokenChoice = Callable[[PushContent, str], TokenSlot]


def device_token(content: PushContent, platform: str) -> TokenSlot:
    """Every push to the device's own token (FCM: Android has no other)."""
    return TokenSlot.DEVICE


@dataclass(frozen=True, slots=True)
class ProviderKind:
    """A provider as the registry knows it: its name, what it sends, how, and how to connect it."""

    name: str
    label: str  # as a tenant would call it in a message: "APNs", "FCM"
    platforms: frozenset[str]
    kinds: frozenset[str]  # PushContent.kind values it has a spelling for
    connect: Callable[[Credential, Settings], Provider]
    spell: Spelling | None = None  # None: it has no wire of its own (the sandbox)
    encoded_size: Callable[[PushContent], int] | None = None  # bytes on its wire
    # The push as it receives it (minus the device token): the composer's preview.
    wire_form: Callable[[PushContent], dict[str, Any]] | None = None
    max_payload_bytes: int = 4096
    test_mode: bool = False  # sends test-mode pushes, needs no credential
    tokens: TokenChoice = device_token  # which device token each push goes to

    def token_slot(self, content: PushContent, platform: str) -> TokenSlot:
        """Which of a ``platform`` device's tokens ``content`` goes to."""
        return self.tokens(content, platform)

    def request(
        self, content: PushContent, recipient: Recipient, details: Mapping[str, Any]
    ) -> WireRequest:
        """``content`` spelled for ``recipient``, or :class:`Unsendable` saying why not."""
        if recipient.platform not in self.platforms:
            raise Unsendable(f"{self.label} does not send to {recipient.platform} devices")
        if content.kind not in self.kinds or self.spell is None:
            raise Unsendable(f"{self.label} cannot send a {content.kind!r} push")
        return self.spell(content, recipient, details)


def deep_merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it: objects merge key by key, anything else (a
    list, a string, a number, null) from ``override`` replaces what ``base`` had."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merged(merged[key], value)
        else:
            merged[key] = value
    return merged
