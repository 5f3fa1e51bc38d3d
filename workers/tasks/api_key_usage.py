"""Moving API-key ``last_used_at`` stamps from Redis into the database, once a minute.

API processes record a key's use in a Redis hash instead of writing the database on every
request (``controlplane/auth/api_key_cache.py``). This job copies the newest stamps into
``api_keys.last_used_at`` (never moving one backwards) and then removes from the hash only
the fields that did not change meanwhile, so a use recorded during the flush is kept for the
next one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from tortoise.expressions import Q

from controlplane.core.keyspace import LAST_USED_HASH
from controlplane.models import ApiKey

_DELETE_UNCHANGED = """
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
"""


async def flush_api_key_usage(redis: Redis) -> int:
    """Copy pending stamps to the database; returns how many keys were seen."""
    pending: dict[bytes, bytes] = await redis.hgetall(LAST_USED_HASH)  # type: ignore[misc]
    flat: list[bytes] = []
    for raw_id, raw_stamp in pending.items():
        moment = datetime.fromtimestamp(float(raw_stamp), UTC)
        await ApiKey.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment), id=raw_id.decode()
        ).update(last_used_at=moment)
        flat += [raw_id, raw_stamp]
    if flat:
        await redis.eval(_DELETE_UNCHANGED, 1, LAST_USED_HASH, *flat)  # type: ignore[misc,arg-type]
    return len(pending)


async def scheduled_api_key_usage_flush(ctx: dict[str, Any]) -> int:
    return await flush_api_key_usage(ctx["redis"])
