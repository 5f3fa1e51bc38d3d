"""Resolved API keys kept in process memory, dropped everywhere the moment one is revoked.

Each API process keeps the keys it has resolved. Revoking a key, changing its scopes or
deleting its project sets a new random *epoch* in Redis (after the database commit, before the
API answers). Every API-key request reads the epoch — one Redis GET, far cheaper than the
database lookup it saves — and a process that sees a new epoch empties its cache first. So
once a revocation has been answered, no process anywhere accepts the key again: there is no
TTL to wait out and no message that could arrive late (an earlier design used pub/sub, and a
request could overtake the message).

The epoch is random rather than a counter, so a Redis that was flushed or replaced can never
present an old value again. A lookup that read the database just before a revocation may
cache the old answer, but under the old epoch, which the next request replaces. When Redis
cannot be read the cache is bypassed and every request reads the database.

``last_used_at`` is recorded without a database write per request: uses go to a Redis hash (at
most once per :data:`USE_REPORT_INTERVAL` per key and process) and the worker's flush job
(``workers/tasks/api_key_usage.py``) moves them into the database.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from controlplane.auth.api_keys import KeyPrincipal, check_key_shape, load_principal
from controlplane.auth.keys import hash_key

EPOCH_KEY = "brik:api-keys:epoch"
LAST_USED_HASH = "brik:api-keys:last-used"
USE_REPORT_INTERVAL = 10.0
MAX_ENTRIES = 50_000

logger = logging.getLogger("brik.api_keys")


async def invalidate_cached_keys(redis: Redis) -> None:
    """Make every API process forget the keys it cached; call after the database commit."""
    await redis.set(EPOCH_KEY, secrets.token_hex(8))


async def pending_last_used(redis: Redis, key_ids: list[str]) -> dict[str, datetime]:
    """Uses recorded in Redis that the flush job has not moved to the database yet."""
    if not key_ids:
        return {}
    values = await redis.hmget(LAST_USED_HASH, key_ids)  # type: ignore[misc]  # redis-py stubs
    return {
        key_id: datetime.fromtimestamp(float(value), UTC)
        for key_id, value in zip(key_ids, values, strict=True)
        if value is not None
    }


class ApiKeyCache:
    def __init__(self, redis: Redis, pepper: str) -> None:
        self._redis = redis
        self._pepper = pepper
        self._entries: dict[str, KeyPrincipal] = {}
        self._epoch: bytes | None = None
        self._last_reported: dict[str, float] = {}

    @property
    def size(self) -> int:
        return len(self._entries)

    async def _current_epoch(self) -> bytes | None:
        """Redis's epoch, having emptied the cache if it moved; None when Redis is unreadable."""
        try:
            epoch: bytes | None = await self._redis.get(EPOCH_KEY)
        except RedisError:
            logger.warning("cannot read the API-key epoch; cache bypassed", exc_info=True)
            self._entries.clear()
            return None
        epoch = epoch or b"-"
        if epoch != self._epoch:
            self._entries.clear()
            self._epoch = epoch
        return epoch

    async def authenticate(self, token: str) -> KeyPrincipal:
        """The key's principal, or 401 (malformed, unknown, revoked, expired)."""
        check_key_shape(token)
        key_hash = hash_key(token, self._pepper)
        usable = await self._current_epoch() is not None
        principal = self._entries.get(key_hash) if usable else None
        if principal is None:
            principal = await load_principal(key_hash)
            if usable:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key_hash] = principal
        principal.check_not_expired()
        await self._report_use(principal.key_id)
        return principal

    async def _report_use(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._last_reported.get(key_id, -USE_REPORT_INTERVAL) < USE_REPORT_INTERVAL:
            return
        self._last_reported[key_id] = now
        try:
            await self._redis.hset(  # type: ignore[misc]  # redis-py stubs
                LAST_USED_HASH, key_id, str(time.time())
            )
        except RedisError:  # usage timestamps are best effort; never fail a request on them
            logger.warning("could not record API key use", exc_info=True)
