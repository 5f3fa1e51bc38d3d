"""Egress rate limit per project and provider: a token bucket in Redis, one atomic script.

So that one tenant's million-device fan-out cannot starve everyone else's pushes (or get the
whole installation throttled by Apple), each (project, provider) may send at most
``egress_rate_per_second`` on average with bursts up to ``egress_burst``, across every worker.
The bucket lives in Redis and is refilled and spent in one Lua script, using Redis's own clock,
so concurrent workers never overspend it. Deliveries over the limit are not failed: they wait
(re-queued for when the bucket will have refilled) and the wait does not count as an attempt.
"""

from __future__ import annotations

from redis.asyncio import Redis

_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if granted < want then
  wait = (math.min(want - granted, burst) - tokens) / rate
end
return {granted, tostring(wait)}
"""


class EgressLimiter:
    def __init__(self, redis: Redis, rate_per_second: float, burst: int) -> None:
        self._redis = redis
        self._rate = rate_per_second
        self._burst = burst
        self._script = redis.register_script(_SCRIPT)

    async def take(self, project_id: str, provider: str, wanted: int) -> tuple[int, float]:
        """How many of ``wanted`` sends may go now, and seconds until the rest may."""
        if self._rate <= 0 or wanted <= 0:
            return wanted, 0.0
        granted, wait = await self._script(
            keys=[f"brik:egress:{project_id}:{provider}"],
            args=[self._rate, self._burst, wanted],
        )
        return int(granted), float(wait)
