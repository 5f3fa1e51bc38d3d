"""APNs over HTTP/2 with token auth (aioapns), and Apple's answers mapped to outcomes.

Apple's answers are decided on (status, reason) *pairs*, kept in named sets as sygnal does —
never on the reason string alone, which a proxy or a 5xx body can carry too. Apple's
"Handling notification responses from APNs" is the contract:

* :data:`DEAD_TOKEN_ERRORS` — 410 ``Unregistered`` (the token is inactive for the topic),
  410 ``ExpiredToken`` (the token has expired), 400 ``BadDeviceToken`` (not a token, or one for
  the other environment), 400 ``DeviceTokenNotForTopic`` (a token of another app): the token is
  dropped (the device, or only its Live Activity token, see :mod:`workers.tasks.deliver`);
* :data:`TEMPORARY_STATUSES` — 429, 500, 503 whatever the reason (and a lost connection or a
  timeout): retried with the *same* ``apns-id``;
* :data:`CREDENTIAL_ERRORS` — 403 provider-token and certificate errors (and 400
  ``TopicDisallowed``): failed, with a message saying which credential to fix; any other 403
  too.

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

DEAD_TOKEN_ERRORS = frozenset(
    {
        (410, "Unregistered"),
        (410, "ExpiredToken"),
        (400, "BadDeviceToken"),
        (400, "DeviceTokenNotForTopic"),
    }
)
TEMPORARY_STATUSES = frozenset({429, 500, 503})
CREDENTIAL_ERRORS = {
    (403, "ExpiredProviderToken"): "APNs says the provider token expired: check the server clock.",
    (403, "InvalidProviderToken"): "APNs refused the auth key: check key id, team id, .p8 key.",
    (403, "MissingProviderToken"): "No APNs auth key is configured for this project.",
    (403, "BadCertificate"): "APNs refused the credential.",
    (403, "BadCertificateEnvironment"): "The credential is for the other APNs environment.",
    (400, "TopicDisallowed"): "The APNs key may not send to this bundle id (topic).",
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


def classify(status: str | int, reason: str | None) -> Outcome:
    """Apple's answer (aioapns gives the status as text) as an outcome; see the docstring."""
    code = int(status) if str(status).isdigit() else 0
    if code == 200:
        return Outcome.delivered()
    reason = reason or f"HTTP {status}"
    if (code, reason) in DEAD_TOKEN_ERRORS:
        return Outcome.invalid_token(reason)
    if code in TEMPORARY_STATUSES:
        return Outcome.retry(reason)
    fix = CREDENTIAL_ERRORS.get((code, reason))
    if fix is not None or code == 403:
        return Outcome.failed(f"{reason}: {fix or 'fix the credential'}")
    return Outcome.failed(reason)
