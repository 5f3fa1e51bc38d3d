"""Building project exports, and the sweep that hands lost ones over and deletes old archives.

:func:`build_export` takes the export under a lease (``controlplane/exports/jobs.py``), writes
its archive (``controlplane/exports/archive.py``) renewing the lease as it goes, and records
it. A build that raises is queued again (up to three builds), with a job of its own a little
later. A worker killed mid-build leaves its lease to run out: :func:`scheduled_export_sweep`,
on the reconciler's cadence, hands such exports — and queued ones whose job was lost, or never
enqueued because Redis was away — to a worker again, so none stays ``running`` forever. It also
deletes archives past their expiry.

The job runs with arq's retries off (``max_tries=1``, ``workers/worker.py``): the lease, not
arq, decides whether an export is built again, so a duplicated job never builds it twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from controlplane.core.queue import enqueue_export
from controlplane.exports import jobs
from controlplane.exports.archive import write_archive
from controlplane.models import ExportStatus
from controlplane.settings import Settings

logger = logging.getLogger("brik.exports")
EXPORT_JOB_TIMEOUT_SECONDS = 6 * 3600.0  # a big project's archive; the lease is what matters
RETRY_AFTER_SECONDS = 5.0


async def build_export(ctx: dict[str, Any], export_id: str) -> str:
    """Build ``export_id``'s archive if it is this worker's to build; returns what happened."""
    settings: Settings = ctx["settings"]
    export = await jobs.claim(export_id, settings)
    if export is None:
        return "not to be built"

    async def renew() -> None:
        await jobs.renew(export, settings)

    try:
        archive = await write_archive(
            export, ctx["keyring"], settings.export_dir,
            source_instance=settings.public_base_url, renew=renew,
        )  # fmt: skip
    except jobs.LeaseLost:
        logger.warning("export %s was taken by another worker while this one built it", export_id)
        return "lease lost"
    except Exception as exc:
        logger.exception("building export %s failed", export_id)
        status = await jobs.fail(export, f"{type(exc).__name__}: {exc}")
        if status is ExportStatus.QUEUED:
            await enqueue_export(ctx["redis"], export_id, export.attempts,
                                 defer_by=RETRY_AFTER_SECONDS)  # fmt: skip
        return f"failed ({status})"
    if not await jobs.succeed(export, archive, settings):
        return "lease lost"
    return "succeeded"


async def scheduled_export_sweep(ctx: dict[str, Any]) -> int:
    """Hand lost exports to a worker again and delete expired archives; returns how many were
    handed over."""
    settings: Settings = ctx["settings"]
    now = datetime.now(UTC)
    lost = await jobs.to_hand_over(now, settings.reconcile_grace_seconds)
    stamp = now.strftime("%Y%m%d%H%M%S")
    for export_id, attempts in lost:
        await enqueue_export(ctx["redis"], export_id, attempts, late=stamp)
    await jobs.delete_expired(settings.export_dir, now)
    return len(lost)
