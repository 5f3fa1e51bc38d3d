"""Resolved API keys kept in process memory, dropped everywhere the moment one is revoked.

Each API process keeps the keys it has resolved. Revoking a key, changing its scopes or
deleting its project sets a new random *epoch* in Redis — inside the change's transaction,
before it commits, and again after the commit, before the API answers. Every API-key request
reads the epoch — one Redis round trip, far cheaper than the database lookup it saves — and a
process that sees a new epoch empties its cache first. So once a revocation has been
answered, no process anywhere accepts the key again: there is no TTL to wait out and no
message that could arrive late (an earlier design used pub/sub, and a request could overtake
the message).

Why twice: the bump before the commit is the test that Redis can be reached at all — if it
cannot, the change is refused (503) and rolled back, so a revocation is never saved without
every process hearing of it. The bump after the commit clears what a process cached from
the database in the moment between the two. If that second bump still fails after a few
tries, the change is saved and the answer is a 503 that says so and asks for a repeat;
repeating a revocation bumps again.

The epoch is random rather than a counter, so a Redis that was flushed can never present an
old value again. A Redis that restarted from an old dump *can* (the value saved before the
last revocation), so the epoch is read together with the Redis server's ``run_id``, which is
new on every start: a process that sees another ``run_id`` empties its cache, whether or not
it noticed the outage. A process that cannot read the epoch empties its cache, forgets the
epoch it knew and reads the database on every request until Redis answers again. Entries
also expire after :data:`MAX_ENTRY_AGE_SECONDS` whatever the epoch says — a bound on any
stale entry this reasoning missed. A lookup that read the database just before a revocation
is cached only if the epoch did not move while it read.

Rotating the secret key (``controlplane/auth/peppers.py``) needs no invalidation. Entries are
keyed by the token's hash under this process's *current* key — in effect by the token — and
hold the key's id and rights. A key found through a previous secret key is re-hashed in the
database on the spot, which changes neither, so what every process cached stays right and no
epoch is set: bumping it for each re-hash would empty every cache again and again while a
rotation's keys move over, all load on the database. A revocation still bumps it, and the
re-hash (a compare-and-set on the old hash, of that column only) never undoes one. A new
secret key reaches a process only by a restart, with an empty cache.

``last_used_at`` is recorded without a database write per request: uses go to a Redis hash (at
most once per :data:`USE_REPORT_INTERVAL` per key and process) and the worker's flush job
(``workers/tasks/api_key_usage.py``) moves them into the database. Reading keys does not need
Redis: while it is away, a key's ``last_used_at`` is the database's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from controlplane.auth.api_keys import KeyPrincipal, check_key_shape, load_principal
from controlplane.auth.peppers import PepperRing
from controlplane.core.keyspace import LAST_USED_HASH
from controlplane.errors import DATABASE_OUTAGES, AuthenticationFailed

EPOCH_KEY = "brik:api-keys:epoch"
USE_REPORT_INTERVAL = 10.0
MAX_ENTRIES = 50_000
MAX_ENTRY_AGE_SECONDS = 60.0
BUMP_RETRY_DELAY_SECONDS = 0.2
EPOCH_BUMPS_AFTER_COMMIT = 3  # tries for the bump after a revocation has committed
RECHECK_EPOCH_SECONDS = 1.0  # how stale still_valid's view of the epoch may be
_OUTAGES: tuple[type[BaseException], ...] = (RedisError, *DATABASE_OUTAGES)

logger = logging.getLogger("brik.api_keys")

# The epoch and the identity of the Redis process that holds it (new on every start).
_READ_EPOCH = """
local server = redis.call('INFO', 'server')
return {redis.call('GET', KEYS[1]) or '-', string.match(server, 'run_id:(%w+)') or ''}
"""


async def invalidate_cached_keys(redis: Redis, attempts: int = 1) -> None:
    """Make every API process forget the keys it cached (see the module docstring for when).

    Tries up to ``attempts`` times, a moment apart; raises the last ``RedisError``.
    """
    for attempt in range(1, attempts + 1):
        try:
            await redis.set(EPOCH_KEY, secrets.token_hex(16))
            return
        except RedisError:
            if attempt == attempts:
                raise
            logger.warning("could not set a new API-key epoch (try %d of %d)", attempt, attempts)
            await asyncio.sleep(BUMP_RETRY_DELAY_SECONDS * attempt)


async def pending_last_used(redis: Redis, key_ids: list[str]) -> dict[str, datetime]:
    """Uses recorded in Redis that the flush job has not moved to the database yet; none while
    Redis cannot be reached — the keys are listed with what the database knows (a use of the
    last minutes missing), rather than not at all."""
    if not key_ids:
        return {}
    try:
        values = await redis.hmget(LAST_USED_HASH, key_ids)  # type: ignore[misc]  # redis stubs
    except (RedisConnectionError, RedisTimeoutError) as exc:
        logger.warning("API keys' latest uses are not readable from Redis: %s", exc)
        return {}
    return {
        key_id: datetime.fromtimestamp(float(value), UTC)
        for key_id, value in zip(key_ids, values, strict=True)
        if value is not None
    }


class ApiKeyCache:
    def __init__(
        self, redis: Redis, peppers: PepperRing, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._redis = redis
        self._read_epoch = redis.register_script(_READ_EPOCH)
        self._peppers = peppers
        self._clock = clock
        # The token's hash under the current key → (principal, when it was read).
        self._entries: dict[str, tuple[KeyPrincipal, float]] = {}
        self._epoch: tuple[bytes, bytes] | None = None  # (epoch, Redis run_id)
        self._last_reported: dict[str, float] = {}
        self._epoch_checked_at = -RECHECK_EPOCH_SECONDS  # when still_valid last read the epoch

    @property
    def size(self) -> int:
        return len(self._entries)

    async def _current_epoch(self) -> tuple[bytes, bytes] | None:
        """Redis's epoch, having emptied the cache if it moved; None when Redis is unreadable."""
        try:
            epoch, run_id = await self._read_epoch(keys=[EPOCH_KEY])
        except RedisError:
            logger.warning("cannot read the API-key epoch; cache bypassed", exc_info=True)
            # Whatever Redis says when it is back, nothing cached before counts any more.
            self._entries.clear()
            self._epoch = None
            return None
        current = (bytes(epoch), bytes(run_id))
        if current != self._epoch:
            self._entries.clear()
            self._epoch = current
        return current

    async def authenticate(self, token: str) -> KeyPrincipal:
        """The key's principal, or 401 (malformed, unknown, revoked, expired)."""
        check_key_shape(token)
        key_hash = self._peppers.hash(token)
        epoch = await self._current_epoch()
        entry = self._entries.get(key_hash) if epoch is not None else None
        if entry is not None and self._clock() - entry[1] <= MAX_ENTRY_AGE_SECONDS:
            principal = entry[0]
        else:
            loaded_at = self._clock()
            principal = await load_principal(token, self._peppers)
            # Only if no revocation moved the epoch while the database was read.
            if epoch is not None and self._epoch == epoch:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key_hash] = (principal, loaded_at)
        principal.check_not_expired()
        await self._report_use(principal.key_id)
        return principal

    async def still_valid(self, token: str) -> bool:
        """Whether ``token``, which authenticated a long-lived stream, is still a valid key —
        False once it is revoked, expired or its project deleted.

        Thousands of streams ask every heartbeat, so this reads Redis's epoch at most once every
        :data:`RECHECK_EPOCH_SECONDS` per process and answers from memory while the epoch has
        not moved (an entry is dropped when it does, and re-read from the database once).
        While Redis or the database cannot be read the answer is True: an outage does not end
        every stream, and the next check after it does.
        """
        key_hash = self._peppers.hash(token)
        now = self._clock()
        if now - self._epoch_checked_at >= RECHECK_EPOCH_SECONDS:
            self._epoch_checked_at = now
            if await self._current_epoch() is None:
                return True
        entry = self._entries.get(key_hash)
        if entry is not None and now - entry[1] <= MAX_ENTRY_AGE_SECONDS:
            return not entry[0].expired()
        try:
            await self.authenticate(token)
        except AuthenticationFailed:
            return False
        except _OUTAGES:
            return True
        return True

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
