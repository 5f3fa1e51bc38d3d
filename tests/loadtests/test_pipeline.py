"""``python -m loadtests.pipeline`` runs as documented, at a tiny size so that it cannot rot."""

from __future__ import annotations

from pathlib import Path

from tests.support.benchmarks import run_benchmark


def test_the_pipeline_benchmark_delivers_to_every_device(tmp_path: Path) -> None:
    devices = 20
    run = run_benchmark(
        "pipeline", "--devices", str(devices), "--repeat", "1",
        results_dir=tmp_path, written="pipeline-apns-*.json",
        # The Free plan's quota, shrunk below the run's size as 10,000 is below the
        # documented 20,000: the benchmark's organization must not be held to it.
        BRIK_PLAN_FREE_PUSHES_PER_MONTH="10",
    )  # fmt: skip
    figures = run.figures
    assert figures["devices"] == devices
    assert figures["raw_aioapns_sends_per_second"] > 0
    assert figures["end_to_end_deliveries_per_second"] > 0
    assert figures["command"].startswith(
        ".venv/bin/python -m loadtests.pipeline --provider apns --answer-delay 0.0 --devices 20 "
    )


def test_the_pipeline_benchmark_measures_fcm_behind_a_slow_network(tmp_path: Path) -> None:
    devices = 20
    run = run_benchmark(
        "pipeline", "--devices", str(devices), "--repeat", "1", "--provider", "fcm",
        "--answer-delay", "0.05",
        results_dir=tmp_path, written="pipeline-fcm-20-delay50ms-*.json",
    )  # fmt: skip
    figures = run.figures
    assert (figures["provider"], figures["answer_delay_seconds"]) == ("fcm", 0.05)
    assert figures["raw_aiohttp_sends_per_second"] > 0
    assert figures["pyfcm_async_sends_per_second"] > 0
    assert figures["end_to_end_deliveries_per_second"] > 0
