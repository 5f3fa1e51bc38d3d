"""An export's life: asked for, built under a lease, downloadable by a signed link, deleted.

``queued`` → ``running`` → ``succeeded`` → ``expired``; or ``failed``. Every change is one
conditional UPDATE, so two workers handed the same export (a duplicated job, a sweep racing a
slow worker) never both build it: :func:`claim` takes a queued export, or a running one whose
lease ran out (its worker was killed), and only the holder of the lease may renew it, finish it
or fail it. A build that fails is queued again, up to :data:`MAX_ATTEMPTS` builds in all.

The download link is ``/v1/exports/{id}/download?expires=…&signature=…``: an HMAC-SHA256 of the
export id and the expiry with ``BRIK_SECRET_KEY`` (any key of the ring verifies, so rotating
the secret key does not break links), valid until the archive expires
(``BRIK_EXPORT_LIFETIME_HOURS``); whoever holds the link may download, as with a presigned
object-storage URL — treat it as the data itself.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from tortoise.expressions import F, Q

from controlplane.auth.peppers import PepperRing
from controlplane.exports.archive import Archive
from controlplane.models import Export, ExportStatus, KeyMode
from controlplane.settings import Settings

logger = logging.getLogger("brik.exports")
MAX_ATTEMPTS = 3
# An archive (exp_….tar.gz) or a build's scratch directory (.exp_….<random>).
_EXPORT_FILE = re.compile(r"\.?(exp_[a-z2-7]{24})(?:\.tar\.gz|\..+)")
OPEN_STATUSES = (ExportStatus.QUEUED, ExportStatus.RUNNING)


class LeaseLost(Exception):
    """Another worker holds this export now (this one was too slow to renew its lease)."""


async def open_export(project_id: str, mode: KeyMode) -> Export | None:
    """The project's export in ``mode`` that is queued or being built, if any."""
    return await Export.filter(project_id=project_id, mode=mode, status__in=OPEN_STATUSES).first()


async def claim(export_id: str, settings: Settings, now: datetime | None = None) -> Export | None:
    """Take ``export_id`` to build it, or None if it is not to be built (by this caller)."""
    now = now or datetime.now(UTC)
    token = secrets.token_hex(8)
    takeable = Q(status=ExportStatus.QUEUED) | Q(status=ExportStatus.RUNNING, lease_until__lt=now)
    taken = await Export.filter(takeable, id=export_id, attempts__lt=MAX_ATTEMPTS).update(
        status=ExportStatus.RUNNING, lease_token=token, attempts=F("attempts") + 1,
        lease_until=now + timedelta(seconds=settings.export_lease_seconds), started_at=now,
    )  # fmt: skip
    return await Export.get(id=export_id) if taken else None


async def renew(export: Export, settings: Settings) -> None:
    until = datetime.now(UTC) + timedelta(seconds=settings.export_lease_seconds)
    held = Export.filter(id=export.id, lease_token=export.lease_token, status=ExportStatus.RUNNING)
    if not await held.update(lease_until=until):
        raise LeaseLost(export.id)


async def succeed(export: Export, archive: Archive, settings: Settings) -> bool:
    now = datetime.now(UTC)
    held = Export.filter(id=export.id, lease_token=export.lease_token, status=ExportStatus.RUNNING)
    return bool(
        await held.update(
            status=ExportStatus.SUCCEEDED, file_name=archive.file_name,
            size_bytes=archive.size_bytes, sha256=archive.sha256, counts=archive.counts,
            completed_at=now, expires_at=now + timedelta(hours=settings.export_lifetime_hours),
            lease_token=None, lease_until=None, error=None,
        )
    )  # fmt: skip


async def fail(export: Export, error: str) -> ExportStatus | None:
    """Give the build up: queued again, or failed after :data:`MAX_ATTEMPTS`. None: the lease
    was lost meanwhile (someone else is building it)."""
    final = export.attempts >= MAX_ATTEMPTS
    status = ExportStatus.FAILED if final else ExportStatus.QUEUED
    held = Export.filter(id=export.id, lease_token=export.lease_token, status=ExportStatus.RUNNING)
    changed = await held.update(
        status=status, lease_token=None, lease_until=None, error=error[:500],
        completed_at=datetime.now(UTC) if final else None,
    )  # fmt: skip
    return status if changed else None


