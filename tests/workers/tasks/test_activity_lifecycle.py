"""The Live Activity sweep is one of the worker's crons.

What it does is tested by calling it directly: tests/controlplane/api/test_activities.py (Apple's
limits) and tests/workers/test_deliver_activities.py (broadcast channels closed at Apple).
"""

from __future__ import annotations

from controlplane.settings import Settings
from workers.worker import build_worker


async def test_the_worker_runs_the_activity_sweep_every_minute(settings: Settings) -> None:
    # Built inside the running loop, as build_worker asks: arq takes the current event loop.
    worker = build_worker(settings, handle_signals=False)
    [job] = [job for job in worker.cron_jobs if job.name == "cron:scheduled_activity_sweep"]
    assert job.second == 25
    assert job.minute is None
