"""Analytics ingestion benchmark: how close does ``POST /v1/events`` get to a bare Redis XADD?

(a) raw: redis-py appending the very same batches straight to a Redis stream (``XADD``, one
    per batch), from the same client process with the same concurrency — the ceiling of the
    buffer on this machine;
(b) Brik: a real ``brik-cloud serve`` process taking those batches over HTTP with a test-mode
    publishable key — authentication, rate limit, each event checked, one script call into
    the buffer — with a ``brik-cloud worker`` loading them into PostgreSQL at the same time,
    as in production.

Each is run ``--repeat`` times, interleaved, and the best of each is reported (as ``timeit``
does: on a shared machine, slower runs measure the neighbours); every run is kept in the
results. Both are run closed-loop (``--concurrency`` requests in flight, as fast as they go) for
``--seconds``, and b/a is printed. Then (c) Brik at a fixed ``--rate`` of events per second
(open loop: a batch every batch_size/rate seconds, whatever the answers do), which is the
budget's figure: the rate reached and each request's latency, p50/p99. Last, how long the worker
took to load everything into PostgreSQL, and a check that every accepted event is there exactly
once. Prints the figures and writes them as JSON to ``loadtests/results/``.

Needs the local PostgreSQL (``BRIK_BENCH_DATABASE_URL``, a server URL: a scratch database is
created and dropped) and a ``redis-server`` binary (a private one is started unless
``BRIK_BENCH_REDIS_URL`` names one). The organization is on the Enterprise plan (5,000
requests/s), so no plan limit is what is measured. A benchmark, not a test: it asserts nothing
about speed (``tests/loadtests/`` runs it at a tiny size so that it keeps working).

    .venv/bin/python -m loadtests.analytics_ingest --seconds 10 --rate 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from controlplane.settings import Settings
from loadtests.common import (
    BENCH_PLAN,
    RESULTS,
    bench_redis,
    cpu_per_thousand,
    cpu_snapshot,
    create_scratch_database,
    drop_scratch_database,
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

COMMAND = ".venv/bin/python -m loadtests.analytics_ingest"
RAW_STREAM = "brik-bench:raw-xadd"
WIDGETS = ("Score", "Weather", "OrderStatus")
PLATFORMS = (("ios", "17.4", "iPhone15,2"), ("android", "14", "Pixel 8"))
NAMES = ("widget.impression", "widget.impression", "widget.impression", "widget.click")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Batches:
    """Request bodies of ``size`` events each, every event with an id of its own."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.made = 0
        self._run = secrets.token_hex(4)

    def next(self) -> bytes:
        number, self.made = self.made, self.made + 1
        now = datetime.now(UTC).isoformat()
        events = []
        for n in range(self.size):
            name = NAMES[n % len(NAMES)]
            os_name, os_version, model = PLATFORMS[n % len(PLATFORMS)]
            event: dict[str, Any] = {
                "id": f"{self._run}-{number}-{n}", "name": name, "timestamp": now,
                "widget": WIDGETS[n % len(WIDGETS)], "platform": os_name,
                "os_version": os_version, "device_model": model, "country": "DE",
                "app_version": "2.4.1", "user_id": f"u{n % 97}",
            }  # fmt: skip
            if name == "widget.click":
                event["action"] = "open"
            events.append(event)
        return json.dumps({"events": events}, separators=(",", ":")).encode()


async def closed_loop(
    send: Callable[[bytes], Awaitable[None]], batches: Batches, concurrency: int, seconds: float
) -> dict[str, Any]:
    """``concurrency`` senders, each sending the next batch as soon as its last is answered."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def sender() -> None:
        while time.perf_counter() < deadline:
            body = batches.next()
            started = time.perf_counter()
            await send(body)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return _figures(latencies, batches.size, elapsed)


async def open_loop(
    send: Callable[[bytes], Awaitable[None]], batches: Batches, rate: float, seconds: float
) -> dict[str, Any]:
    """A batch every ``batches.size / rate`` seconds for ``seconds``, whatever the answers
    do; latency is measured from each batch's due time (so a stall is not hidden)."""
    interval = batches.size / rate
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(due: float) -> None:
        await send(batches.next())
        latencies.append(time.perf_counter() - due)

    started = time.perf_counter()
    count = int(seconds / interval)
    for number in range(count):
        due = started + number * interval
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return _figures(latencies, batches.size, elapsed)


def _figures(latencies: list[float], size: int, elapsed: float) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "events": len(latencies) * size,
        "events_per_second": round(len(latencies) * size / elapsed, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "latency_p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "latency_max_ms": round(max(latencies) * 1000, 2),
    }


def _settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secrets.token_urlsafe(48),
        encryption_keys=[Fernet.generate_key().decode()],
        queue_name=f"brik-bench:{secrets.token_hex(3)}",
        log_level="WARNING",
        analytics_load_every_seconds=1,
    )


