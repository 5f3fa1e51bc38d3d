"""``python -m loadtests.one_to_one`` runs as documented, at a tiny size so that it cannot rot."""

from __future__ import annotations

from pathlib import Path

from tests.support.benchmarks import run_benchmark


def test_the_one_to_one_benchmark_measures_both_runs_for_each_client_count(
    tmp_path: Path,
) -> None:
    run = run_benchmark(
        "one_to_one", "--devices", "40", "--clients", "2", "--clients", "4",
        results_dir=tmp_path, written="one-to-one-*.json",
    )  # fmt: skip
    figures = run.figures
    for clients in (2, 4):
        run = figures[f"clients_{clients}"]
        for side in ("raw_aioapns", "brik"):
            assert run[side]["deliveries_per_second"] > 0
            assert run[side]["half_rate_latency_p99_ms"] > 0
        assert run["ratio_deliveries_per_second"] > 0
    assert figures["command"] == (
        ".venv/bin/python -m loadtests.one_to_one --devices 40 --clients 2 --clients 4"
    )
