"""A project export survives its worker being SIGKILLed mid-build: another worker finishes it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from controlplane.app import create_app
from controlplane.models import Export, ExportStatus
from controlplane.settings import Settings
from tests.controlplane.api.test_exports import bearer, members, populate, settled
from tests.support.processes import brik_cloud_command, settings_environment
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

EVENTS = 60_000  # enough rows that the build is still going when the worker is killed


def worker_process(settings: Settings) -> subprocess.Popen[bytes]:
    """``brik-cloud worker`` on ``settings``, in a process group of its own (to SIGKILL)."""
    return subprocess.Popen(
        [*brik_cloud_command(), "worker"],
        env=settings_environment(settings, BRIK_LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


@pytest.mark.faults
async def test_a_worker_killed_mid_export_leaves_it_to_another_that_finishes_it(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path
) -> None:
    settings = make_settings(
        export_dir=tmp_path / "exports", export_lease_seconds=2.0,
        reconcile_every_seconds=1, reconcile_grace_seconds=1.0,
    )  # fmt: skip
    acme = await make_tenant("Acme")
    async with serving(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as api:
        await populate(api, acme, events=EVENTS)
        victim = worker_process(settings)
        try:
            asked = await api.post("/v1/exports", headers=bearer(acme.secret_key))
            assert asked.status_code == 202, asked.text
            export_id = asked.json()["id"]
            deadline = time.monotonic() + 60
            while (await Export.get(id=export_id)).status is ExportStatus.QUEUED:
                assert time.monotonic() < deadline, "the worker never took the export"
                await asyncio.sleep(0.02)
            os.killpg(victim.pid, signal.SIGKILL)  # mid-build: nothing recorded
            victim.wait(timeout=10)
        finally:
            if victim.poll() is None:
                os.killpg(victim.pid, signal.SIGKILL)
        killed = await Export.get(id=export_id)
        assert (killed.status, killed.attempts) == (ExportStatus.RUNNING, 1)
        assert not list(settings.export_dir.glob("*.tar.gz"))  # never half an archive
        async with running_worker(settings):
            done = await settled(api, acme.secret_key, export_id, within=120)
        assert (done["status"], done["attempts"]) == ("succeeded", 2), done
        assert done["counts"]["events"] == EVENTS
        link = done["download_url"].split("/v1/", 1)[1]
        archive = (await api.get(f"/v1/{link}")).content
    assert len(members(archive)["events"]) == EVENTS
    # The killed build's scratch files are gone; only the archive is left.
    assert [path.name for path in settings.export_dir.iterdir()] == [f"{export_id}.tar.gz"]
