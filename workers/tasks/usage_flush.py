"""Moving API request counts from Redis into the daily usage series, once a minute.

API processes count each request with an API key in a Redis hash (one ``HINCRBY`` inside the
rate-limit script, no database write per request). This job adds each pending count to its
organization's day and then subtracts exactly what it added from the hash, so requests counted
during the flush stay for the next one.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from redis.asyncio import Redis

from controlplane.core.keyspace import REQUESTS_HASH
from controlplane.models import KeyMode, Organization, UsageMetric
from controlplane.usage import add_to_day

_SUBTRACT = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2])) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""


async def flush_request_counts(redis: Redis) -> int:
    """Add pending request counts to the database; returns how many requests were moved."""
    pending: dict[bytes, bytes] = await redis.hgetall(REQUESTS_HASH)  # type: ignore[misc]
    named = {raw_field.decode().split(":")[0] for raw_field in pending}
    ids: list[str] = await Organization.filter(id__in=named).values_list("id", flat=True)  # type: ignore[assignment]
    existing = set(ids)
    moved = 0
    for raw_field, raw_count in pending.items():
        organization_id, mode, day = raw_field.decode().split(":")
        count = int(raw_count)
        if organization_id in existing:  # counts of a deleted organization are dropped
            await add_to_day(
                organization_id, UsageMetric.API_REQUESTS, KeyMode(mode), count,
                date.fromisoformat(day),
            )  # fmt: skip
            moved += count
        await redis.eval(_SUBTRACT, 1, REQUESTS_HASH, raw_field, count)  # type: ignore[misc,arg-type]
    return moved


async def scheduled_request_count_flush(ctx: dict[str, Any]) -> int:
    return await flush_request_counts(ctx["redis"])
