"""``python -m loadtests.flat_cost`` runs as documented, at a tiny size so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.databases import configured_server_url
from tests.support.processes import clean_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_flat_cost_benchmark_delivers_everything_for_one_tenant_and_for_many(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.flat_cost", "--pushes", "6", "--devices", "2",
         "--clients", "3", "--results-dir", str(tmp_path)],
        cwd=ROOT, env=clean_environment(BRIK_BENCH_DATABASE_URL=configured_server_url()),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [written] = tmp_path.glob("flat-cost-6-*.json")
    figures = json.loads(written.read_text())
    one, many = figures["one_tenant"], figures["one_tenant_per_push"]
    assert (one["tenants"], many["tenants"]) == (1, 6)
    assert one["deliveries"] == many["deliveries"] == 12
    assert figures["ratio_many_over_one"] > 0
    assert figures["command"] == (
        ".venv/bin/python -m loadtests.flat_cost --pushes 6 --devices 2 --clients 3"
    )
