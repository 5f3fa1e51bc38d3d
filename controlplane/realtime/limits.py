"""Open realtime streams per project, counted across every API process, bounded by plan.

Each project has a Redis hash: one field per API process, its number of open streams. Taking
a place is one Lua script — sum the fields, refuse at the plan's limit, else add one to this
process's field — so racing connects on many processes never overshoot. Giving it back
subtracts one.

A process that dies cannot give its places back, so each process holds a lease key (a TTL of
:data:`LEASE_SECONDS`, renewed every third of that by :meth:`run`); the script
counts only the fields of processes whose lease is alive and deletes the others. The renewal
also writes this process's true counts, so a give-back lost to a Redis outage (or a Redis that
came back empty) is corrected within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("brik.realtime")

LEASE_SECONDS = 30
_LEASE_PREFIX = "brik:realtime-lease:"

_TAKE = """
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local process = fields[i]
  if process ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. process) == 0 then
    redis.call('HDEL', KEYS[1], process)
  else
    total = total + tonumber(fields[i + 1])
  end
end
local limit = tonumber(ARGV[2])
if limit >= 0 and total >= limit then
  return -1
end
redis.call('SET', ARGV[3] .. ARGV[1], '1', 'EX', ARGV[4])
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return total + 1
"""
_GIVE_BACK = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def _counts_key(project_id: str) -> str:
    return f"brik:realtime-connections:{project_id}"


class ConnectionLimiter:
    def __init__(
        self, redis: Redis, process_id: str | None = None, lease_seconds: int = LEASE_SECONDS
    ) -> None:
        self._redis = redis
        self.process_id = process_id or uuid.uuid4().hex
        self._lease_seconds = lease_seconds
        self._local: Counter[str] = Counter()
        self._giving_back: set[asyncio.Task[None]] = set()

    def open_streams(self, project_id: str) -> int:
        return self._local[project_id]

    async def take(self, project_id: str, limit: int | None) -> bool:
        """Take a place for a stream of ``project_id`` (False: the limit is reached).

        Raises ``RedisError`` when Redis is away (nothing is taken)."""
        taken = await self._redis.eval(  # type: ignore[misc]
            _TAKE, 1, _counts_key(project_id), self.process_id,
            str(-1 if limit is None else limit), _LEASE_PREFIX, str(self._lease_seconds),
        )  # fmt: skip
        if int(taken) < 0:
            return False
        self._local[project_id] += 1
        return True

    def give_back(self, project_id: str) -> None:
        """Give a place back: at once here, in Redis as soon as it can be (see :meth:`run`)."""
        self._local[project_id] -= 1
        task = asyncio.ensure_future(self._give_back(project_id))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    async def _give_back(self, project_id: str) -> None:
        try:
            await self._redis.eval(  # type: ignore[misc]
                _GIVE_BACK, 1, _counts_key(project_id), self.process_id
            )
        except RedisError as exc:
            logger.info("realtime: a stream's place not given back yet (%s); renewal will", exc)

    async def renew(self) -> None:
        """Renew this process's lease and write its true counts."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_LEASE_PREFIX + self.process_id, "1", ex=self._lease_seconds)
            for project_id, count in list(self._local.items()):
                key = _counts_key(project_id)
                if count > 0:
                    pipe.hset(key, self.process_id, str(count))
                    pipe.expire(key, self._lease_seconds)
                else:
                    pipe.hdel(key, self.process_id)
                    del self._local[project_id]
            await pipe.execute()

    async def run(self) -> None:
        """Renew a third of the lease apart for the life of the process."""
        while True:
            with contextlib.suppress(RedisError, OSError):
                await self.renew()
            await asyncio.sleep(self._lease_seconds / 3)

    async def release_all(self) -> None:
        """The process is stopping: give every place back and drop the lease."""
        if self._giving_back:
            await asyncio.gather(*self._giving_back, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            async with self._redis.pipeline(transaction=True) as pipe:
                for project_id in self._local:
                    pipe.hdel(_counts_key(project_id), self.process_id)
                pipe.delete(_LEASE_PREFIX + self.process_id)
                await pipe.execute()
        self._local.clear()
