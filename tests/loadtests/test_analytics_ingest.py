"""``python -m loadtests.analytics_ingest`` runs as documented, briefly, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.databases import configured_server_url
from tests.support.processes import clean_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_ingestion_benchmark_measures_both_and_loads_every_event_once(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.analytics_ingest", "--seconds", "0.5", "--rate", "500",
         "--batch-size", "50", "--concurrency", "2", "--repeat", "1",
         "--results-dir", str(tmp_path)],
        cwd=ROOT,
        env=clean_environment(
            BRIK_BENCH_DATABASE_URL=configured_server_url(),
            BRIK_PLAN_FREE_REQUESTS_PER_SECOND="1",  # the benchmark's plan must not be Free
        ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [written] = tmp_path.glob("analytics-ingest-*.json")
    figures = json.loads(written.read_text())
    assert figures["raw_xadd"]["events_per_second"] > 0
    assert figures["brik_saturated"]["events_per_second"] > 0
    assert figures["ratio_brik_over_raw"] > 0
    assert figures["worker_load"]["every_event_once"], figures["worker_load"]
    assert "b/a" in result.stdout
