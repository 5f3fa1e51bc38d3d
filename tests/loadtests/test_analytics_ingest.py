"""``python -m loadtests.analytics_ingest`` runs as documented, briefly, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

from tests.support.benchmarks import run_benchmark


def test_the_ingestion_benchmark_measures_both_and_loads_every_event_once(tmp_path: Path) -> None:
    run = run_benchmark(
        "analytics_ingest", "--seconds", "0.5", "--rate", "500", "--batch-size", "50",
        "--concurrency", "2", "--repeat", "1",
        results_dir=tmp_path, written="analytics-ingest-*.json",
        BRIK_PLAN_FREE_REQUESTS_PER_SECOND="1",  # the benchmark's plan must not be Free
    )  # fmt: skip
    figures = run.figures
    assert figures["raw_xadd"]["events_per_second"] > 0
    assert figures["brik_saturated"]["events_per_second"] > 0
    assert figures["ratio_brik_over_raw"] > 0
    assert figures["worker_load"]["every_event_once"], figures["worker_load"]
    assert "b/a" in run.stdout
