"""State: JSON values by key, per project and mode — reading, writing, expiry and their bytes.

What an app built on Brik keeps between pushes (an order's ETA, a widget's data, a feature
flag) lives here, under keys the project chooses. The API (``controlplane/api/state.py``) and
the worker's purge call these functions; nothing here knows about HTTP.

Concurrent writers never lose an update silently. A write locks the entry's row first
(``SELECT … FOR UPDATE``), then checks the client's conditions against what it locked: an
``If-Match`` ETag that is no longer the entry's is a 412, so a read-modify-write loop either
applies on the version it read or is told to read again. Two requests creating the same key
at once both insert with ``ON CONFLICT DO NOTHING``; the one that finds another's row instead
of its own goes round again and writes over it as an update (or gets its 412 for
``If-None-Match: *``).

Plans are enforced in the same transaction. Every write changes its organization's
:class:`~controlplane.models.StateUsage` row for the mode by the bytes it adds or frees, with
one conditional UPDATE (``bytes + delta <= limit``) — concurrent writers serialise on that row,
so the limit is never overshot, not even by a byte, and a write that does not fit is refused
whole: its transaction rolls back with the entry untouched. Overwriting or deleting gives
bytes back the same way.

Expired entries are invisible at once (every read filters on ``expires_at``) but keep their
bytes until :func:`purge_expired` — the worker's job, once a minute — deletes them in batches
and gives the bytes back; a write over an expired entry replaces it and frees them at once.

The lock order is always the entry, then the usage row (the purge takes entries without
waiting, ``SKIP LOCKED``, then usage rows in a fixed order), so writers and the purge cannot
deadlock.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from pypika_tortoise.terms import Function as SqlFunction
from tortoise.expressions import F, Function, Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from controlplane.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
)
from controlplane.models import (
    KeyMode,
    Project,
    StateEntry,
    StateUsage,
    UsageDay,
    UsageMetric,
)

# Keys travel in the URL path, so they hold only characters no client or proxy rewrites there:
# no '/' (encoded slashes are refused or decoded by common proxies) and no leading '.' (a path
# segment '.' or '..' is removed by clients). ':' is the separator, as in activity:{id}.
KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,255}$"
KEY_RULE = (
    "1 to 256 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', not starting with '.', ':' or '-'"
)
_KEY = re.compile(KEY_PATTERN.removesuffix("$") + r"\Z")
MAX_VALUE_BYTES = 64 * 1024  # the value as compact JSON, in UTF-8
MAX_TTL_SECONDS = 365 * 24 * 3600
# Prefixes the API keeps for state it writes itself, with why: nothing under them is written
# or deleted through /v1/state. Those in READABLE_PREFIXES are read like any entry: an
# activity's content state as activity:{id} (served from the activity by
# controlplane/api/state.py; update the activity to change it), a widget's data as
# widget:{kind} (an entry the widget reload writes: controlplane/widgets.py).
ACTIVITY_PREFIX = "activity:"
WIDGET_PREFIX = "widget:"
RESERVED_PREFIXES: dict[str, str] = {
    ACTIVITY_PREFIX: "activity:{id} is the activity's content state, read-only (update the "
    "activity to change it)",
    WIDGET_PREFIX: "widget:{kind} is a widget's data, written by POST /v1/widgets/{kind}/reload "
    "(read it here)",
}
READABLE_PREFIXES = frozenset({ACTIVITY_PREFIX, WIDGET_PREFIX})
PURGE_BATCH = 1000
PURGE_MAX_BATCHES = 100  # per run; the next run (a minute later) carries on
_WRITE_ROUNDS = 3


def is_key(value: str) -> bool:
    return _KEY.match(value) is not None


def reserved_prefix(key: str, *, writing: bool = True) -> str | None:
    """The reserved prefix ``key`` is under, if it may not be written (``writing``) or read."""
    for prefix in RESERVED_PREFIXES:
        if key.startswith(prefix) and (writing or prefix not in READABLE_PREFIXES):
            return prefix
    return None


def encode_value(value: Any) -> str:
    """The value as stored and counted: compact JSON, non-ASCII characters as themselves."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def storable_value(value: Any, param: str = "value") -> str:
    """``value`` encoded, or 413 ``value_too_large`` (naming ``param``) when it is over
    :data:`MAX_VALUE_BYTES`."""
    text = encode_value(value)
    if (size := len(text.encode())) > MAX_VALUE_BYTES:
        raise PayloadTooLarge(
            f"{param}: {size:,} bytes as JSON; a state value holds at most {MAX_VALUE_BYTES:,}.",
            code="value_too_large",
            param=param,
        )
    return text


