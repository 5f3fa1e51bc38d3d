"""``python -m loadtests.http_api`` (locust) runs as documented, briefly, so it cannot rot.

locust is in the ``dev`` extra for this: the locustfile is the part that would rot first (it
speaks the API by hand), and only running it under locust shows that every request it makes
still succeeds. It runs in a child process, so gevent never patches the test process.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.benchmarks import run_benchmark


def test_the_http_benchmark_runs_every_request_without_a_failure(tmp_path: Path) -> None:
    run = run_benchmark(
        # 5 s, not 3: on a loaded machine locust's first requests came after 3 s (none counted).
        "http_api", "--users", "2", "--seconds", "5",
        results_dir=tmp_path, written="http-api-*.json",
        BRIK_PLAN_FREE_PUSHES_PER_MONTH="0",  # the benchmark's plan must not be Free
        BRIK_PLAN_FREE_REQUESTS_PER_SECOND="1",
    )  # fmt: skip
    figures = run.figures
    assert figures["total"]["requests"] > 0
    assert figures["total"]["failures"] == 0, figures
    assert {"POST /v1/devices", "POST /v1/pushes"} <= set(figures["endpoints"])
    per_request = figures["cpu_ms_per_request"]
    assert set(per_request) == {"api", "worker", "load_generator"}
    assert per_request["api"] > 0
    assert per_request["load_generator"] > 0


def test_the_pushes_only_run_sends_to_users_who_each_have_a_device(tmp_path: Path) -> None:
    run = run_benchmark(
        # 5 s, not 3: on a loaded machine locust's first requests came after 3 s (none counted).
        "http_api", "--users", "2", "--seconds", "5", "--pushes-only", "--recipients", "20",
        results_dir=tmp_path, written="http-api-pushes-*.json",
    )  # fmt: skip
    figures = run.figures
    assert set(figures["endpoints"]) == {"POST /v1/pushes"}
    assert figures["total"]["failures"] == 0, figures
    assert figures["command"].endswith("--pushes-only --recipients 20")
