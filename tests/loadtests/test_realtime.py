"""``python -m loadtests.realtime`` runs as documented, briefly, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

from tests.support.benchmarks import run_benchmark


def test_the_realtime_benchmark_delivers_every_message_to_every_subscriber_of_both(
    tmp_path: Path,
) -> None:
    run = run_benchmark(
        "realtime", "--subscribers", "20", "--messages", "3", "--interval", "0.1",
        results_dir=tmp_path, written="realtime-*.json",
        BRIK_PLAN_FREE_REALTIME_CONNECTIONS="1",  # the benchmark's plan must not be Free
    )  # fmt: skip
    figures = run.figures
    for side in ("reference_raw_sse", "brik"):
        assert figures[side]["failed_to_open"] == 0, figures[side]
        assert figures[side]["deliveries"] == figures[side]["deliveries_expected"] == 60
    assert figures["ratio_brik_over_raw"]["latency_p99"] > 0
    assert "b/a" in run.stdout
