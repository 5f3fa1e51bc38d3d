"""The Redis stream between ``POST /v1/events`` and the workers that load events in bulk.

An accepted batch is *one* stream entry, appended with one script call — one round trip, and
all or nothing: a request that cannot reach Redis has appended nothing and answers 503, so a
client retries a batch that is either wholly in the buffer or not at all (and a retry of one
that was in after all is deduplicated when loaded, by event id).

Workers read the stream through one consumer group (``ANALYTICS_GROUP``): each entry goes to
one worker, stays *pending* under that worker's name until it is acknowledged, and is
acknowledged only after its events are committed to PostgreSQL. A worker that dies between
reading and acknowledging leaves its entries pending; once they have been idle for
``BRIK_ANALYTICS_CLAIM_IDLE_SECONDS`` another worker claims them (``XAUTOCLAIM``) and loads
them again, which inserts only what the first did not commit. Acknowledging also deletes the
entry, so the stream holds exactly what is still to be loaded.

The buffer is bounded, but never by dropping events: ``XADD … MAXLEN`` would trim entries no
worker has loaded yet. A counter holds the JSON bytes in the stream (added by the append
script, freed by the acknowledge script, both atomic); an append that would take it past
``BRIK_ANALYTICS_BUFFER_MAX_BYTES`` is refused — a 503 while workers catch up — so a long
worker outage costs Redis a known amount of memory, then refuses, rather than eating Redis.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from controlplane.core.keyspace import ANALYTICS_BUFFERED_BYTES, ANALYTICS_GROUP, ANALYTICS_STREAM
from controlplane.models import KeyMode

logger = logging.getLogger("brik.analytics")

# KEYS: stream, counter. ARGV: size, limit, project, mode, received_at, events (JSON).
_APPEND = """
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local size = tonumber(ARGV[1])
if used > 0 and used + size > tonumber(ARGV[2]) then
  return -1
end
redis.call('XADD', KEYS[1], '*', 'p', ARGV[3], 'm', ARGV[4], 'r', ARGV[5], 'e', ARGV[6])
return redis.call('INCRBY', KEYS[2], size)
"""

# KEYS: stream, counter. ARGV: group, then pairs of entry id and its size. Each entry is
# acknowledged and deleted; only the bytes of entries this call deleted are freed, so two
# workers acknowledging the same reclaimed entry free its bytes once.
_ACKNOWLEDGE = """
local freed = 0
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    freed = freed + tonumber(ARGV[i + 1])
  end
end
local left = redis.call('DECRBY', KEYS[2], freed)
if left < 0 or redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], 0)
end
return freed
"""


@dataclass(frozen=True)
class Batch:
    """One stream entry: the events one request accepted for one project and mode."""

    entry_id: str
    project_id: str
    mode: KeyMode
    received_at: datetime
    events: list[dict[str, Any]]
    size: int  # its events' JSON bytes, as counted against the bound


class BufferFull(Exception):
    """The stream holds ``BRIK_ANALYTICS_BUFFER_MAX_BYTES`` already: workers are behind."""


class EventBuffer:
    """Appending to the stream (the API) and taking from it (the workers)."""

    def __init__(self, redis: Redis, max_bytes: int) -> None:
        self._redis = redis
        self._max_bytes = max_bytes
        self._append = redis.register_script(_APPEND)
        self._acknowledge = redis.register_script(_ACKNOWLEDGE)

    async def append(
        self, project_id: str, mode: KeyMode, received_at: datetime, events: bytes
    ) -> None:
        """Append one batch (its events as a JSON array). Raises :class:`BufferFull`, or
        whatever Redis raises — in both cases nothing was appended."""
        args: list[bytes | str | int] = [len(events), self._max_bytes, project_id, mode.value,
                                         received_at.isoformat(), events]  # fmt: skip
        added = await self._append(keys=[ANALYTICS_STREAM, ANALYTICS_BUFFERED_BYTES], args=args)
        if int(added) < 0:
            raise BufferFull

    async def take(self, consumer: str, *, count: int, claim_idle_ms: int) -> list[Batch]:
        """Up to ``count`` batches for ``consumer``: first those another worker took and left
        idle for ``claim_idle_ms`` (it died), then new ones."""
        try:
            return await self._take(consumer, count, claim_idle_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        # First use, or Redis lost the stream: the group reads it from its very beginning.
        try:
            await self._redis.xgroup_create(
                ANALYTICS_STREAM, ANALYTICS_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        return await self._take(consumer, count, claim_idle_ms)

    async def _take(self, consumer: str, count: int, claim_idle_ms: int) -> list[Batch]:
        claimed = await self._redis.xautoclaim(
            ANALYTICS_STREAM, ANALYTICS_GROUP, consumer, min_idle_time=claim_idle_ms,
            start_id="0-0", count=count,
        )  # fmt: skip
        entries: list[tuple[bytes, dict[bytes, bytes]]] = list(claimed[1])
        if len(entries) < count:
            fresh = await self._redis.xreadgroup(
                ANALYTICS_GROUP, consumer, {ANALYTICS_STREAM: ">"}, count=count - len(entries)
            )
            for _stream, stream_entries in fresh:
                entries += stream_entries
        batches = []
        for entry_id, fields in entries:
            batch = _batch(entry_id, fields)
            if batch is None:  # unreadable: dropped, said loudly, so it cannot block the rest
                await self.acknowledge([_empty(entry_id, len(fields.get(b"e", b"")))])
                continue
            batches.append(batch)
        return batches

    async def acknowledge(self, batches: list[Batch]) -> None:
        """Mark ``batches`` loaded: acknowledged, deleted from the stream, their bytes freed."""
        if not batches:
            return
        args: list[str | int] = [ANALYTICS_GROUP]
        for batch in batches:
            args += [batch.entry_id, batch.size]
        await self._acknowledge(keys=[ANALYTICS_STREAM, ANALYTICS_BUFFERED_BYTES], args=args)

    async def backlog(self) -> tuple[int, int]:
        """Batches in the stream and their bytes: what is still to be loaded."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(ANALYTICS_STREAM)
            pipe.get(ANALYTICS_BUFFERED_BYTES)
            length, size = await pipe.execute()
        return int(length), int(size or 0)

    async def forget_idle_consumers(self, idle_ms: int) -> int:
        """Remove consumers (workers long gone) that hold nothing and were idle ``idle_ms``."""
        try:
            consumers = await self._redis.xinfo_consumers(ANALYTICS_STREAM, ANALYTICS_GROUP)
        except ResponseError:
            return 0  # no stream or no group yet
        gone = 0
        for consumer in consumers:
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) >= idle_ms:
                name = consumer["name"]
                await self._redis.xgroup_delconsumer(
                    ANALYTICS_STREAM, ANALYTICS_GROUP, name.decode() if isinstance(name, bytes)
                    else name,
                )  # fmt: skip
                gone += 1
        return gone


def _batch(entry_id: bytes, fields: dict[bytes, bytes]) -> Batch | None:
    try:
        events = json.loads(fields[b"e"])
        if not isinstance(events, list):
            raise ValueError("events are not a list")
        return Batch(
            entry_id=entry_id.decode(),
            project_id=fields[b"p"].decode(),
            mode=KeyMode(fields[b"m"].decode()),
            received_at=datetime.fromisoformat(fields[b"r"].decode()),
            events=events,
            size=len(fields[b"e"]),
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        logger.error("analytics stream entry %s is unreadable (%s); dropped", entry_id, exc)
        return None


def _empty(entry_id: bytes, size: int) -> Batch:
    return Batch(entry_id.decode(), "", KeyMode.TEST, datetime.min, [], size)
