"""Pipeline benchmark: how close does Brik get to what the provider's client alone can push?

(a) raw: the provider's client (``--provider apns``: aioapns over HTTP/2; ``fcm``: the FCM
    provider's aiohttp client, and pyfcm's own async path beside it) with the same in-flight
    limit, sending straight to the local fake — the ceiling on this machine;
(b) end to end: ``POST /v1/pushes`` to N devices → PostgreSQL → Redis → a ``brik-cloud worker``
    process → the same fake, timed from the 202 to the fake receiving the last delivery, with
    per-delivery latency (accept → received) p50/p99 and the worker's peak memory.

``--answer-delay 0.05`` makes the fake answer each request 50 ms late, as Apple and Google do
from a data centre: then the figure is how many sends one worker keeps in flight, not how fast
the CPU turns them over.

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
    .venv/bin/python -m loadtests.pipeline --provider fcm --answer-delay 0.05 --devices 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import httpx
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from redis.asyncio import Redis

from controlplane import db
from controlplane.app import create_app
from controlplane.auth.keys import hash_key
from controlplane.crypto import KeyRing
from controlplane.models import Device, KeyMode, Platform, Project
from controlplane.payloads import PushContent
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
from tests.support.apple import SigningKey, fake_host_tls, new_signing_key
from tests.support.google import new_service_account
from tests.support.servers import serving
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM
from workers.providers.apns import ApnsProvider
from workers.providers.base import Provider, Recipient
from workers.providers.fcm import FCM, FcmProvider, FcmPush
from workers.providers.fcm_connection import FcmSender

SECRET = "benchmark-secret-key-" + "x" * 32
TOPIC = "com.example.bench"
COMMAND = ".venv/bin/python -m loadtests.pipeline"
PUSH = {"kind": "alert", "alert": {"title": "Bench"}}
DEVICES_PER_INSERT = 5000


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the fake, in a process of its own ----------------------------------------------------------


def _fake_process_main(
    conn: Connection, provider: str, credential: dict[str, Any], directory: str, delay: float
) -> None:
    asyncio.run(_serve_fake(conn, provider, credential, Path(directory), delay))


async def _start_fake(
    provider: str, credential: dict[str, Any], directory: Path, delay: float
) -> tuple[FakeAPNs | FakeFCM, dict[str, Any]]:
    """The fake and where to reach it (the settings that point a worker at it)."""
    if provider == "apns":
        tls = fake_host_tls(directory)
        apns = FakeAPNs(tls=tls.server, default_delay=delay)
        public_key = load_pem_private_key(credential["key"].encode(), None).public_key()
        apns.add_key(credential["key_id"], credential["team_id"], public_key)
        await apns.start()
        return apns, {"apns_host": "127.0.0.1", "apns_port": apns.port,
                      "apns_ca_file": str(tls.ca_file)}  # fmt: skip
    fcm = FakeFCM(default_delay=delay)
    info = credential["service_account"]
    public_key = load_pem_private_key(info["private_key"].encode(), None).public_key()
    fcm.add_account(info["client_email"], info["project_id"], info["private_key_id"], public_key)
    await fcm.start()
    return fcm, {"fcm_base_url": fcm.base_url, "fcm_token_url": fcm.token_url}


async def _serve_fake(
    conn: Connection, provider: str, credential: dict[str, Any], directory: Path, delay: float
) -> None:
    fake, endpoints = await _start_fake(provider, credential, directory, delay)
    conn.send(endpoints)
    received: list[Any] = fake.received
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "accepted":
            conn.send(sum(1 for push in received if push.accepted))
        elif command == "received_at":
            conn.send([push.received_at for push in received if push.accepted])
        elif command == "received_by_token":  # the first moment each token got a push
            first: dict[str, float] = {}
            for push in received:
                if push.accepted:
                    first.setdefault(push.token, push.received_at)
            conn.send(first)
        elif command == "clear":
            received.clear()
            conn.send(None)
        else:
            await fake.stop()
            conn.send(None)
            return


class FakeProcess:
    """A local provider fake (APNs or FCM) in a child process, asked over a pipe what it has
    received. ``endpoints``: the settings that point Brik at it."""

    def __init__(
        self, provider: str, credential: dict[str, Any], directory: Path, delay: float = 0.0
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_fake_process_main,
            args=(child, provider, credential, str(directory), delay),
            daemon=True,
        )
        self._process.start()
        self.pid: int = self._process.pid  # type: ignore[assignment]
        self.endpoints: dict[str, Any] = self._conn.recv()

    def ask(self, command: str) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def stop(self) -> None:
        self.ask("stop")
        self._process.join(timeout=10)


class FakeApnsProcess(FakeProcess):
    """The local APNs fake in a child process (what ``loadtests/one_to_one.py`` sends to)."""

    def __init__(self, key: SigningKey, directory: Path, delay: float = 0.0) -> None:
        super().__init__("apns", apns_credential(key), directory, delay)
        self.port: int = self.endpoints["apns_port"]
        self.ca_file = Path(self.endpoints["apns_ca_file"])


def apns_credential(key: SigningKey) -> dict[str, Any]:
    """The body of ``PUT /v1/credentials/apns`` for ``key``."""
    return {"key": key.pem, "key_id": key.key_id, "team_id": key.team_id, "topic": TOPIC,
            "environment": "sandbox"}  # fmt: skip


# -- (a) raw: the provider's client alone ---------------------------------------------------------


def _raw_provider(provider: str, settings: Settings, credential: dict[str, Any]) -> Provider:
    if provider == "apns":
        return ApnsProvider(
            key=credential["key"], key_id=credential["key_id"], team_id=credential["team_id"],
            topic=TOPIC, sandbox=True, settings=settings,
            max_in_flight=settings.delivery_in_flight_per_connection,
        )  # fmt: skip
    return FcmProvider(
        service_account=credential["service_account"], settings=settings,
        max_in_flight=settings.delivery_in_flight_per_connection,
    )  # fmt: skip


def _token(provider: str, n: int) -> str:
    return f"{n:064x}" if provider == "apns" else f"fcm-{n:060x}"


async def raw_sends_per_second(
    settings: Settings, fake: FakeProcess, provider: str, credential: dict[str, Any], count: int
) -> tuple[float, dict[str, float]]:
    client = _raw_provider(provider, settings, credential)
    platform = "ios" if provider == "apns" else "android"
    # The very requests the worker builds for PUSH: same headers, same payload.
    content = PushContent.model_validate(PUSH)
    collapse_id = f"psh_{secrets.token_hex(12)}"
    pushes = [
        client.request(content, Recipient(token=_token(provider, n), platform=platform,
                                          message_id=str(uuid.uuid4()), collapse_id=collapse_id))
        for n in range(count)
    ]  # fmt: skip
    await client.send(pushes[:100])  # warm the connection (and FCM's access token)
    before = cpu_snapshot(client=os.getpid(), fake=fake.pid)
    started = time.perf_counter()
    await client.send(pushes)
    elapsed = time.perf_counter() - started
    after = cpu_snapshot(client=os.getpid(), fake=fake.pid)
    await client.close()
    return count / elapsed, cpu_per_thousand(before, after, count)


async def pyfcm_async_sends_per_second(
    settings: Settings, fake: FakeProcess, credential: dict[str, Any], count: int
) -> float:
    """pyfcm's own async path (``pyfcm.async_fcm``, aiohttp: a new session and connection per
    message), ``in_flight`` at a time, with the access token our sender got: the other way
    the issue asked to measure."""
    from pyfcm.async_fcm import fetch_tasks  # aiohttp: installed with the loadtest extra

    sender = FcmSender(credential["service_account"], settings)
    await sender.send({"token": "warm", "data": {}})
    headers = {"Content-Type": "application/json",
               "Authorization": await sender._authorization(None)}  # fmt: skip
    await sender.close()
    endpoint = f"{settings.fcm_base_url}/v1/projects/{credential['service_account']['project_id']}"
    endpoint += "/messages:send"
    content = PushContent.model_validate(PUSH)
    messages = [
        json.dumps({"message": cast(FcmPush, FCM.request(content, Recipient(
            token=_token("fcm", n), platform="android", message_id=str(n)), {})).message})
        for n in range(count)
    ]  # fmt: skip
    window = settings.delivery_in_flight_per_connection
    started = time.perf_counter()
    for first in range(0, count, window):
        await fetch_tasks(endpoint, headers, messages[first : first + window], 30)
    return count / (time.perf_counter() - started)


# -- (b) end to end ----------------------------------------------------------------------------


async def create_devices(
    project: Project, settings: Settings, count: int, provider: str = "apns"
) -> None:
    keyring = KeyRing([k.get_secret_value() for k in settings.encryption_keys])
    platform = Platform.IOS if provider == "apns" else Platform.ANDROID
    for start in range(0, count, DEVICES_PER_INSERT):
        tokens = [_token(provider, n) for n in range(start, min(count, start + DEVICES_PER_INSERT))]
        await Device.bulk_create([
            Device(project=project, mode=KeyMode.LIVE, platform=platform,
                   token_hash=hash_key(token, SECRET),
                   token_encrypted=keyring.encrypt(token.encode()), token_last_four=token[-4:],
                   user_id="everyone")
            for token in tokens
        ])  # fmt: skip


@asynccontextmanager
async def in_process_api(settings: Settings) -> Any:
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as api:
        yield api


async def end_to_end(
    settings: Settings, fake: FakeProcess, provider: str, credential: dict[str, Any], count: int
) -> dict[str, Any]:
    project, live = await bench_project(settings, SECRET)
    await create_devices(project, settings, count, provider)
    auth = {"Authorization": f"Bearer {live}"}
    fake.ask("clear")
    async with in_process_api(settings) as api:
        uploaded = await api.put(f"/v1/credentials/{provider}", json=credential, headers=auth)
        assert uploaded.status_code == 200, uploaded.text
        with worker_process(settings) as worker:
            worker_pid = worker.pid
            ready = await api.post("/healthz/pipeline", params={"timeout": 30}, timeout=40)
            assert ready.status_code == 200, ready.text
            before = cpu_snapshot(worker=worker_pid, fake=fake.pid, api=os.getpid())
            started_wall = time.time()
            accepted = await api.post("/v1/pushes", json={**PUSH, "to": {"user_ids": ["everyone"]}},
                                      headers=auth, timeout=300)  # fmt: skip
            accepted_at = time.time()
            assert accepted.status_code == 202, accepted.text
            while fake.ask("accepted") < count:  # noqa: ASYNC110 — the fake is in another process
                await asyncio.sleep(0.2)
            after = cpu_snapshot(worker=worker_pid, fake=fake.pid, api=os.getpid())
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


def _credential(provider: str) -> dict[str, Any]:
    if provider == "apns":
        return apns_credential(new_signing_key())
    # The token URL is replaced by BRIK_FCM_TOKEN_URL (the fake's) wherever it is used.
    info, _ = new_service_account("https://oauth2.googleapis.com/token")
    return {"service_account": info}


async def main(
    count: int, in_flight: int, repeat: int, provider: str = "apns", delay: float = 0.0
) -> dict[str, Any]:
    database_url = await create_scratch_database()
    with tempfile.TemporaryDirectory() as directory, bench_redis() as redis_url:
        credential = _credential(provider)
        fake = FakeProcess(provider, credential, Path(directory), delay)
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            secret_key=SECRET, encryption_keys=[Fernet.generate_key().decode()],
            queue_name=f"brik-bench:{secrets.token_hex(3)}", log_level="WARNING",
            delivery_in_flight_per_connection=in_flight, fcm_in_flight=in_flight,
            egress_rate_per_second=0,  # a per-tenant policy, not a cost: off for the benchmark
            **fake.endpoints,
        )  # fmt: skip
        await Redis.from_url(settings.redis_url).flushdb()
        pyfcm_rates: list[float] = []
        try:
            await db.migrate(database_url)
            async with db.database(database_url):
                raws, runs = [], []
                for _ in range(repeat):  # interleaved, so both see the same machine weather
                    raws.append(
                        await raw_sends_per_second(settings, fake, provider, credential, count)
                    )
                    if provider == "fcm":
                        fake.ask("clear")
                        pyfcm_rates.append(
                            await pyfcm_async_sends_per_second(settings, fake, credential, count)
                        )
                    runs.append(await end_to_end(settings, fake, provider, credential, count))
        finally:
            fake.stop()
            await drop_scratch_database(database_url)
    e2e = max(runs, key=lambda run: run["deliveries_per_second"])
    raw, raw_cpu = max(raws)
    client = "aioapns" if provider == "apns" else "aiohttp"
    figures: dict[str, Any] = {
        **run_identity("pipeline"),
        "provider": provider,
        "answer_delay_seconds": delay,
        "devices": count,
        "in_flight_per_worker": in_flight,
        "runs": repeat,
        f"raw_{client}_sends_per_second": round(raw, 1),
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
        # Where the CPU went in the best runs: on a machine with few cores the fake and
        # PostgreSQL compete with the worker, while the raw client has a core to itself.
        "cpu_seconds_per_1000": {"raw": raw_cpu, "end_to_end": e2e["cpu_seconds_per_1000"]},
        "every_run": {
            "raw_sends_per_second": [round(rate, 1) for rate, _ in raws],
            "end_to_end_deliveries_per_second": [
                round(run["deliveries_per_second"], 1) for run in runs
            ],
        },
        "command": f"{COMMAND} --provider {provider} --answer-delay {delay} --devices {count} "
        f"--in-flight {in_flight} --repeat {repeat}",
    }
    if pyfcm_rates:
        figures["pyfcm_async_sends_per_second"] = round(max(pyfcm_rates), 1)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--provider", choices=("apns", "fcm"), default="apns")
    parser.add_argument(
        "--answer-delay", type=float, default=0.0,
        help="seconds the fake waits before each answer (a real network: 0.02 to 0.1)",
    )  # fmt: skip
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
    figures = asyncio.run(main(arguments.devices, arguments.in_flight, arguments.repeat,
                               arguments.provider, arguments.answer_delay))  # fmt: skip
    stem = f"pipeline-{arguments.provider}-{figures['devices']}"
    if arguments.answer_delay:
        stem += f"-delay{int(arguments.answer_delay * 1000)}ms"
    write_results(stem, figures, arguments.results_dir)
