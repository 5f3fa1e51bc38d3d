"""``python -m loadtests.flat_cost`` runs as documented, at a tiny size so that it cannot rot."""

from __future__ import annotations

from pathlib import Path

from tests.support.benchmarks import run_benchmark


def test_the_flat_cost_benchmark_delivers_everything_for_one_tenant_and_for_many(
    tmp_path: Path,
) -> None:
    run = run_benchmark(
        "flat_cost", "--pushes", "6", "--devices", "2", "--clients", "3",
        results_dir=tmp_path, written="flat-cost-6-*.json",
    )  # fmt: skip
    figures = run.figures
    one, many = figures["one_tenant"], figures["one_tenant_per_push"]
    assert (one["tenants"], many["tenants"]) == (1, 6)
    assert one["deliveries"] == many["deliveries"] == 12
    assert figures["ratio_many_over_one"] > 0
    assert figures["command"] == (
        ".venv/bin/python -m loadtests.flat_cost --pushes 6 --devices 2 --clients 3"
    )
