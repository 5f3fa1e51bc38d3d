"""``python -m loadtests.push_batches`` runs as documented, at a tiny size so that it cannot rot."""

from __future__ import annotations

from pathlib import Path

from tests.support.benchmarks import run_benchmark


def test_the_batch_benchmark_accepts_every_message_and_measures_the_raw_inserts(
    tmp_path: Path,
) -> None:
    run = run_benchmark(
        "push_batches", "--messages", "40", "--batch", "10", "--clients", "2",
        results_dir=tmp_path, written="push-batches-*.json",
    )  # fmt: skip
    figures = run.figures
    assert figures["brik"]["messages"] == 40  # every one accepted (a refusal stops the run)
    assert figures["raw_asyncpg_inserts"]["messages"] == 40
    assert figures["ratio_messages_per_second"] > 0
    assert figures["cpu_ms_per_message"]["api"] > 0
    assert figures["command"] == (
        ".venv/bin/python -m loadtests.push_batches --messages 40 --batch 10 --clients 2"
    )
