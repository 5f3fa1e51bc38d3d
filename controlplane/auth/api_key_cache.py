"""Resolved API keys kept in process memory, dropped everywhere the moment one is revoked.

Every API process subscribes to one Redis pub/sub channel. Revoking a key (or changing its
scopes or expiry) publishes the key's hash after the database commit; each process drops that
entry as the message arrives. There is no TTL to wait out.

Two races are closed on purpose:

* a lookup that read the database just before a revocation must not put the stale answer into
  the cache after the invalidation went by: every invalidation bumps an epoch, and a lookup only
  caches its answer if the epoch did not move while it was reading;
* while the subscription is down (Redis restarting) invalidations could be missed, so the
  cache is emptied and bypassed until the subscription is back.

``last_used_at`` is recorded without a database write per request: uses are written to a Redis
hash (at most once per :data:`USE_REPORT_INTERVAL` per key and process) and the worker's
``flush_api_key_usage`` cron job moves them into the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from controlplane.auth.api_keys import KeyPrincipal, check_key_shape, load_principal
from controlplane.auth.keys import hash_key

INVALIDATION_CHANNEL = "brik:api-keys:invalidate"
LAST_USED_HASH = "brik:api-keys:last-used"
USE_REPORT_INTERVAL = 10.0
MAX_ENTRIES = 50_000
_RECONNECT_DELAY = 0.5

logger = logging.getLogger("brik.api_keys")


async def publish_invalidation(redis: Redis, key_hash: str) -> None:
    """Tell every API process to forget ``key_hash``; call after the database commit."""
    await redis.publish(INVALIDATION_CHANNEL, key_hash)


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
        self._epoch = 0
        self._live = False
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._last_reported: dict[str, float] = {}

    @property
    def size(self) -> int:
        return len(self._entries)

    async def start(self, wait_seconds: float = 2.0) -> None:
        """Subscribe (waiting briefly for it, so the first requests can use the cache)."""
        self._listener = asyncio.create_task(self._listen(), name="api-key-invalidations")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), wait_seconds)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    async def authenticate(self, token: str) -> KeyPrincipal:
        """The key's principal, or 401 (malformed, unknown, revoked, expired)."""
        check_key_shape(token)
        key_hash = hash_key(token, self._pepper)
        principal = self._entries.get(key_hash) if self._live else None
        if principal is None:
            epoch = self._epoch
            principal = await load_principal(key_hash)
            if self._live and epoch == self._epoch:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key_hash] = principal
        principal.check_not_expired()
        await self._report_use(principal.key_id)
        return principal

    def _forget(self, key_hash: str | None) -> None:
        self._epoch += 1
        if key_hash is None:
            self._entries.clear()
        else:
            self._entries.pop(key_hash, None)

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

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(INVALIDATION_CHANNEL)
                self._forget(None)  # anything cached before (re)subscribing may be stale
                self._live = True
                self._subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        self._forget(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError):
                logger.warning("API key invalidation feed lost; cache bypassed until it is back")
            finally:
                self._live = False
                self._forget(None)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(_RECONNECT_DELAY)
