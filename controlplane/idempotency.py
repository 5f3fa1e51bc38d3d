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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import JSONResponse, Response

from controlplane.errors import APIError, IdempotencyConflict, InvalidRequest
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
    outcome = await _claim_one(project_id, mode, key, fingerprint, datetime.now(UTC))
    if isinstance(outcome, Replay):
        return JSONResponse(
            outcome.body, status_code=outcome.status_code,
            headers={"Idempotent-Replayed": "true"},
        )  # fmt: skip
    return outcome


async def _claim_one(
    project_id: str, mode: KeyMode, key: str, fingerprint: str, now: datetime
) -> IdempotencyKey | Replay:
    """The claim of ``key``, or the answer to replay; raises what :func:`_judge` raises."""
    for _ in range(2):
        taken = await _insert_claims(project_id, mode, {key: fingerprint}, now)
        if key in taken:
            return taken[key]
        existing = await IdempotencyKey.get_or_none(project_id=project_id, mode=mode, key=key)
        outcome = await _judge(existing, fingerprint, now)
        if outcome is not None:
            return outcome
    raise IdempotencyConflict("The Idempotency-Key is contended; retry shortly.")


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored first answer a retry gets instead of running again."""

    status_code: int
    body: Any


async def _judge(
    existing: IdempotencyKey | None, fingerprint: str, now: datetime
) -> IdempotencyKey | Replay | None:
    """What a request carrying ``fingerprint`` gets when its key is already taken by
    ``existing``: its answer replayed, the claim taken over (its first request died), or None
    — the key is free again, claim it anew. Raises for a different request or one still
    running."""
    if existing is None:
        return None  # released meanwhile
    if existing.expires_at <= now:
        await IdempotencyKey.filter(id=existing.id, expires_at=existing.expires_at).delete()
        return None
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was used with a different request; use a new key.",
            code="idempotency_key_reused",
            status_code=422,
        )
    if existing.status == "completed":
        return Replay(existing.response_status or 200, existing.response_body)
    if existing.created_at > now - STALE_CLAIM:
        raise IdempotencyConflict(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            code="idempotency_key_in_use",
            headers={"Retry-After": "1"},
        )
    taken = await IdempotencyKey.filter(
        id=existing.id, status="in_flight", created_at=existing.created_at
    ).update(created_at=now)
    if not taken:
        return None
    existing.created_at = now
    return existing


async def claim_many(
    project_id: str, mode: KeyMode, fingerprints: Mapping[str, str]
) -> dict[str, IdempotencyKey | Replay | APIError]:
    """:func:`claim` for the keys of a batch's messages (key → its message's fingerprint), in
    one insert for the keys that are new: per key, its claim, the answer to replay, or the
    error its message gets (the others go on). Committed at once, like :func:`claim`."""
    if not fingerprints:
        return {}
    now = datetime.now(UTC)
    taken = await _insert_claims(project_id, mode, fingerprints, now)
    outcomes: dict[str, IdempotencyKey | Replay | APIError] = dict(taken)
    others = [key for key in fingerprints if key not in taken]
    if others:
        rows = IdempotencyKey.filter(project_id=project_id, mode=mode, key__in=others)
        existing = {row.key: row for row in await rows}
        for key in others:
            try:
                outcome = await _judge(existing.get(key), fingerprints[key], now)
                if outcome is None:  # free again (rare): claimed alone
                    outcome = await _claim_one(project_id, mode, key, fingerprints[key], now)
            except APIError as exc:
                outcomes[key] = exc
                continue
            outcomes[key] = outcome
    return outcomes


async def _insert_claims(
    project_id: str, mode: KeyMode, fingerprints: Mapping[str, str], now: datetime
) -> dict[str, IdempotencyKey]:
    """Insert an in-flight claim for each key no row holds yet: those, by key."""
    client = IdempotencyKey._meta.db
    keys = list(fingerprints)
    hashes = [fingerprints[key] for key in keys]
    expires = now + KEY_LIFETIME
    if client.capabilities.dialect == "postgres":
        rows = await client.execute_query_dict(
            "INSERT INTO idempotency_keys (project_id, mode, key, request_hash, status, "
            "created_at, expires_at) SELECT $1, $2, k, h, 'in_flight', $3, $4 "
            "FROM unnest($5::text[], $6::text[]) AS t(k, h) "
            "ON CONFLICT (project_id, mode, key) DO NOTHING RETURNING id, key",
            [project_id, mode.value, now, expires, keys, hashes],
        )
    else:
        values = ", ".join("(?, ?, ?, ?, 'in_flight', ?, ?)" for _ in keys)
        moment = IdempotencyKey._meta.fields_map["created_at"]
        created = moment.to_db_value(now, IdempotencyKey)
        until = moment.to_db_value(expires, IdempotencyKey)
        args: list[Any] = []
        for key, fingerprint in zip(keys, hashes, strict=True):
            args += [project_id, mode.value, key, fingerprint, created, until]
        rows = await client.execute_query_dict(
            "INSERT INTO idempotency_keys (project_id, mode, key, request_hash, status, "
            f"created_at, expires_at) VALUES {values} "
            "ON CONFLICT (project_id, mode, key) DO NOTHING RETURNING id, key",
            args,
        )
    return {
        row["key"]: IdempotencyKey(
            id=row["id"], project_id=project_id, mode=mode, key=row["key"],
            request_hash=fingerprints[row["key"]], status="in_flight", created_at=now,
            expires_at=expires,
        )
        for row in rows
    }  # fmt: skip


async def complete(claimed: IdempotencyKey, status_code: int, body: Any) -> None:
    """Store the answer; call inside the transaction that commits the work."""
    await complete_many([(claimed, body)], status_code)


async def release(claimed: IdempotencyKey) -> None:
    """The request failed: let a retry run it afresh."""
    await IdempotencyKey.filter(id=claimed.id, status="in_flight").delete()


async def complete_many(claimed: Sequence[tuple[IdempotencyKey, Any]], status_code: int) -> None:
    """:func:`complete` for a batch's claims, each with its own answer: one statement on
    PostgreSQL, written out (it runs for every request with a key)."""
    if not claimed:
        return
    client = IdempotencyKey._meta.db
    if client.capabilities.dialect != "postgres":
        for row, body in claimed:
            await IdempotencyKey.filter(id=row.id).update(
                status="completed", response_status=status_code, response_body=body
            )
        return
    await client.execute_query(
        "UPDATE idempotency_keys AS k SET status = 'completed', response_status = $1, "
        "response_body = v.body::jsonb FROM unnest($2::bigint[], $3::text[]) AS v(id, body) "
        "WHERE k.id = v.id",
        [status_code, [row.id for row, _ in claimed],
         [json.dumps(body, separators=(",", ":")) for _, body in claimed]],
    )  # fmt: skip


async def release_many(claimed: Sequence[IdempotencyKey]) -> None:
    """:func:`release` for a batch's claims."""
    if claimed:
        await IdempotencyKey.filter(
            id__in=[row.id for row in claimed], status="in_flight"
        ).delete()


async def delete_expired(now: datetime | None = None) -> int:
    return await IdempotencyKey.filter(expires_at__lte=now or datetime.now(UTC)).delete()