def _keys(env: dict[str, str]) -> dict[str, str]:
    """Migrate and bootstrap the scratch database; its organization on the benchmark plan."""
    printed = subprocess.run(
        [*brik_cloud_command(), "bootstrap", "--json"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    created = json.loads(printed.stdout)
    subprocess.run(
        [*brik_cloud_command(), "set-plan", created["org_id"], BENCH_PLAN.value],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    keys: dict[str, str] = created["keys"]
    return keys


async def _raw(redis_url: str, batch_size: int, concurrency: int, seconds: float) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    now = datetime.now(UTC).isoformat()

    async def send(body: bytes) -> None:
        await redis.xadd(RAW_STREAM, {"p": "prj_bench", "m": "test", "r": now, "e": body})

    try:
        await send(Batches(batch_size).next())  # connect first
        return await closed_loop(send, Batches(batch_size), concurrency, seconds)
    finally:
        await redis.delete(RAW_STREAM)
        await redis.aclose()


async def _brik(
    url: str, key: str, batch_size: int, concurrency: int, seconds: float, rate: float,
    pids: dict[str, int],
) -> tuple[dict[str, Any], dict[str, Any], int]:  # fmt: skip
    limits = httpx.Limits(max_connections=max(concurrency, 64))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    accepted = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=30) as api:  # fmt: skip

        async def send(body: bytes) -> None:
            nonlocal accepted
            response = await api.post("/v1/events", content=body)
            if response.status_code != 200 or response.json()["rejected"]:
                raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
            accepted += batch_size

        await send(Batches(batch_size).next())  # warm the connection and the key cache
        before = cpu_snapshot(**pids)
        saturated = await closed_loop(send, Batches(batch_size), concurrency, seconds)
        after = cpu_snapshot(**pids)
        saturated["cpu_seconds_per_1000_events"] = cpu_per_thousand(
            before, after, int(saturated["events"])
        )
        await asyncio.sleep(min(1.0, seconds))  # the loader catches up between the phases
        before = cpu_snapshot(**pids)
        steady = await open_loop(send, Batches(batch_size), rate, seconds)
        after = cpu_snapshot(**pids)
        steady["cpu_seconds_per_1000_events"] = cpu_per_thousand(
            before, after, int(steady["events"])
        )
    return saturated, steady, accepted


async def _drained(database_url: str, expected: int, patience: float = 300) -> tuple[float, int]:
    """Seconds until the worker has loaded ``expected`` events, and how many rows there are."""
    connection = await asyncpg.connect("postgresql://" + database_url.split("://", 1)[1])
    started = time.perf_counter()
    try:
        while True:
            rows = await connection.fetchval("SELECT count(*) FROM analytics_events")
            if rows >= expected or time.perf_counter() - started > patience:
                return time.perf_counter() - started, int(rows)
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


def main(
    batch_size: int, concurrency: int, seconds: float, rate: float, repeat: int
) -> dict[str, Any]:
    with bench_redis() as redis_url:
        return _run(batch_size, concurrency, seconds, rate, repeat, redis_url)


def _run(
    batch_size: int, concurrency: int, seconds: float, rate: float, repeat: int, redis_url: str
) -> dict[str, Any]:
    database_url = asyncio.run(create_scratch_database())
    raws: list[dict[str, Any]] = []
    saturated_runs: list[dict[str, Any]] = []
    steady_runs: list[dict[str, Any]] = []
    accepted = 0
    try:
        settings = _settings(database_url, redis_url)
        env = settings_environment(settings)
        keys = _keys(env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with ExitStack() as stack:
            server = stack.enter_context(running_command(
                "serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                ready_url=f"{url}/healthz",
            ))  # fmt: skip
            worker = stack.enter_context(worker_process(settings))
            pids = {"api": server.pid, "worker": worker.pid, "client": os.getpid()}
            for _ in range(repeat):  # interleaved, so both see the same machine weather
                raws.append(asyncio.run(_raw(redis_url, batch_size, concurrency, seconds)))
                saturated, steady, sent = asyncio.run(_brik(
                    url, keys["test_publishable"], batch_size, concurrency, seconds, rate, pids
                ))  # fmt: skip
                saturated_runs.append(saturated)
                steady_runs.append(steady)
                accepted += sent
            drain_seconds, rows = asyncio.run(_drained(database_url, accepted))
    finally:
        asyncio.run(drop_scratch_database(database_url))
    raw = max(raws, key=lambda run: run["events_per_second"])
    best = max(saturated_runs, key=lambda run: run["events_per_second"])
    steady = min(steady_runs, key=lambda run: run["latency_p99_ms"])
    return {
        **run_identity("analytics_ingest"),
        "setup": "one `brik-cloud serve` process and one worker (loading as it goes), "
        "PostgreSQL, Redis and this client on the same machine; test-mode publishable key",
        "batch_size": batch_size,
        "concurrency": concurrency,
        "seconds": seconds,
        "runs": repeat,
        "raw_xadd": raw,
        "brik_saturated": best,
        "ratio_brik_over_raw": round(best["events_per_second"] / raw["events_per_second"], 3),
        "brik_at_rate": {"target_events_per_second": rate, **steady},
        "worker_load": {
            "events": accepted,
            "rows_loaded": rows,
            "every_event_once": rows == accepted,
            "seconds_after_last_request": round(drain_seconds, 2),
        },
        "every_run": {
            "raw_events_per_second": [run["events_per_second"] for run in raws],
            "brik_saturated_events_per_second": [
                run["events_per_second"] for run in saturated_runs
            ],
            "brik_at_rate_p99_ms": [run["latency_p99_ms"] for run in steady_runs],
        },
        "command": f"{COMMAND} --batch-size {batch_size} --concurrency {concurrency} "
        f"--seconds {seconds:g} --rate {rate:g} --repeat {repeat}",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=100, help="events per request")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (a, b)")
    parser.add_argument("--seconds", type=float, default=10, help="how long each phase runs")
    parser.add_argument("--rate", type=float, default=5000, help="events/s for (c)")
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="runs of each; the best of each is reported (this machine's neighbours are noisy)",
    )  # fmt: skip
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where to write the JSON figures"
    )
    arguments = parser.parse_args()
    figures = main(arguments.batch_size, arguments.concurrency, arguments.seconds,
                   arguments.rate, arguments.repeat)  # fmt: skip
    print(f"b/a (Brik over raw XADD, events/s): {figures['ratio_brik_over_raw']}")
    write_results("analytics-ingest", figures, arguments.results_dir)
