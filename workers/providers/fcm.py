"""FCM HTTP v1 (pyfcm, driven by :mod:`workers.providers.fcm_connection`), answers as outcomes.

404 ``UNREGISTERED`` and a 400 ``INVALID_ARGUMENT`` about the registration token invalidate
the device (sygnal never drops a token on 400; we do, when FCM says the token is the problem);
429 ``QUOTA_EXCEEDED`` (with its ``Retry-After``), 500 ``INTERNAL`` and 503 ``UNAVAILABLE`` are
retried; 401/403 are credential errors with a message saying what to fix; any other 400 is a
permanent failure with FCM's message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import requests

from controlplane.settings import Settings
from workers.providers.base import FcmPush, Outcome
from workers.providers.fcm_connection import FcmResult, FcmSender

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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
    if result.error_code == "UNREGISTERED" or result.status == 404:
        return Outcome.invalid_token(code)
    if result.status == 400 and "registration token" in result.error_message.lower():
        return Outcome.invalid_token(f"{code}: {result.error_message}")
    if result.status in RETRY_STATUSES:
        return Outcome.retry(code, result.retry_after)
    if result.status in (401, 403):
        return Outcome.failed(
            f"{code}: FCM refused the service account or sender; upload a valid "
            f"service-account key for this Firebase project ({result.error_message})"
        )
    return Outcome.failed(f"{code}: {result.error_message}")
