"""Flat cost: does the same traffic cost more when it comes from many tenants?

The same total is sent twice through the real pipeline (API → PostgreSQL → Redis → one
``brik-cloud worker`` process → the fake APNs in a process of its own), ``--clients`` requests
at a time:

(a) one tenant: ``--pushes`` pushes, each to the same ``--devices`` devices of that tenant;
(b) ``--pushes`` tenants (organizations with a project, a live key and an APNs credential of
    their own): one push each, to their own ``--devices`` devices.

Same requests, same deliveries; only the number of tenants differs, so b/a is what a tenant
costs — each credential is a provider of its own in the worker (its HTTP/2 connection, its
signed token), each project its own rows. Every tenant first sends one push that is not timed,
so each credential's connection is open (tenants send all day in production): the timed run is
the steady state. The worker's peak memory is reported for both. Prints
the figures and writes them as JSON to ``loadtests/results/``. A benchmark, not a test: it
asserts nothing about speed (``tests/loadtests/`` runs it at a tiny size so that it keeps
working).

    .venv/bin/python -m loadtests.flat_cost --pushes 1000 --devices 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from controlplane import db
from controlplane.settings import Settings
from loadtests.common import (
    RESULTS,
    bench_project,
    bench_redis,
    cpu_per_thousand,
    cpu_snapshot,
    create_scratch_database,
    drop_scratch_database,
    peak_rss_mb,
    run_identity,
    worker_process,
    write_results,
)
from loadtests.pipeline import (
    PUSH,
    SECRET,
    FakeApnsProcess,
    apns_credential,
    create_devices,
    in_process_api,
)
from tests.support.apple import SigningKey, new_signing_key

COMMAND = ".venv/bin/python -m loadtests.flat_cost"


async def _tenant(settings: Settings, api: httpx.AsyncClient, key: SigningKey,
                  devices: int) -> dict[str, str]:  # fmt: skip
    """An organization on the benchmark plan with a project, its live secret key, its own APNs
    credential (uploaded through the API, as a tenant does) and ``devices`` devices; the
    request headers of its key."""
    project, live = await bench_project(settings, SECRET, f"Bench {secrets.token_hex(3)}")
    auth = {"Authorization": f"Bearer {live}"}
    uploaded = await api.put("/v1/credentials/apns", json=apns_credential(key), headers=auth)
    assert uploaded.status_code == 200, uploaded.text
    await create_devices(project, settings, devices)
    return auth


async def _send_all(api: httpx.AsyncClient, senders: list[dict[str, str]], clients: int) -> None:
    """One push per entry of ``senders`` (its key's headers), ``clients`` at a time."""
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for auth in senders:
        queue.put_nowait(auth)

    async def client() -> None:
        while not queue.empty():
            auth = queue.get_nowait()
            body = {**PUSH, "to": {"user_ids": ["everyone"]}}
            accepted = await api.post("/v1/pushes", json=body, headers=auth, timeout=120)
            assert accepted.status_code == 202, accepted.text

    await asyncio.gather(*(client() for _ in range(clients)))


async def _run(
    settings: Settings, fake: FakeApnsProcess, key: SigningKey, tenants: int, pushes: int,
    devices: int, clients: int,
) -> dict[str, Any]:  # fmt: skip
    """``pushes`` pushes to ``devices`` devices each, from ``tenants`` tenants in turn."""
    async with in_process_api(settings) as api:
        auths = [await _tenant(settings, api, key, devices) for _ in range(tenants)]
        senders = [auths[n % tenants] for n in range(pushes)]
        expected = pushes * devices
        fake.ask("clear")
        with worker_process(settings) as worker:
            ready = await api.post("/healthz/pipeline", params={"timeout": 30}, timeout=40)
            assert ready.status_code == 200, ready.text
            # Warm: one push per tenant first, so each credential's connection is open, as in
            # production where tenants send all day; the timed run is the steady state.
            await _send_all(api, auths, clients)
            while fake.ask("accepted") < tenants * devices:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            fake.ask("clear")
            before = cpu_snapshot(worker=worker.pid, fake_apns=fake.pid, api=os.getpid())
            started = time.time()
            await _send_all(api, senders, clients)
            accepted = time.time()
            while fake.ask("accepted") < expected:  # noqa: ASYNC110 — the fake is in another process
                await asyncio.sleep(0.2)
            after = cpu_snapshot(worker=worker.pid, fake_apns=fake.pid, api=os.getpid())
            rss = peak_rss_mb(worker.pid)
    received = fake.ask("received_at")
    return {
        "tenants": tenants,
        "deliveries": expected,
        "deliveries_per_second": round(expected / (max(received) - started), 1),
        "accept_seconds": round(accepted - started, 2),
        "worker_peak_rss_mb": round(rss, 1),
        "cpu_seconds_per_1000": cpu_per_thousand(before, after, expected),
    }


async def main(pushes: int, devices: int, clients: int) -> dict[str, Any]:
    database_url = await create_scratch_database()
    key = new_signing_key()
    with tempfile.TemporaryDirectory() as directory, bench_redis() as redis_url:
        fake = FakeApnsProcess(key, Path(directory))
        settings = Settings(
            database_url=database_url, redis_url=redis_url, secret_key=SECRET,
            encryption_keys=[Fernet.generate_key().decode()],
            queue_name=f"brik-bench:{secrets.token_hex(3)}", log_level="WARNING",
            egress_rate_per_second=0,  # a per-tenant policy, not a cost: off for the benchmark
            **fake.endpoints,
        )  # fmt: skip
        await Redis.from_url(settings.redis_url).flushdb()
        try:
            await db.migrate(database_url)
            async with db.database(database_url):
                one = await _run(settings, fake, key, 1, pushes, devices, clients)
                many = await _run(settings, fake, key, pushes, pushes, devices, clients)
        finally:
            fake.stop()
            await drop_scratch_database(database_url)
    return {
        **run_identity("flat_cost"),
        "setup": "the API in this process, one `brik-cloud worker`, PostgreSQL, Redis and the "
        "fake APNs (its own process) on the same machine; every tenant has its own APNs "
        "credential",
        "pushes": pushes,
        "devices_per_push": devices,
        "clients": clients,
        "one_tenant": one,
        "one_tenant_per_push": many,
        "ratio_many_over_one": round(
            many["deliveries_per_second"] / one["deliveries_per_second"], 3
        ),
        "command": f"{COMMAND} --pushes {pushes} --devices {devices} --clients {clients}",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=1000, help="pushes, and tenants in (b)")
    parser.add_argument("--devices", type=int, default=20, help="devices each push goes to")
    parser.add_argument("--clients", type=int, default=20, help="requests at a time")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS,
        help="where to write the JSON figures",
    )  # fmt: skip
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments.pushes, arguments.devices, arguments.clients))
    write_results(f"flat-cost-{arguments.pushes}", figures, arguments.results_dir)
