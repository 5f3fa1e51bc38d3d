"""Ingress rate limits: a token bucket per API key and one per project, in Redis.

Every request made with an API key takes one token from its key's bucket *and* its project's,
in one Lua script using Redis's clock — both or neither, so a refused request costs nothing, and
every API process shares the same buckets. The plan sets the rate; a bucket holds
``BRIK_RATE_LIMIT_BURST_SECONDS`` of it. The same script counts the request in the
organization's daily usage (a Redis hash the worker moves into the database).

Answers carry the IETF ``RateLimit-Policy`` and ``RateLimit`` fields
(draft-ietf-httpapi-ratelimit-headers): one policy per bucket, ``q`` tokens per ``w`` seconds,
and for each the remaining tokens ``r`` and the seconds ``t`` until it is full again. A refused
request gets 429 ``rate_limit_error`` with ``Retry-After``.

While Redis cannot be reached the limits do not fail open: each process keeps the same
buckets in memory (:mod:`controlplane.fallback_limits`), and counts the requests it let
through, to add them to the usage hash once Redis answers again.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from controlplane.auth.api_keys import KeyPrincipal
from controlplane.core.keyspace import REQUESTS_HASH
from controlplane.errors import RateLimited
from controlplane.fallback_limits import LocalBuckets, RedisBreaker
from controlplane.plans import PlanLimits

_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tokens = {}
for i = 1, 2 do
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local have = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens[i] = math.min(burst, have + math.max(0, now - at) * rate)
end
local allowed = 0
if tokens[1] >= 1 and tokens[2] >= 1 then
  allowed = 1
  tokens[1] = tokens[1] - 1
  tokens[2] = tokens[2] - 1
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
end
for i = 1, 2 do
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return {allowed, tostring(tokens[1]), tostring(tokens[2])}
"""

_POLICIES = ("api_key", "project")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: int  # whole seconds until a request would be allowed (0 when allowed)


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)
        self._breaker = RedisBreaker("rate limits")
        self._local = LocalBuckets()
        self._uncounted: Counter[str] = Counter()  # usage fields counted while Redis was away

    async def take(self, principal: KeyPrincipal, limits: PlanLimits) -> Decision:
        rate, burst = limits.requests_per_second, limits.burst
        day = datetime.now(UTC).date().isoformat()
        keys = [f"brik:ratelimit:key:{principal.key_id}",
                f"brik:ratelimit:project:{principal.project_id}"]  # fmt: skip
        usage = f"{principal.organization_id}:{principal.mode.value}:{day}"
        if self._breaker.should_try():
            try:
                allowed, *left = await self._script(
                    keys=[*keys, REQUESTS_HASH], args=[rate, burst, usage]
                )
            except RedisError as exc:
                self._breaker.failed(exc)
            else:
                if self._uncounted:
                    await self._count_uncounted()
                return _decision(bool(allowed), [float(value) for value in left], limits)
        allowed, tokens = self._local.take(keys, rate, burst)
        if allowed:
            self._uncounted[usage] += 1
        return _decision(allowed, tokens, limits)

    async def _count_uncounted(self) -> None:
        uncounted, self._uncounted = self._uncounted, Counter()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for field, count in uncounted.items():
                    pipe.hincrby(REQUESTS_HASH, field, count)
                await pipe.execute()
        except RedisError:
            self._uncounted.update(uncounted)  # counted on the next try instead


def _decision(allowed: bool, tokens: list[float], limits: PlanLimits) -> Decision:
    rate, burst = limits.requests_per_second, limits.burst
    window = max(1, math.ceil(burst / rate))
    policy = ", ".join(f'"{name}";q={burst};w={window}' for name in _POLICIES)
    state = ", ".join(
        f'"{name}";r={math.floor(have)};t={math.ceil((burst - have) / rate)}'
        for name, have in zip(_POLICIES, tokens, strict=True)
    )
    headers = {"RateLimit-Policy": policy, "RateLimit": state}
    if allowed:
        return Decision(True, headers, 0)
    retry_after = max(1, math.ceil((1 - min(tokens)) / rate))
    return Decision(False, {**headers, "Retry-After": str(retry_after)}, retry_after)


def refusal(decision: Decision, limits: PlanLimits) -> RateLimited:
    return RateLimited(
        f"Too many requests: the {limits.plan.value} plan allows "
        f"{limits.requests_per_second:g} requests per second per project and per API key "
        f"(bursts of {limits.burst}). Retry after {decision.retry_after} s.",
        headers=decision.headers,
    )
