"""Writing a project's archive: one NDJSON file per kind of row, and a manifest, in a tar.gz.

The archive (``exp_….tar.gz`` in ``BRIK_EXPORT_DIR``) holds, for one project and mode::

    manifest.json          what this is: format, schema version, source instance, counts
    devices.ndjson         one device per line, push tokens decrypted
    activities.ndjson      Live Activities
    activity_tokens.ndjson the token of each activity on each device, decrypted
    state.ndjson           state entries not expired
    pushes.ndjson          pushes (content and target as sent)
    deliveries.ndjson      one delivery per line (status, provider answer, times)
    events.ndjson          raw analytics events still within retention

Each line is a record of ``controlplane/exports/records.py``. Rows are read
:data:`~controlplane.exports.records.BATCH` at a time and written to files on disk as they come,
so no table is ever held in memory; ``renew`` is called after every batch (the worker keeps its
lease with it). The archive is written under a temporary name and renamed when whole, so a
reader never sees half an archive.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from controlplane.crypto import KeyRing
from controlplane.exports import records
from controlplane.exports.records import SCHEMA_VERSION, Record, batched_rows
from controlplane.models import (
    Activity,
    ActivityToken,
    AnalyticsEvent,
    Delivery,
    Device,
    Export,
    Push,
    StateEntry,
)

FORMAT = "brik-export"
MANIFEST = "manifest.json"
Renew = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Archive:
    file_name: str
    size_bytes: int
    sha256: str
    counts: dict[str, int]


def archive_name(export_id: str) -> str:
    return f"{export_id}.tar.gz"


def _tables(
    export: Export, keyring: KeyRing
) -> list[tuple[str, QuerySet[Any], Callable[[Any], Record]]]:
    project_id = export.project_id  # type: ignore[attr-defined]
    own = {"project_id": project_id, "mode": export.mode}
    live = Q(expires_at__isnull=True) | Q(expires_at__gt=datetime.now(UTC))
    return [
        ("devices", Device.filter(**own), lambda row: records.device(row, keyring)),
        ("activities", Activity.filter(**own), records.activity),
        ("activity_tokens",
         ActivityToken.filter(activity__project_id=project_id, activity__mode=export.mode),
         lambda row: records.activity_token(row, keyring)),
        ("state", StateEntry.filter(live, **own), records.state_entry),
        ("pushes", Push.filter(**own), records.push),
        ("deliveries", Delivery.filter(push__project_id=project_id, push__mode=export.mode),
         records.delivery),
        ("events", AnalyticsEvent.filter(**own), records.event),
    ]  # fmt: skip


async def _write_lines(
    out: TextIO, query: QuerySet[Any], record: Callable[[Any], Record], renew: Renew
) -> int:
    count = 0
    async for row in batched_rows(query):
        out.write(json.dumps(record(row), separators=(",", ":"), ensure_ascii=False))
        out.write("\n")
        count += 1
        if count % records.BATCH == 0:
            await renew()
    return count


async def write_archive(
    export: Export, keyring: KeyRing, directory: Path, *, source_instance: str, renew: Renew
) -> Archive:
    """Write ``export``'s archive into ``directory``; returns what was written."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(_remove_leftovers, directory, export.id)
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(dir=directory, prefix=f".{export.id}.") as work:
        parts = Path(work)
        for name, query, record in _tables(export, keyring):
            with (parts / f"{name}.ndjson").open("w", encoding="utf-8") as out:
                counts[name] = await _write_lines(out, query, record, renew)
            await renew()
        manifest = {
            "format": FORMAT, "schema": SCHEMA_VERSION, "export_id": export.id,
            "project_id": export.project_id,  # type: ignore[attr-defined]
            "mode": export.mode.value, "source_instance": source_instance,
            "created_at": datetime.now(UTC).isoformat(), "counts": counts,
            "files": [f"{name}.ndjson" for name in counts],
        }  # fmt: skip
        (parts / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        final = directory / archive_name(export.id)
        partial = parts / "archive.tar.gz"
        await asyncio.to_thread(_pack, parts, [MANIFEST, *manifest["files"]], partial)
        digest = await asyncio.to_thread(_sha256, partial)
        partial.replace(final)
    return Archive(final.name, final.stat().st_size, digest, counts)


def _remove_leftovers(directory: Path, export_id: str) -> None:
    """What an earlier build of this export left when its worker was killed mid-way."""
    for leftover in directory.glob(f".{export_id}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _pack(parts: Path, names: list[str], target: Path) -> None:
    with tarfile.open(target, "w:gz") as archive:
        for name in names:
            archive.add(parts / name, arcname=name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
