"""Analytics events for tests: as an app sends them, and as the API buffers them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import TypeAdapter
from redis.asyncio import Redis

from controlplane.analytics.buffer import EventBuffer
from controlplane.analytics.events import TrackedEvent
from controlplane.models import AnalyticsRollup, Dimension, Granularity, KeyMode

_EVENTS = TypeAdapter(list[TrackedEvent])
BUFFER_BYTES = 64 * 1024 * 1024


def event(name: str, **fields: Any) -> dict[str, Any]:
    """An event as an app sends it, timestamped now, with a fresh id unless one is given."""
    return {"id": str(uuid.uuid4()), "name": name,
            "timestamp": datetime.now(UTC).isoformat(), **fields}  # fmt: skip


def impression(widget: str = "Score", **fields: Any) -> dict[str, Any]:
    return event("widget.impression", widget=widget, **fields)


def buffered(events: list[dict[str, Any]]) -> bytes:
    """``events`` as the API appends them to the buffer: checked, then JSON."""
    checked = [TrackedEvent.model_validate(item, strict=True) for item in events]
    return _EVENTS.dump_json(checked, exclude_none=True)


async def append(
    buffer: EventBuffer, project_id: str, events: list[dict[str, Any]],
    mode: KeyMode = KeyMode.TEST,
) -> None:  # fmt: skip
    await buffer.append(project_id, mode, datetime.now(UTC), buffered(events))


def event_buffer(redis: Redis, max_bytes: int = BUFFER_BYTES) -> EventBuffer:
    return EventBuffer(redis, max_bytes)


async def counted(project_id: str, name: str = "widget.impression") -> int:
    """Events of ``name`` in the project's daily rollups (every day), as the summary adds them."""
    rows = await AnalyticsRollup.filter(
        project_id=project_id, granularity=Granularity.DAY, dimension=Dimension.ALL, name=name
    ).values_list("count", flat=True)
    return sum(int(count) for count in rows)  # type: ignore[call-overload]


async def lock_rollups(database_url: str, project_id: str) -> asyncpg.Connection:
    """Another session holding the project's rollup rows: a load blocks inside its
    transaction, with its events inserted and not yet committed."""
    locker = await asyncpg.connect("postgresql://" + database_url.split("://", 1)[1])
    await locker.execute("BEGIN")
    await locker.execute(
        "SELECT 1 FROM analytics_rollups WHERE project_id = $1 FOR UPDATE", project_id
    )
    return locker


async def wait_for_a_blocked_upsert(database_url: str) -> None:
    """Until a session of this database waits for a lock on the rollups (its own connection:
    a transaction sees pg_stat_activity as it was when the transaction first read it)."""
    watcher = await asyncpg.connect("postgresql://" + database_url.split("://", 1)[1])
    try:
        for _ in range(400):
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%analytics_rollups%'"
            )
            if waiting:
                return
            await asyncio.sleep(0.05)
    finally:
        await watcher.close()
    raise AssertionError("the load never reached its rollup upsert")
