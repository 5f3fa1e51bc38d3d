"""The provider contract: send a batch of pushes, get one outcome per push.

Providers never raise for what a push provider answers: every push ends in exactly one
:class:`Outcome` — delivered, the token is dead, try again (maybe after a delay), or failed
for good with a reason the tenant can act on. That split, taken from sygnal's permanent vs
temporary dispatch errors, maps onto arq's ``Retry(defer=…)`` and onto invalidating devices.

Adding a provider is one new module implementing :class:`Provider` and one registry line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


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
    def rate_limited(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.RATE_LIMITED, reason)


@dataclass(frozen=True)
class ApnsPush:
    """One APNs request: headers and payload, already built and size-checked."""

    token: str
    apns_id: str
    payload: dict[str, Any]
    push_type: str = "alert"
    topic: str | None = None
    priority: int = 10
    expiration: int | None = None  # unix seconds; None: Apple's default storage
    collapse_id: str | None = None
    attempt: int = 1  # which try this is (the sandbox's scripted tokens count them)


@dataclass(frozen=True)
class FcmPush:
    """One FCM v1 message (the ``message`` object, ``token`` included)."""

    message: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1


class Provider(Protocol):
    name: str

    async def send(self, pushes: Sequence[Any]) -> list[Outcome]:
        """Send ``pushes`` (concurrently, bounded); one outcome each, in order."""

    async def close(self) -> None:
        """Release connections."""
