"""HTTP API benchmark: requests/s and latency of a real ``brik-cloud serve`` under locust.

Creates a scratch PostgreSQL database, bootstraps a project (``brik-cloud bootstrap``), starts
``brik-cloud serve`` and ``brik-cloud worker`` as they run in production (one process each),
then runs ``loadtests/locustfile.py`` headless against it with a test-mode secret key (the
sandbox provider answers the pushes). The organization is put on the Enterprise plan with
``brik-cloud set-plan`` (no push quota, 5,000 requests/s per key), so the plan does not limit
what is measured. Prints per-endpoint figures and writes them as JSON to
``loadtests/results/``. Needs the local PostgreSQL (``BRIK_BENCH_DATABASE_URL``), a
``redis-server`` binary (a private one is started unless ``BRIK_BENCH_REDIS_URL`` names a
Redis) and locust (in the ``dev`` and ``loadtest`` extras). A benchmark, not a test: it asserts
nothing about speed (``tests/loadtests/`` runs it at a tiny size so that it keeps working).

    .venv/bin/python -m loadtests.http_api --users 50 --seconds 30
    .venv/bin/python -m loadtests.http_api --users 20 --seconds 10 --pushes-only

Next to the figures it reports the CPU each process spent per request — the API, the worker and
the load generator — so that a run on a busy machine can still be read.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from controlplane.settings import Settings
from loadtests.common import (
    BENCH_PLAN,
    RESULTS,
    bench_redis,
    cpu_seconds,
    create_scratch_database,
    drop_scratch_database,
    peak_rss_mb,
    run_identity,
    worker_process,
    write_results,
)
from tests.support.processes import (
    brik_cloud_command,
    free_port,
    running_command,
    settings_environment,
)

COMMAND = ".venv/bin/python -m loadtests.http_api"
LOCUSTFILE = Path(__file__).parent / "locustfile.py"


def _settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secrets.token_urlsafe(48),
        encryption_keys=[Fernet.generate_key().decode()],
        queue_name=f"brik-bench:{secrets.token_hex(3)}",
        log_level="WARNING",
    )


def _test_secret_key(env: dict[str, str]) -> str:
    """Migrate and bootstrap the scratch database, put its organization on the benchmark plan
    (``brik-cloud set-plan``: the Free plan's quota and rate would be what is measured); the
    project's test-mode secret key."""
    printed = subprocess.run(
        [*brik_cloud_command(), "bootstrap", "--json"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    created = json.loads(printed.stdout)
    subprocess.run(
        [*brik_cloud_command(), "set-plan", created["org_id"], BENCH_PLAN.value],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return str(created["keys"]["test_secret"])


def _locust(
    url: str, key: str, users: int, seconds: int, directory: Path, tags: list[str],
    recipients: int,
) -> tuple[list[dict[str, str]], float]:  # fmt: skip
    """Run locust headless: its per-endpoint statistics rows (the CSV it writes), and the CPU
    seconds the load generator itself used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
         "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s",
         "--host", url, "--csv", str(directory / "run"), "--only-summary",
         "--loglevel", "WARNING", *(["--tags", *tags] if tags else [])],
        env={**os.environ, "BRIK_BENCH_API_KEY": key,
             "BRIK_BENCH_RECIPIENTS": str(recipients)}, check=False,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    with (directory / "run_stats.csv").open() as stats:
        return list(csv.DictReader(stats)), used


def _warm_up(url: str, key: str) -> None:
    """One device and one push, untimed: the API's first requests (its connections, its
    caches) are not the steady state the run measures — on a loaded machine they outlasted a
    short run, which then counted nothing."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
        device = {"token": secrets.token_hex(32), "platform": "ios", "user_id": "warm-up"}
        api.post("/v1/devices", json=device).raise_for_status()
        push = {"kind": "alert", "alert": {"title": "Warm-up"}, "to": {"user_ids": ["warm-up"]}}
        api.post("/v1/pushes", json=push).raise_for_status()


def _register_every_user(url: str, key: str, recipients: int) -> None:
    """One device for each user the pushes go to, so every push reaches a device."""

    async def register() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as api:
            users = iter(range(recipients))

            async def client() -> None:
                for n in users:
                    device = {"token": secrets.token_hex(32), "platform": "ios",
                              "user_id": f"user-{n}"}  # fmt: skip
                    (await api.post("/v1/devices", json=device)).raise_for_status()

            await asyncio.gather(*(client() for _ in range(20)))

    asyncio.run(register())


def _figures(row: dict[str, str]) -> dict[str, Any]:
    def milliseconds(cell: str) -> float | None:  # "N/A" when the endpoint got no request
        return None if cell == "N/A" else float(cell)

    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "requests_per_second": round(float(row["Requests/s"]), 1),
        "latency_p50_ms": milliseconds(row["50%"]),
        "latency_p95_ms": milliseconds(row["95%"]),
        "latency_p99_ms": milliseconds(row["99%"]),
    }


def main(
    users: int, seconds: int, pushes_only: bool = False, recipients: int = 1000
) -> dict[str, Any]:
    with bench_redis() as redis_url:
        return _run(users, seconds, redis_url, pushes_only, recipients)


def _run(
    users: int, seconds: int, redis_url: str, pushes_only: bool, recipients: int
) -> dict[str, Any]:
    database_url = asyncio.run(create_scratch_database())
    try:
        settings = _settings(database_url, redis_url)
        env = settings_environment(settings)
        key = _test_secret_key(env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
            server = stack.enter_context(running_command(
                "serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                ready_url=f"{url}/healthz",
            ))  # fmt: skip
            worker = stack.enter_context(worker_process(settings))
            _warm_up(url, key)
            if pushes_only:
                _register_every_user(url, key, recipients)
            before = {"api": cpu_seconds(server.pid), "worker": cpu_seconds(worker.pid)}
            tags = ["pushes"] if pushes_only else []
            rows, generator_cpu = _locust(
                url, key, users, seconds, Path(directory), tags, recipients
            )
            cpu = {
                "api": round(cpu_seconds(server.pid) - before["api"], 2),
                "worker": round(cpu_seconds(worker.pid) - before["worker"], 2),
                "load_generator": round(generator_cpu, 2),
            }
            memory = {"api": peak_rss_mb(server.pid), "worker": peak_rss_mb(worker.pid)}
    finally:
        asyncio.run(drop_scratch_database(database_url))
    endpoints = {row["Name"]: _figures(row) for row in rows if row["Name"] != "Aggregated"}
    total = next(row for row in rows if row["Name"] == "Aggregated")
    requests = max(1, int(total["Request Count"]))
    # CPU per request, so a run on a busy machine can still be read: what each process spent,
    # whatever the neighbours took.
    per_request = {
        name: round(seconds_used * 1000 / requests, 2) for name, seconds_used in cpu.items()
    }
    return {
        **run_identity("http_api"),
        "setup": "one `brik-cloud serve` process, one worker, PostgreSQL, Redis and locust "
        "on the same machine; test-mode key (sandbox provider)",
        "users": users,
        "seconds": seconds,
        "total": _figures(total),
        "endpoints": endpoints,
        "mix": "POST /v1/pushes only (one user, one device)" if pushes_only else "the locustfile's",
        "cpu_seconds": cpu,
        "cpu_ms_per_request": per_request,
        "peak_rss_mb": {name: round(value, 1) for name, value in memory.items()},
        "command": f"{COMMAND} --users {users} --seconds {seconds}"
        + (f" --pushes-only --recipients {recipients}" if pushes_only else ""),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50, help="concurrent locust users")
    parser.add_argument("--seconds", type=int, default=30, help="how long to run")
    parser.add_argument(
        "--pushes-only", action="store_true",
        help="only POST /v1/pushes to one user (each with one device), not the mix",
    )  # fmt: skip
    parser.add_argument(
        "--recipients", type=int, default=1000,
        help="the user ids the pushes go to (each registered with one device first)",
    )  # fmt: skip
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where to write the JSON figures"
    )
    arguments = parser.parse_args()
    figures = main(arguments.users, arguments.seconds, arguments.pushes_only, arguments.recipients)
    stem = "http-api-pushes" if arguments.pushes_only else "http-api"
    write_results(stem, figures, arguments.results_dir)
