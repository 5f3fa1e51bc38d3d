"""``python -m loadtests.realtime`` runs as documented, briefly, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.databases import configured_server_url
from tests.support.processes import clean_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_realtime_benchmark_delivers_every_message_to_every_subscriber_of_both(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.realtime", "--subscribers", "20", "--messages", "3",
         "--interval", "0.1", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        env=clean_environment(
            BRIK_BENCH_DATABASE_URL=configured_server_url(),
            BRIK_PLAN_FREE_REALTIME_CONNECTIONS="1",  # the benchmark's plan must not be Free
        ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [written] = tmp_path.glob("realtime-*.json")
    figures = json.loads(written.read_text())
    for side in ("reference_raw_sse", "brik"):
        assert figures[side]["failed_to_open"] == 0, figures[side]
        assert figures[side]["deliveries"] == figures[side]["deliveries_expected"] == 60
    assert figures["ratio_brik_over_raw"]["latency_p99"] > 0
    assert "b/a" in result.stdout
