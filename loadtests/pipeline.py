"""Pipeline benchmark: how close does Brik get to what aioapns alone can push to APNs?

(a) raw: the APNs provider (aioapns, HTTP/2, the same in-flight limit) sending straight to the
    local fake APNs — the ceiling on this machine;
(b) end to end: ``POST /v1/pushes`` to N devices → PostgreSQL → Redis → a ``brik-cloud worker``
    process → the same fake, timed from the 202 to the fake receiving the last delivery, with
    per-delivery latency (accept → received) p50/p99 and the worker's peak memory.

The fake runs in a process of its own in both runs, so (a) and (b) each get one process sending
and one answering: the ratio b/a is what the pipeline (database, queue, leases, records) costs.

Each is run ``--repeat`` times, interleaved, and the best of each is reported (as ``timeit``
does: on a shared machine, slower runs measure the neighbours); every run's figure is kept in
the results too. Prints the figures and b/a, and writes them as JSON to ``loadtests/results/``.
Needs the local PostgreSQL (``BRIK_BENCH_DATABASE_URL``, a server URL: a scratch database is
created and dropped) and a ``redis-server`` binary (a private one is started, unless
``BRIK_BENCH_REDIS_URL`` names a Redis to use). The organization is on the Enterprise plan, so
no quota stops the push. A benchmark, not a test: it asserts nothing about speed
(``tests/loadtests/`` runs it at a tiny size so that it keeps working).

    .venv/bin/python -m loadtests.pipeline --devices 20000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import secrets
import statistics
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from redis.asyncio import Redis

from controlplane import db
from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.keys import hash_key
from controlplane.crypto import KeyRing
from controlplane.models import Device, KeyKind, KeyMode, Organization, Platform, Project
from controlplane.payloads import PushContent
from controlplane.settings import Settings
from loadtests.common import (
    RESULTS,
    bench_redis,
    cpu_per_thousand,
    cpu_snapshot,
    create_scratch_database,
    drop_scratch_database,
    peak_rss_mb,
    put_on_benchmark_plan,
    worker_process,
    write_results,
)
from tests.support.apple import SigningKey, fake_host_tls, new_signing_key
from tests.support.servers import serving
from workers.fakes.apns import FakeAPNs
from workers.providers.apns import ApnsProvider
from workers.providers.base import Recipient

SECRET = "benchmark-secret-key-" + "x" * 32
TOPIC = "com.example.bench"
COMMAND = ".venv/bin/python -m loadtests.pipeline"
PUSH = {"kind": "alert", "alert": {"title": "Bench"}}
DEVICES_PER_INSERT = 5000


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the fake APNs, in a process of its own -----------------------------------------------------


def _fake_process_main(
    conn: Connection, key_pem: str, key_id: str, team_id: str, directory: str
) -> None:
    asyncio.run(_serve_fake(conn, key_pem, key_id, team_id, Path(directory)))


async def _serve_fake(
    conn: Connection, key_pem: str, key_id: str, team_id: str, directory: Path
) -> None:
    tls = fake_host_tls(directory)
    fake = FakeAPNs(tls=tls.server)
    fake.add_key(key_id, team_id, load_pem_private_key(key_pem.encode(), None).public_key())
    await fake.start()
    conn.send((fake.port, str(tls.ca_file)))
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "accepted":
            conn.send(sum(1 for push in fake.received if push.accepted))
        elif command == "received_at":
            conn.send([push.received_at for push in fake.received if push.accepted])
        elif command == "received_by_token":  # the first moment each token got a push
            first: dict[str, float] = {}
            for push in fake.received:
                if push.accepted:
                    first.setdefault(push.token, push.received_at)
            conn.send(first)
        elif command == "clear":
            fake.received.clear()
            conn.send(None)
        else:
            await fake.stop()
            conn.send(None)
            return


class FakeApnsProcess:
    """The local APNs fake in a child process, asked over a pipe what it has received."""

    def __init__(self, key: SigningKey, directory: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_fake_process_main,
            args=(child, key.pem, key.key_id, key.team_id, str(directory)),
            daemon=True,
        )
        self._process.start()
        self.pid: int = self._process.pid  # type: ignore[assignment]
        self.port, ca_file = self._conn.recv()
        self.ca_file = Path(ca_file)

    def ask(self, command: str) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def stop(self) -> None:
        self.ask("stop")
        self._process.join(timeout=10)


# -- (a) raw aioapns ---------------------------------------------------------------------------


async def raw_sends_per_second(
    settings: Settings, fake: FakeApnsProcess, key: SigningKey, count: int
) -> tuple[float, dict[str, float]]:
    provider = ApnsProvider(
        key=key.pem, key_id=key.key_id, team_id=key.team_id, topic=TOPIC, sandbox=True,
        settings=settings, max_in_flight=settings.delivery_in_flight_per_connection,
    )  # fmt: skip
    # The very requests the worker builds for PUSH: same headers, same payload.
    content = PushContent.model_validate(PUSH)
    collapse_id = f"psh_{secrets.token_hex(12)}"
    pushes = [
        provider.request(content, Recipient(token=f"{n:064x}", platform="ios",
                                            message_id=str(uuid.uuid4()), collapse_id=collapse_id))
        for n in range(count)
    ]  # fmt: skip
    await provider.send(pushes[:100])  # warm the connection
    before = cpu_snapshot(client=os.getpid(), fake_apns=fake.pid)
    started = time.perf_counter()
    await provider.send(pushes)
    elapsed = time.perf_counter() - started
    after = cpu_snapshot(client=os.getpid(), fake_apns=fake.pid)
    await provider.close()
    return count / elapsed, cpu_per_thousand(before, after, count)


# -- (b) end to end ----------------------------------------------------------------------------


async def _create_devices(project: Project, settings: Settings, count: int) -> None:
    keyring = KeyRing([k.get_secret_value() for k in settings.encryption_keys])
    for start in range(0, count, DEVICES_PER_INSERT):
        await Device.bulk_create([
            Device(project=project, mode=KeyMode.LIVE, platform=Platform.IOS,
                   token_hash=hash_key(f"{n:064x}", SECRET),
                   token_encrypted=keyring.encrypt(f"{n:064x}".encode()),
                   token_last_four=f"{n:064x}"[-4:], user_id="everyone")
            for n in range(start, min(count, start + DEVICES_PER_INSERT))
        ])  # fmt: skip


@asynccontextmanager
async def _api(settings: Settings) -> Any:
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as api:
        yield api


async def end_to_end(
    settings: Settings, fake: FakeApnsProcess, key: SigningKey, count: int
) -> dict[str, Any]:
    organization = await Organization.create(name="Bench")
    await put_on_benchmark_plan(organization, settings)
    project = await Project.create(organization=organization, name="Bench app")
    _, live = await issue_api_key(project, name="live", kind=KeyKind.SECRET, mode=KeyMode.LIVE,
                                  pepper=SECRET)  # fmt: skip
    await _create_devices(project, settings, count)
    auth = {"Authorization": f"Bearer {live}"}
    fake.ask("clear")
    async with _api(settings) as api:
        await api.put("/v1/credentials/apns", json={
            "key": key.pem, "key_id": key.key_id, "team_id": key.team_id, "topic": TOPIC,
            "environment": "sandbox"}, headers=auth)  # fmt: skip
        with worker_process(settings) as worker:
            worker_pid = worker.pid
            ready = await api.post("/healthz/pipeline", params={"timeout": 30}, timeout=40)
            assert ready.status_code == 200, ready.text
            before = cpu_snapshot(worker=worker_pid, fake_apns=fake.pid, api=os.getpid())
            started_wall = time.time()
            accepted = await api.post("/v1/pushes", json={**PUSH, "to": {"user_ids": ["everyone"]}},
                                      headers=auth, timeout=300)  # fmt: skip
            accepted_at = time.time()
            assert accepted.status_code == 202, accepted.text
            while fake.ask("accepted") < count:  # noqa: ASYNC110 — the fake is in another process
                await asyncio.sleep(0.2)
            after = cpu_snapshot(worker=worker_pid, fake_apns=fake.pid, api=os.getpid())
            worker_rss = peak_rss_mb(worker_pid)
    received = fake.ask("received_at")
    elapsed = max(received) - started_wall
    latencies = [moment - accepted_at for moment in received]
    return {
        "deliveries_per_second": count / elapsed,
        "accept_seconds": accepted_at - started_wall,
        "latency_p50_seconds": statistics.median(latencies),
        "latency_p99_seconds": _percentile(latencies, 0.99),
        "worker_peak_rss_mb": worker_rss,
        "cpu_seconds_per_1000": cpu_per_thousand(before, after, count),
    }


async def main(count: int, in_flight: int, repeat: int) -> dict[str, Any]:
    database_url = await create_scratch_database()
    key = new_signing_key()
    with tempfile.TemporaryDirectory() as directory, bench_redis() as redis_url:
        fake = FakeApnsProcess(key, Path(directory))
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            secret_key=SECRET, encryption_keys=[Fernet.generate_key().decode()],
            queue_name=f"brik-bench:{secrets.token_hex(3)}", apns_host="127.0.0.1",
            apns_port=fake.port, apns_ca_file=fake.ca_file, log_level="WARNING",
            delivery_in_flight_per_connection=in_flight,
            egress_rate_per_second=0,  # a per-tenant policy, not a cost: off for the benchmark
        )  # fmt: skip
        await Redis.from_url(settings.redis_url).flushdb()
        try:
            await db.migrate(database_url)
            async with db.database(database_url):
                raws, runs = [], []
                for _ in range(repeat):  # interleaved, so both see the same machine weather
                    raws.append(await raw_sends_per_second(settings, fake, key, count))
                    runs.append(await end_to_end(settings, fake, key, count))
        finally:
            fake.stop()
            await drop_scratch_database(database_url)
    e2e = max(runs, key=lambda run: run["deliveries_per_second"])
    raw, raw_cpu = max(raws)
    return {
        "benchmark": "pipeline",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "devices": count,
        "in_flight_per_worker": in_flight,
        "runs": repeat,
        "raw_aioapns_sends_per_second": round(raw, 1),
        "end_to_end_deliveries_per_second": round(e2e["deliveries_per_second"], 1),
        "ratio_end_to_end_over_raw": round(e2e["deliveries_per_second"] / raw, 3),
        "ratio_of_medians": round(
            statistics.median(run["deliveries_per_second"] for run in runs)
            / statistics.median(rate for rate, _ in raws),
            3,
        ),
        "accept_seconds": round(e2e["accept_seconds"], 3),
        "latency_p50_seconds": round(e2e["latency_p50_seconds"], 3),
        "latency_p99_seconds": round(e2e["latency_p99_seconds"], 3),
        "worker_peak_rss_mb": round(max(run["worker_peak_rss_mb"] for run in runs), 1),
        # Where the CPU went in the best runs: on a machine with few cores the fake APNs and
        # PostgreSQL compete with the worker, while the raw client has a core to itself.
        "cpu_seconds_per_1000": {"raw": raw_cpu, "end_to_end": e2e["cpu_seconds_per_1000"]},
        "every_run": {
            "raw_sends_per_second": [round(rate, 1) for rate, _ in raws],
            "end_to_end_deliveries_per_second": [
                round(run["deliveries_per_second"], 1) for run in runs
            ],
        },
        "command": f"{COMMAND} --devices {count} --in-flight {in_flight} --repeat {repeat}",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument(
        "--in-flight",
        type=int,
        default=Settings.model_fields["delivery_in_flight_per_connection"].default,
        help="sends outstanding at once, for both runs (BRIK_DELIVERY_IN_FLIGHT_PER_CONNECTION)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="runs of each; the best of each is reported (this machine's neighbours are noisy)",
    )  # fmt: skip
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where to write the JSON figures"
    )
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments.devices, arguments.in_flight, arguments.repeat))
    write_results(f"pipeline-{figures['devices']}", figures, arguments.results_dir)
