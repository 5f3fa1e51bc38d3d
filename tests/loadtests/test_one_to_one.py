"""``python -m loadtests.one_to_one`` runs as documented, at a tiny size so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.databases import configured_server_url
from tests.support.processes import clean_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_one_to_one_benchmark_measures_both_runs_for_each_client_count(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.one_to_one", "--devices", "40", "--clients", "2",
         "--clients", "4", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        env=clean_environment(BRIK_BENCH_DATABASE_URL=configured_server_url()),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [written] = tmp_path.glob("one-to-one-*.json")
    figures = json.loads(written.read_text())
    for clients in (2, 4):
        run = figures[f"clients_{clients}"]
        for side in ("raw_aioapns", "brik"):
            assert run[side]["deliveries_per_second"] > 0
            assert run[side]["half_rate_latency_p99_ms"] > 0
        assert run["ratio_deliveries_per_second"] > 0
    assert figures["command"] == (
        ".venv/bin/python -m loadtests.one_to_one --devices 40 --clients 2 --clients 4"
    )
