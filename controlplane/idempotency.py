"""``Idempotency-Key``: a retried request gets the first answer, never a second push.

Keys are scoped per project and mode (the API key's, test or live, as Stripe scopes them per
account and mode) and kept 24 hours (an arq cron job deletes expired ones): the same key sent
with a test key and then a live key is two requests, so a test run never answers for
production, nor claims a key production will use. The first request *claims* the key in its
own small commit, so concurrent retries see it at once:

* same key, same body, first request finished → its answer, replayed (``Idempotent-Replayed``);
* same key, different body → 422 ``idempotency_key_reused``;
* same key while the first is still running → 409 ``idempotency_key_in_use`` (a claim older
  than :data:`STALE_CLAIM` belonged to a process that died, and is taken over).

The answer is stored in the same transaction as the work it describes: it is replayable
exactly when the work is committed. If the request fails, the claim is released.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import JSONResponse, Response
from tortoise.exceptions import IntegrityError

from controlplane.errors import IdempotencyConflict, InvalidRequest
from controlplane.models import IdempotencyKey, KeyMode

KEY_LIFETIME = timedelta(hours=24)
STALE_CLAIM = timedelta(minutes=5)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def request_fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


async def claim(
    project_id: str, mode: KeyMode, key: str, fingerprint: str
) -> IdempotencyKey | Response:
    """Claim ``key`` in ``project_id``'s ``mode`` for this request, or the answer a retry must
    get instead."""
    if not _KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key: 1 to 255 printable ASCII characters, no spaces.",
            code="parameter_invalid",
            param="Idempotency-Key",
        )
    now = datetime.now(UTC)
    for _ in range(2):
        try:
            return await IdempotencyKey.create(
                project_id=project_id, mode=mode, key=key, request_hash=fingerprint,
                status="in_flight", expires_at=now + KEY_LIFETIME,
            )  # fmt: skip
        except IntegrityError:
            existing = await IdempotencyKey.get_or_none(project_id=project_id, mode=mode, key=key)
        if existing is None:
            continue  # released meanwhile: claim again
        if existing.expires_at <= now:
            await IdempotencyKey.filter(id=existing.id, expires_at=existing.expires_at).delete()
            continue
        if existing.request_hash != fingerprint:
            raise IdempotencyConflict(
                "This Idempotency-Key was used with a different request; use a new key.",
                code="idempotency_key_reused",
                status_code=422,
            )
        if existing.status == "completed":
            return JSONResponse(
                existing.response_body,
                status_code=existing.response_status or 200,
                headers={"Idempotent-Replayed": "true"},
            )
        if existing.created_at > now - STALE_CLAIM:
            raise IdempotencyConflict(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                code="idempotency_key_in_use",
                headers={"Retry-After": "1"},
            )
        taken = await IdempotencyKey.filter(
            id=existing.id, status="in_flight", created_at=existing.created_at
        ).update(created_at=now)
        if taken:
            existing.created_at = now
            return existing
    raise IdempotencyConflict("The Idempotency-Key is contended; retry shortly.")


async def complete(claimed: IdempotencyKey, status_code: int, body: Any) -> None:
    """Store the answer; call inside the transaction that commits the work."""
    await IdempotencyKey.filter(id=claimed.id).update(
        status="completed", response_status=status_code, response_body=body
    )


async def release(claimed: IdempotencyKey) -> None:
    """The request failed: let a retry run it afresh."""
    await IdempotencyKey.filter(id=claimed.id, status="in_flight").delete()


async def delete_expired(now: datetime | None = None) -> int:
    return await IdempotencyKey.filter(expires_at__lte=now or datetime.now(UTC)).delete()