async def to_hand_over(now: datetime, grace_seconds: float) -> list[tuple[str, int]]:
    """Exports no worker is on: queued for longer than ``grace_seconds`` (their job was lost,
    or Redis was away when they were asked for), or running under a lease that ran out (their
    worker died). Those out of attempts are failed here. Returns (id, attempts) to enqueue."""
    dead = Q(status=ExportStatus.RUNNING, lease_until__lt=now)
    await Export.filter(dead, attempts__gte=MAX_ATTEMPTS).update(
        status=ExportStatus.FAILED, lease_token=None, lease_until=None, completed_at=now,
        error=f"the worker building it stopped {MAX_ATTEMPTS} times",
    )  # fmt: skip
    waiting = Q(status=ExportStatus.QUEUED, created_at__lte=now - timedelta(seconds=grace_seconds))
    rows = await Export.filter(dead | waiting).values_list("id", "attempts")
    return [(str(export_id), int(attempts)) for export_id, attempts in rows]


async def delete_expired(directory: Path, now: datetime | None = None) -> int:
    """Delete the archives past their expiry (their exports say ``expired``), and any file in
    ``directory`` no export still needs — one whose project was deleted, scratch files of a
    build that was given up. Returns how many archives expired."""
    now = now or datetime.now(UTC)
    expired = await Export.filter(status=ExportStatus.SUCCEEDED, expires_at__lte=now)
    for export in expired:
        if export.file_name:
            await asyncio.to_thread((directory / export.file_name).unlink, missing_ok=True)
        await Export.filter(id=export.id, status=ExportStatus.SUCCEEDED).update(
            status=ExportStatus.EXPIRED
        )
    await _delete_orphans(directory)
    return len(expired)


async def discard(export: Export, directory: Path) -> None:
    """Delete ``export``'s archive now; it says ``expired`` (a link to it answers 404)."""
    await Export.filter(id=export.id, status=ExportStatus.SUCCEEDED).update(
        status=ExportStatus.EXPIRED, expires_at=datetime.now(UTC)
    )
    if export.file_name:
        await asyncio.to_thread((directory / export.file_name).unlink, missing_ok=True)
    await export.refresh_from_db()


async def _delete_orphans(directory: Path) -> None:
    found = await asyncio.to_thread(_export_files, directory)
    if not found:
        return
    needed = {ExportStatus.QUEUED, ExportStatus.RUNNING, ExportStatus.SUCCEEDED}
    kept = {
        str(export_id)
        for export_id in await Export.filter(id__in=list(found), status__in=needed).values_list(
            "id", flat=True
        )
    }
    for export_id, paths in found.items():
        if export_id not in kept:
            for path in paths:
                await asyncio.to_thread(_remove, path)


def _export_files(directory: Path) -> dict[str, list[Path]]:
    """The files of ``directory`` by the export they belong to (archives and scratch dirs)."""
    found: dict[str, list[Path]] = {}
    if not directory.is_dir():
        return found
    for path in directory.iterdir():
        match = _EXPORT_FILE.fullmatch(path.name)
        if match is not None:
            found.setdefault(match[1], []).append(path)
    return found


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- the download link ------------------------------------------------------------------------


def _message(export_id: str, expires: int) -> str:
    return f"export-download:{export_id}:{expires}"


def download_url(export: Export, settings: Settings) -> str | None:
    """The signed link to ``export``'s archive, or None while there is none to download."""
    if export.status is not ExportStatus.SUCCEEDED or export.expires_at is None:
        return None
    expires = int(export.expires_at.timestamp())
    signature = PepperRing.from_settings(settings).current.hash(_message(export.id, expires))
    query = urlencode({"expires": expires, "signature": signature})
    return f"{settings.public_base_url.rstrip('/')}/v1/exports/{export.id}/download?{query}"


def signature_holds(export_id: str, expires: int, signature: str, settings: Settings) -> bool:
    message = _message(export_id, expires)
    given = signature.encode("utf-8", "replace")  # any text may come in a query string
    return any(
        hmac.compare_digest(pepper.hash(message).encode(), given)
        for pepper in PepperRing.from_settings(settings).peppers
    )
