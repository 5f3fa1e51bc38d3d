"""APNs over HTTP/2 with token auth (aioapns), and Apple's answers mapped to outcomes.

The reasons that kill a token and the ones worth retrying are named sets, as in DESIGN.md:
410 ``Unregistered`` and 400 ``BadDeviceToken`` / ``DeviceTokenNotForTopic`` invalidate the
device; 429, 500 and 503 (and a lost connection or a timeout) are retried with the *same*
``apns-id``; 403 provider-token errors fail with a message saying which credential to fix.
Anything else Apple refuses is a permanent failure with Apple's reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aioapns import NotificationRequest, PushType
from aioapns.exceptions import ConnectionError as APNsConnectionError
from aioapns.exceptions import MaxAttemptsExceeded

from controlplane.settings import Settings
from workers.providers.apns_connection import apns_pool
from workers.providers.base import ApnsPush, Outcome

DEAD_TOKEN_REASONS = frozenset({"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"})
RETRY_STATUSES = frozenset({"429", "500", "503"})
CREDENTIAL_REASONS = {
    "ExpiredProviderToken": "APNs says the provider token expired: check the server clock.",
    "InvalidProviderToken": "APNs refused the auth key: check the key id, team id and .p8 key.",
    "MissingProviderToken": "No APNs auth key is configured for this project.",
    "TopicDisallowed": "The APNs key may not send to this bundle id (topic).",
    "BadCertificate": "APNs refused the credential.",
    "BadCertificateEnvironment": "The credential is for the other APNs environment.",
}


class ApnsProvider:
    name = "apns"

    def __init__(
        self,
        *,
        key: str,
        key_id: str,
        team_id: str,
        topic: str,
        sandbox: bool,
        settings: Settings,
        max_in_flight: int = 100,
        response_timeout: float = 30.0,
    ) -> None:
        self._pool = apns_pool(
            key=key, key_id=key_id, team_id=team_id, topic=topic, sandbox=sandbox,
            settings=settings,
        )  # fmt: skip
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._response_timeout = response_timeout

    async def send(self, pushes: Sequence[ApnsPush]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._send_one(push) for push in pushes)))

    async def _send_one(self, push: ApnsPush) -> Outcome:
        ttl = None if push.expiration is None else max(0, push.expiration - int(time.time()))
        request = NotificationRequest(
            device_token=push.token,
            message=push.payload,
            notification_id=push.apns_id,
            time_to_live=ttl,
            priority=push.priority,
            collapse_key=push.collapse_id,
            push_type=PushType(push.push_type),
            apns_topic=push.topic,
        )
        async with self._in_flight:
            try:
                result = await asyncio.wait_for(
                    self._pool.send_notification(request), self._response_timeout
                )
            except TimeoutError:
                return Outcome.retry("APNs did not answer in time")
            except (APNsConnectionError, MaxAttemptsExceeded, OSError) as exc:
                return Outcome.retry(f"APNs connection failed: {type(exc).__name__}")
        return classify(result.status, result.description)

    async def close(self) -> None:
        self._pool.close()


def classify(status: str, reason: str | None) -> Outcome:
    """Apple's answer as an outcome (see the module docstring)."""
    if status == "200":
        return Outcome.delivered()
    reason = reason or f"HTTP {status}"
    if reason in DEAD_TOKEN_REASONS:
        return Outcome.invalid_token(reason)
    if status in RETRY_STATUSES:
        return Outcome.retry(reason)
    if status == "403" or reason in CREDENTIAL_REASONS:
        return Outcome.failed(f"{reason}: {CREDENTIAL_REASONS.get(reason, 'fix the credential')}")
    return Outcome.failed(reason)