def decode_value(value_text: str) -> Any:
    return json.loads(value_text)


def entry_size(key: str, value_text: str) -> int:
    """What an entry counts against the plan: its key and its value, in UTF-8 bytes."""
    return len(key.encode()) + len(value_text.encode())


class Versioned(Protocol):
    """A row served as state: a state entry, or a Live Activity (``activity:{id}``)."""

    id: str
    version: int


def etag(entry: Versioned) -> str:
    """The entry's strong ETag (quoted, as in the header): its id and version, hashed.

    The id is random per entry, so an entry deleted and written again starts a new series:
    an ETag read before the delete never matches what is there now.
    """
    digest = hashlib.blake2b(f"{entry.id}.{entry.version}".encode(), digest_size=10)
    return f'"{digest.hexdigest()}"'


def visible(now: datetime) -> Q:
    """Entries that have not expired at ``now``."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def _is_visible(entry: StateEntry, now: datetime) -> bool:
    return entry.expires_at is None or entry.expires_at > now


@dataclass(frozen=True)
class Namespace:
    """Where entries live (a project and a mode) and whose plan their bytes count against."""

    project_id: str
    organization_id: str
    mode: KeyMode

    def entries(self) -> QuerySet[StateEntry]:
        return StateEntry.filter(project_id=self.project_id, mode=self.mode)


# --- conditions (If-Match, If-None-Match) -----------------------------------------------------


def parse_etags(header: str | None, name: str) -> tuple[str, ...] | None:
    """The entity tags of a conditional header, ``("*",)`` for ``*``; None when it is absent.

    A tag sent without its quotes is taken as if quoted (``abc`` is ``"abc"``). An empty
    header is a 400: a client that meant to make its write conditional must not have it
    applied unconditionally.
    """
    if header is None:
        return None
    tags = tuple(part.strip() for part in header.split(",") if part.strip())
    if not tags:
        raise InvalidRequest(
            f"{name} is empty: send an ETag the API gave you (with its quotes), or *.",
            code="parameter_invalid",
            param=name,
        )
    return tuple(tag if tag == "*" or tag.startswith(('"', 'W/"')) else f'"{tag}"' for tag in tags)


@dataclass(frozen=True)
class Conditions:
    """What a write requires of the entry as it finds it (RFC 9110, section 13.1)."""

    if_match: tuple[str, ...] | None = None
    if_none_match: tuple[str, ...] | None = None

    @classmethod
    def from_headers(cls, if_match: str | None, if_none_match: str | None) -> Conditions:
        return cls(parse_etags(if_match, "If-Match"), parse_etags(if_none_match, "If-None-Match"))

    def check(self, current: StateEntry | None, key: str) -> None:
        """412 ``precondition_failed`` unless the entry found (or its absence) satisfies them."""
        if self.if_match is not None:
            if current is None:
                raise PreconditionFailed(
                    f"If-Match: there is no state entry '{key}' (it was deleted or expired); "
                    "read it again before writing.",
                    param="If-Match",
                )
            # Strong comparison: a weak tag never matches.
            if "*" not in self.if_match and etag(current) not in self.if_match:
                raise _changed(current, key, "If-Match")
        if self.if_none_match is not None and current is not None:
            tags = {tag.removeprefix("W/") for tag in self.if_none_match}
            if "*" in tags:
                raise PreconditionFailed(
                    f"If-None-Match: *: the state entry '{key}' already exists.",
                    param="If-None-Match",
                    headers={"ETag": etag(current)},
                )
            if etag(current) in tags:
                raise _changed(current, key, "If-None-Match")


def _changed(current: StateEntry, key: str, header: str) -> PreconditionFailed:
    now = etag(current)
    return PreconditionFailed(
        f"{header}: the state entry '{key}' is at version {current.version} (ETag {now}), "
        "not the one this request names; read it again and retry.",
        param=header,
        headers={"ETag": now},
    )


# --- reading -----------------------------------------------------------------------------------


async def read(space: Namespace, key: str, now: datetime) -> StateEntry | None:
    return await space.entries().filter(visible(now), key=key).first()


class _Substr(Function):
    """``SUBSTR(text, start, length)``: the same in PostgreSQL and SQLite."""

    database_func = SqlFunction

    def _get_function_field(self, field: Any, *default_values: Any) -> SqlFunction:
        return SqlFunction("SUBSTR", field, *default_values)


async def page(
    space: Namespace,
    now: datetime,
    *,
    prefix: str | None = None,
    starting_after: str | None = None,
    limit: int = 10,
    public_only: bool = False,
) -> tuple[list[StateEntry], bool]:
    """Visible entries in key order after ``starting_after``; and whether more follow.

    The prefix is compared exactly (``SUBSTR``, not ``LIKE``: SQLite's ``LIKE`` ignores case).
    """
    query = space.entries().filter(visible(now))
    if prefix:
        query = query.annotate(head=_Substr("key", 1, len(prefix))).filter(head=prefix)
    if starting_after is not None:
        query = query.filter(key__gt=starting_after)
    if public_only:
        query = query.filter(public=True)
    rows = await query.order_by("key").limit(limit + 1)
    return rows[:limit], len(rows) > limit


# --- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    entry: StateEntry
    created: bool


async def _locked(space: Namespace, key: str) -> StateEntry | None:
    return await space.entries().select_for_update().filter(key=key).first()


async def write(
    space: Namespace,
    key: str,
    value_text: str,
    *,
    public: bool,
    expires_at: datetime | None,
    conditions: Conditions,
    limit: int | None,
    now: datetime,
    private_writable: bool = True,
) -> Written:
    """Create or replace the entry ``key``; call it inside the request's transaction.

    ``limit``: the plan's state bytes for the organization and mode (None: unlimited).
    ``private_writable`` False (a publishable key) refuses to replace a private entry.
    Raises 412 (conditions), 403 (private entry) or 429 ``state_quota_exceeded``; in every
    case the caller's transaction must roll back, which leaves the entry as it was.
    """
    size = entry_size(key, value_text)
    freed = 0
    for _ in range(_WRITE_ROUNDS):
        current = await _locked(space, key)
        if current is not None and not _is_visible(current, now):
            # Expired but not yet purged: replaced by a new entry (new id, new ETag series).
            freed += current.size_bytes
            await current.delete()
            current = None
        conditions.check(current, key)
        if current is not None and not private_writable and not current.public:
            raise private_entry(key)
        if current is None:
            entry = StateEntry(
                project_id=space.project_id, mode=space.mode, key=key, value=value_text,
                public=public, version=1, size_bytes=size, expires_at=expires_at,
                created_at=now, updated_at=now,
            )  # fmt: skip
            await StateEntry.bulk_create([entry], ignore_conflicts=True)
            if not await space.entries().filter(id=entry.id).exists():
                continue  # another request created the key first: write over its entry
            await _account(space, size - freed, limit)
            return Written(entry, created=True)
        previous = current.size_bytes
        current.value = value_text
        current.public = public
        current.expires_at = expires_at
        current.size_bytes = size
        current.version += 1
        current.updated_at = now
        await current.save(
            update_fields=["value", "public", "expires_at", "size_bytes", "version", "updated_at"]
        )
        await _account(space, size - previous - freed, limit)
        return Written(current, created=False)
    raise PreconditionFailed(
        f"The state entry '{key}' is being created and deleted by other requests as this one "
        "writes; retry.",
        code="state_entry_contended",
    )


async def delete(
    space: Namespace,
    key: str,
    *,
    conditions: Conditions,
    now: datetime,
    private_writable: bool = True,
) -> StateEntry:
    """Delete the entry ``key`` and give its bytes back; 404 when there is none (or it has
    expired), 412 when the conditions do not hold."""
    current = await _locked(space, key)
    if current is None or not _is_visible(current, now):
        raise missing_entry(key)
    conditions.check(current, key)
    if not private_writable and not current.public:
        raise private_entry(key)
    await current.delete()
    await _account(space, -current.size_bytes, None)
    return current


def missing_entry(key: str) -> NotFound:
    return NotFound(f"No state entry '{key}'.", param="key")


def private_entry(key: str) -> PermissionDenied:
    return PermissionDenied(
        f"The state entry '{key}' is private: publishable keys may not replace or delete it "
        "(a secret key wrote it without public: true).",
        code="state_entry_private",
        param="key",
    )


async def _account(space: Namespace, delta: int, limit: int | None) -> None:
    """Add ``delta`` bytes to the organization's state in this mode, or refuse with 429.

    One conditional UPDATE on the usage row (created on first use): concurrent writers
    serialise on it, and the check and the addition are one statement.
    """
    if delta == 0:
        return
    usage = StateUsage.filter(organization_id=space.organization_id, mode=space.mode)
    fits = usage if delta < 0 or limit is None else usage.filter(bytes__lte=limit - delta)
    if await fits.update(bytes=F("bytes") + delta):
        return
    if not await usage.exists():
        await StateUsage.bulk_create(
            [StateUsage(organization_id=space.organization_id, mode=space.mode)],
            ignore_conflicts=True,
        )
        if await fits.update(bytes=F("bytes") + delta):
            return
    assert limit is not None
    used = (await stored_bytes(space.organization_id)).get(space.mode, 0)
    noun = "test-mode state" if space.mode is KeyMode.TEST else "state"
    raise QuotaExceeded(
        f"This write needs {delta:,} more bytes of {noun}, but the organization stores "
        f"{used:,} of the {limit:,} bytes its plan allows. Delete entries (or let them "
        "expire), or upgrade the plan.",
        code="state_quota_exceeded",
        param="value",
    )


async def stored_bytes(organization_id: str) -> dict[KeyMode, int]:
    """Bytes of state the organization stores, by mode (expired entries not yet purged too)."""
    rows = await StateUsage.filter(organization_id=organization_id).values_list("mode", "bytes")
    return {KeyMode(mode): int(stored) for mode, stored in rows}


# --- purging -----------------------------------------------------------------------------------


async def purge_expired(now: datetime | None = None, batch: int = PURGE_BATCH) -> int:
    """Delete expired entries, ``batch`` per transaction, giving their bytes back; returns how
    many. Entries a writer holds are skipped (``SKIP LOCKED``): the writer replaces them."""
    now = now or datetime.now(UTC)
    purged = 0
    for _ in range(PURGE_MAX_BATCHES):
        async with in_transaction():
            expired = StateEntry.filter(expires_at__lte=now).order_by("expires_at").limit(batch)
            rows = await expired.select_for_update(skip_locked=True).only(*_ACCOUNTED)
            await _remove(rows)
        purged += len(rows)
        if len(rows) < batch:
            break
    return purged


async def purge_project(project_id: str, batch: int = PURGE_BATCH) -> int:
    """Delete every entry of a project being deleted, giving the bytes back (in batches)."""
    return await purge_matching(Q(project_id=project_id), batch)


async def purge_matching(where: Q, batch: int = PURGE_BATCH) -> int:
    """Delete every entry ``where`` selects, ``batch`` per transaction, giving the bytes back
    (a project being deleted, an end user being erased); returns how many went."""
    purged = 0
    while True:
        async with in_transaction():
            matching = StateEntry.filter(where).order_by("id").limit(batch)
            rows = await matching.select_for_update().only(*_ACCOUNTED)
            await _remove(rows)
        purged += len(rows)
        if len(rows) < batch:
            return purged


_ACCOUNTED = ("id", "project_id", "mode", "size_bytes")  # what a purge reads of an entry


async def _remove(rows: list[StateEntry]) -> None:
    """Delete ``rows`` (locked by the caller's transaction) and free their bytes."""
    if not rows:
        return
    await StateEntry.filter(id__in=[row.id for row in rows]).delete()
    project_ids = {row.project_id for row in rows}  # type: ignore[attr-defined]
    owners: dict[str, str] = {
        str(project_id): str(organization_id)
        for project_id, organization_id in await Project.filter(id__in=project_ids).values_list(
            "id", "organization_id"
        )
    }
    freed: dict[tuple[str, KeyMode], int] = defaultdict(int)
    for row in rows:
        organization_id = owners.get(row.project_id)  # type: ignore[attr-defined]
        if organization_id is not None:
            freed[(organization_id, row.mode)] += row.size_bytes
    for (organization_id, mode), size in sorted(freed.items()):  # one lock order
        await StateUsage.filter(organization_id=organization_id, mode=mode).update(
            bytes=F("bytes") - size
        )


async def record_daily_usage(day: date | None = None) -> None:
    """Write every organization's stored bytes into ``day``'s usage series (the worker does it
    once a minute, so each day shows what was stored at its last minute)."""
    day = day or datetime.now(UTC).date()
    rows = await StateUsage.all().values_list("organization_id", "mode", "bytes")
    if not rows:
        return
    await UsageDay.bulk_create(
        [
            UsageDay(
                organization_id=organization_id,
                day=day,
                mode=mode,
                metric=UsageMetric.STATE_BYTES,
                value=stored,
            )
            for organization_id, mode, stored in rows
        ],
        batch_size=PURGE_BATCH,
        on_conflict=["organization_id", "day", "mode", "metric"],
        update_fields=["value"],
    )
