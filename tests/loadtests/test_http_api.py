"""``python -m loadtests.http_api`` (locust) runs as documented, briefly, so it cannot rot.

locust is in the ``dev`` extra for this: the locustfile is the part that would rot first (it
speaks the API by hand), and only running it under locust shows that every request it makes
still succeeds. It runs in a child process, so gevent never patches the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.databases import configured_server_url
from tests.support.processes import clean_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_http_benchmark_runs_every_request_without_a_failure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.http_api", "--users", "2", "--seconds", "3",
         "--results-dir", str(tmp_path)],
        cwd=ROOT,
        env=clean_environment(
            BRIK_BENCH_DATABASE_URL=configured_server_url(),
            BRIK_PLAN_FREE_PUSHES_PER_MONTH="0",  # the benchmark's plan must not be Free
            BRIK_PLAN_FREE_REQUESTS_PER_SECOND="1",
        ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [written] = tmp_path.glob("http-api-*.json")
    figures = json.loads(written.read_text())
    assert figures["total"]["requests"] > 0
    assert figures["total"]["failures"] == 0, figures
    assert {"POST /v1/devices", "POST /v1/pushes"} <= set(figures["endpoints"])
    per_request = figures["cpu_ms_per_request"]
    assert set(per_request) == {"api", "worker", "load_generator"}
    assert per_request["api"] > 0
    assert per_request["load_generator"] > 0


def test_the_pushes_only_run_sends_to_users_who_each_have_a_device(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.http_api", "--users", "2", "--seconds", "3",
         "--pushes-only", "--recipients", "20", "--results-dir", str(tmp_path)],
        cwd=ROOT, env=clean_environment(BRIK_BENCH_DATABASE_URL=configured_server_url()),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [written] = tmp_path.glob("http-api-pushes-*.json")
    figures = json.loads(written.read_text())
    assert set(figures["endpoints"]) == {"POST /v1/pushes"}
    assert figures["total"]["failures"] == 0, figures
    assert figures["command"].endswith("--pushes-only --recipients 20")
