"""Loading buffered events into PostgreSQL in bulk, and counting them into the rollups.

A worker takes batches from the stream (``controlplane/analytics/buffer.py``) and stores them
in one transaction (:func:`store`):

1. every event becomes a row of ``analytics_events`` — on PostgreSQL all of them in one
   ``INSERT … SELECT FROM unnest(…)`` (one array per column), elsewhere (SQLite, for
   ``brik-cloud dev``) a multi-row ``INSERT … VALUES`` — with ``ON CONFLICT DO NOTHING`` on
   (project, mode, event id) and ``RETURNING`` the rows it inserted;
2. *only the returned rows* are counted: into their hour and their day, by name, for everything
   and per dimension, added to ``analytics_rollups`` with one upsert
   (``count = count + EXCLUDED.count``), rows in one sorted order so that two workers never
   wait on each other in a cycle;
3. commit; only then does the worker acknowledge the batches in Redis.

That order is what makes a redelivery harmless. Killed before the commit, the transaction rolls
back and the batches are loaded again later, once. Killed after it but before the
acknowledgement, the batches are loaded again: every event conflicts, nothing is returned, and
nothing is counted twice. Two workers loading the same batch at once (one was slow, not dead)
serialise on the unique index; the second inserts nothing.

Events of a project deleted meanwhile are dropped (their batch is acknowledged); a project
being deleted while a load holds it waits for that load's commit (its deletion then removes
what was loaded).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from controlplane.analytics.buffer import Batch, EventBuffer
from controlplane.models import Dimension, Granularity, Project

ROWS_PER_STATEMENT = 1000  # SQLite: 21 parameters a row, within its 32,766
BATCHES_PER_TRANSACTION = 50  # stream entries, up to 500 events each

# The columns of an event row, in the order the statements take them.
_COLUMNS = ("project_id", "mode", "client_id", "name", "occurred_at", "received_at", "device_id",
            "user_id", "platform", "app_version", "os_version", "device_model", "locale",
            "country", "widget", "action", "activity_id", "push_id", "error_code",
            "error_message", "properties")  # fmt: skip
_TIMES = frozenset({"occurred_at", "received_at"})
# What a rollup needs of each inserted event.
_RETURNED = ("project_id", "mode", "name", "occurred_at", "widget", "platform", "os_version",
             "device_model", "country", "app_version")  # fmt: skip
_DIMENSION_NAMES = tuple(dimension.value for dimension in (
    Dimension.PLATFORM, Dimension.OS_VERSION, Dimension.DEVICE_MODEL, Dimension.COUNTRY,
    Dimension.APP_VERSION,
))  # fmt: skip
_ALL, _WIDGET = Dimension.ALL.value, Dimension.WIDGET.value
_HOUR, _DAY = Granularity.HOUR.value, Granularity.DAY.value
_ROLLUP_COLUMNS = ("project_id", "mode", "granularity", "bucket", "name", "dimension", "value",
                   "count")  # fmt: skip
_ROLLUP_KEY = _ROLLUP_COLUMNS[:-1]


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


_PG_INSERT_EVENTS = f"""
INSERT INTO "analytics_events" ({_quoted(_COLUMNS)})
SELECT {", ".join(f"r.{name}" for name in _COLUMNS[:-1])}, r.properties::jsonb
FROM unnest({
    ", ".join(
        f"${n}::{'timestamptz' if name in _TIMES else 'text'}[]"
        for n, name in enumerate(_COLUMNS, start=1)
    )
}) AS r({", ".join(_COLUMNS)})
ON CONFLICT ("project_id", "mode", "client_id") DO NOTHING
RETURNING {_quoted(_RETURNED)}
"""
_PG_UPSERT_ROLLUPS = f"""
INSERT INTO "analytics_rollups" ({_quoted(_ROLLUP_COLUMNS)})
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::text[], $8::bigint[])
ON CONFLICT ({_quoted(_ROLLUP_KEY)})
DO UPDATE SET "count" = "analytics_rollups"."count" + EXCLUDED."count"
"""
_PG_LOCK_PROJECTS = 'SELECT "id" FROM "projects" WHERE "id" = ANY($1::text[]) FOR KEY SHARE'
_SQLITE_INSERT_EVENTS = (
    f'INSERT INTO "analytics_events" ({_quoted(_COLUMNS)}) VALUES {{rows}} '
    f'ON CONFLICT ("project_id", "mode", "client_id") DO NOTHING RETURNING {_quoted(_RETURNED)}'
)
_SQLITE_UPSERT_ROLLUPS = (
    f'INSERT INTO "analytics_rollups" ({_quoted(_ROLLUP_COLUMNS)}) VALUES {{rows}} '
    f"ON CONFLICT ({_quoted(_ROLLUP_KEY)}) "
    'DO UPDATE SET "count" = "analytics_rollups"."count" + excluded."count"'
)


@dataclass
class Loaded:
    """What loading did: batches taken, events inserted, events already there (a redelivery or
    a retried request), events dropped (their project was deleted)."""

    batches: int = 0
    inserted: int = 0
    duplicates: int = 0
    dropped: int = 0
    rounds: int = 0
    projects: set[str] = field(default_factory=set)

    def add(self, other: Loaded) -> None:
        self.batches += other.batches
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.dropped += other.dropped
        self.rounds += other.rounds
        self.projects |= other.projects


def _time(value: Any) -> datetime:
    """A moment in UTC: SQLite compares stored moments as text, so all are stored in UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(UTC)


