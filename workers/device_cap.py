"""The per-device cap: at most N pushes to one device per minute, across all workers.

Protects end users (and the tenant's standing with Apple and Google) from a runaway sender.
Counted in Redis per device and clock minute, one script call per chunk; only a delivery's
first attempt counts, so a retry is never capped by its own earlier attempt. Deliveries over
the cap end ``rate_limited`` — final, never sent, counted on the push like any outcome.
``BRIK_DEVICE_PUSHES_PER_MINUTE`` sets N; 0 turns the cap off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.asyncio import Redis

if TYPE_CHECKING:
    from workers.tasks.deliver import Claimed

_SCRIPT = """
local clock = redis.call('TIME')
local minute = math.floor(tonumber(clock[1]) / 60)
local over = {}
for i, device in ipairs(ARGV) do
  if i > 1 then
    local key = 'brik:device-pushes:' .. device .. ':' .. minute
    local count = redis.call('INCR', key)
    if count == 1 then redis.call('EXPIRE', key, 120) end
    if count > tonumber(ARGV[1]) then table.insert(over, device) end
  end
end
return over
"""


class DeviceCap:
    def __init__(self, redis: Redis, per_minute: int) -> None:
        self.per_minute = per_minute
        self._script = redis.register_script(_SCRIPT)

    async def split(self, rows: list[Claimed]) -> tuple[list[Claimed], list[Claimed]]:
        """``(over the cap, within it)``; rows on a retry are always within."""
        first = [row for row in rows if row.attempts == 1 and row.device_id is not None]
        if not first:
            return [], rows
        over_raw = await self._script(
            args=[self.per_minute, *(str(row.device_id) for row in first)]
        )
        over = {value.decode() if isinstance(value, bytes) else str(value) for value in over_raw}
        # One chunk is one push, so each device appears in it once at most.
        capped = [row for row in first if row.device_id in over]
        capped_ids = {row.id for row in capped}
        return capped, [row for row in rows if row.id not in capped_ids]
