"""The per-device cap: at most N pushes to one device in any 60 seconds, across all workers.

Protects end users (and the tenant's standing with Apple and Google) from a runaway sender.
Decided in Redis, one script call per chunk, with the generic cell rate algorithm: each device
has a "theoretical arrival time" that every push moves 60/N seconds on; a push that would move
it more than 60 seconds past now is over the cap. So a device gets N pushes at once, then one
every 60/N seconds — a rolling minute, with no clock-minute boundary to send 2N across. Only a
delivery's first attempt counts, so a retry is never capped by its own earlier attempt.
Deliveries over the cap end ``rate_limited`` — final, never sent, counted on the push like any
outcome. ``BRIK_DEVICE_PUSHES_PER_MINUTE`` sets N; 0 turns the cap off.
"""

from __future__ import annotations

from redis.asyncio import Redis

from workers.delivery_rows import Claimed

_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval = 60 / tonumber(ARGV[1])
local over = {}
for i = 2, #ARGV do
  local key = 'brik:device-cap:' .. ARGV[i]
  local arrival = tonumber(redis.call('GET', key) or '0')
  if arrival < now then arrival = now end
  local next_arrival = arrival + interval
  if next_arrival - now > 60.000001 then
    table.insert(over, ARGV[i])
  else
    redis.call('SET', key, string.format('%.6f', next_arrival), 'EX', 61)
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
