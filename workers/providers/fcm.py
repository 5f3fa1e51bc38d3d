"""FCM HTTP v1 (pyfcm, driven by :mod:`workers.providers.fcm_connection`), answers as outcomes.

Google's answers are decided on (HTTP status, FCM error code) pairs in named sets, as in the
APNs provider:

* :data:`DEAD_TOKEN_ERRORS` — 404 ``UNREGISTERED`` (the app is gone from the device) and 403
  ``SENDER_ID_MISMATCH`` (the token belongs to another Firebase project: it can never work with
  this project's credential, and the credential is fine for every other token) invalidate the
  device; so does a 400 ``INVALID_ARGUMENT`` whose message is about the registration token
  (sygnal never drops a token on 400; we do, when FCM says the token is the problem);
* :data:`TEMPORARY_STATUSES` — 429 ``QUOTA_EXCEEDED`` (with its ``Retry-After``), 500
  ``INTERNAL``, 502, 503 ``UNAVAILABLE``, 504: retried;
* any other 401/403 is a credential error with a message saying what to fix; any other answer
  (a 400 about the message, a 404 that is not ``UNREGISTERED``) a permanent failure with
  FCM's message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import requests

from controlplane.settings import Settings
from workers.providers.base import FcmPush, Outcome
from workers.providers.fcm_connection import FcmResult, FcmSender

DEAD_TOKEN_ERRORS = frozenset({(404, "UNREGISTERED"), (403, "SENDER_ID_MISMATCH")})
TEMPORARY_STATUSES = frozenset({429, 500, 502, 503, 504})
CREDENTIAL_STATUSES = frozenset({401, 403})


class FcmProvider:
    name = "fcm"

    def __init__(
        self, *, service_account: dict[str, Any], settings: Settings, max_in_flight: int = 32
    ) -> None:
        self._sender = FcmSender(service_account, settings)
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def send(self, pushes: Sequence[FcmPush]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._send_one(push) for push in pushes)))

    async def _send_one(self, push: FcmPush) -> Outcome:
        async with self._in_flight:
            try:
                result = await self._sender.send(push.message)
            except requests.RequestException as exc:
                return Outcome.retry(f"FCM connection failed: {type(exc).__name__}")
        return classify(result)

    async def close(self) -> None:
        return None


def classify(result: FcmResult) -> Outcome:
    if result.delivered:
        return Outcome.delivered(result.message_name)
    code = result.error_code or result.error_status or f"HTTP {result.status}"
    if (result.status, result.error_code) in DEAD_TOKEN_ERRORS:
        return Outcome.invalid_token(code)
    if result.status == 400 and "registration token" in result.error_message.lower():
        return Outcome.invalid_token(f"{code}: {result.error_message}")
    if result.status in TEMPORARY_STATUSES:
        return Outcome.retry(code, result.retry_after)
    if result.status in CREDENTIAL_STATUSES:
        return Outcome.failed(
            f"{code}: FCM refused the service account or sender; upload a valid "
            f"service-account key for this Firebase project ({result.error_message})"
        )
    return Outcome.failed(f"{code}: {result.error_message}")