_OPTIONAL = ("device_id", "user_id", "platform", "app_version", "os_version", "device_model",
             "locale", "country", "widget", "action", "activity_id", "push_id", "error_code",
             "error_message")  # fmt: skip


def _rows(batch: Batch) -> Iterator[tuple[tuple[str, str, str], tuple[Any, ...]]]:
    """Each event of ``batch`` as its unique key and its row (``_COLUMNS``)."""
    head = (batch.project_id, batch.mode.value)
    received_at = _time(batch.received_at)
    for event in batch.events:
        get = event.get
        properties = get("properties")
        yield (*head, event["id"]), (
            *head, event["id"], event["name"], _time(event["timestamp"]), received_at,
            *[get(name) for name in _OPTIONAL],
            None if properties is None else json.dumps(properties, separators=(",", ":")),
        )  # fmt: skip


def rollup_increments(inserted: Iterable[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    """How much each rollup row grows for ``inserted`` (rows shaped as ``_RETURNED``).

    Events are first counted by everything a rollup row can tell apart — a batch from one app
    repeats the same few combinations — and only those are spread over the rows.
    """
    alike: Counter[tuple[Any, ...]] = Counter()
    for project_id, mode, name, occurred_at, widget, *values in inserted:
        hour = _time(occurred_at).replace(minute=0, second=0, microsecond=0)
        alike[(project_id, mode, name, hour, widget, *values)] += 1
    counts: Counter[tuple[Any, ...]] = Counter()
    for (project_id, mode, name, hour, widget, *values), count in alike.items():
        for granularity, bucket in ((_HOUR, hour), (_DAY, hour.replace(hour=0))):
            head = (project_id, mode, granularity, bucket, name)
            counts[(*head, _ALL, "")] += count
            if widget is not None:
                counts[(*head, _WIDGET, widget)] += count
            for dimension, value in zip(_DIMENSION_NAMES, values, strict=True):
                counts[(*head, dimension, value or "")] += count
    return counts


async def store(batches: list[Batch]) -> Loaded:
    """Insert the batches' events and count what was new, in one transaction."""
    loaded = Loaded(batches=len(batches))
    wanted = {batch.project_id for batch in batches if batch.events}
    async with in_transaction() as connection:
        postgres = connection.capabilities.dialect == "postgres"
        existing = await _existing_projects(connection, wanted, postgres)
        rows: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        for batch in batches:
            if batch.project_id not in existing:
                loaded.dropped += len(batch.events)
                continue
            for key, row in _rows(batch):
                rows.setdefault(key, row)
        inserted = await _insert_events(connection, list(rows.values()), postgres)
        await _add_to_rollups(connection, rollup_increments(inserted), postgres)
    loaded.inserted = len(inserted)
    loaded.duplicates = sum(len(batch.events) for batch in batches) - loaded.dropped - len(inserted)
    loaded.projects = {str(row[0]) for row in inserted}
    return loaded


async def _existing_projects(connection: Any, wanted: set[str], postgres: bool) -> set[str]:
    """Which of ``wanted`` still exist — held, on PostgreSQL, until this load commits
    (``FOR KEY SHARE``: a project's deletion waits for it rather than failing its inserts;
    SQLite runs one writer at a time anyway)."""
    if postgres:
        found = await connection.execute_query_dict(_PG_LOCK_PROJECTS, [sorted(wanted)])
        return {str(row["id"]) for row in found}
    ids = await Project.filter(id__in=wanted).values_list("id", flat=True)
    return {str(project_id) for project_id in ids}


async def _insert_events(
    connection: Any, rows: list[tuple[Any, ...]], postgres: bool
) -> list[tuple[Any, ...]]:
    if not rows:
        return []
    if postgres:
        columns = [list(column) for column in zip(*rows, strict=True)]
        returned = await connection.execute_query_dict(_PG_INSERT_EVENTS, columns)
        return [tuple(record[name] for name in _RETURNED) for record in returned]
    inserted: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        placeholders = ", ".join(["(" + ", ".join("?" * len(_COLUMNS)) + ")"] * len(chunk))
        values = [value for row in chunk for value in row]
        returned = await connection.execute_query_dict(
            _SQLITE_INSERT_EVENTS.format(rows=placeholders), values
        )
        inserted += [tuple(record[name] for name in _RETURNED) for record in returned]
    return inserted


async def _add_to_rollups(
    connection: Any, increments: Counter[tuple[Any, ...]], postgres: bool
) -> None:
    if not increments:
        return
    rows = [(*key, count) for key, count in sorted(increments.items(), key=_lock_order)]
    if postgres:
        columns = [list(column) for column in zip(*rows, strict=True)]
        await connection.execute_query(_PG_UPSERT_ROLLUPS, columns)
        return
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        placeholders = ", ".join(["(" + ", ".join("?" * len(_ROLLUP_COLUMNS)) + ")"] * len(chunk))
        values = [value for row in chunk for value in row]
        await connection.execute_query(_SQLITE_UPSERT_ROLLUPS.format(rows=placeholders), values)


def _lock_order(item: tuple[tuple[Any, ...], int]) -> tuple[Any, ...]:
    key = item[0]
    return (*key[:3], key[3].isoformat(), *key[4:])


async def load_pending(
    buffer: EventBuffer,
    consumer: str,
    *,
    claim_idle_seconds: float,
    time_budget_seconds: float = 50.0,
    batches_per_round: int = BATCHES_PER_TRANSACTION,
) -> Loaded:
    """Load until the stream has nothing for ``consumer`` (or the time budget is spent): take,
    store, commit, then acknowledge — round after round."""
    total = Loaded()
    deadline = time.monotonic() + time_budget_seconds
    claim_idle_ms = max(1, int(claim_idle_seconds * 1000))
    while time.monotonic() < deadline:
        batches = await buffer.take(consumer, count=batches_per_round, claim_idle_ms=claim_idle_ms)
        if not batches:
            break
        loaded = await store(batches)
        await buffer.acknowledge(batches)  # only once the events are committed
        loaded.rounds = 1
        total.add(loaded)
    return total
