"""One-to-one benchmark: the everyday send — one request, one device — against aioapns alone.

Most pushes are not fan-outs: "your order shipped" is one ``POST /v1/pushes`` to one device.
This measures that path, with C concurrent clients each sending one push per request to a
device of its own, in two runs against the same local fake APNs (in a process of its own):

(a) raw: C coroutines each sending one notification at a time through the APNs provider
    (aioapns, HTTP/2) straight to the fake — the ceiling on this machine;
(b) end to end: C clients each ``POST /v1/pushes`` with ``to.device_ids`` of one device, to a
    real ``brik-cloud serve`` process, with a ``brik-cloud worker`` process delivering.

Each run is measured twice: closed-loop (every client sends its next push as soon as the
previous request is answered) for the most deliveries per second, then open-loop at half of
that rate (a push started every 1/rate s, whatever is still under way) for the latency from
the request's start to the fake receiving the notification — the figure a user feels, at a
load the system can carry. Prints each figure and b/a, and writes them as JSON to
``loadtests/results/``. A benchmark, not a test: it asserts nothing about speed
(``tests/loadtests/`` runs it at a tiny size so that it keeps working).

    .venv/bin/python -m loadtests.one_to_one --devices 3000 --clients 10 --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from pydantic import SecretStr

from controlplane import db
from controlplane.auth.keys import hash_key
from controlplane.models import Device
from controlplane.payloads import PushContent
from controlplane.settings import Settings
from loadtests.common import (
    RESULTS,
    bench_project,
    bench_redis,
    cpu_seconds,
    create_scratch_database,
    drop_scratch_database,
    run_identity,
    worker_process,
    write_results,
)
from loadtests.pipeline import PUSH, SECRET, TOPIC, FakeApnsProcess, create_devices
from tests.support.apple import SigningKey, new_signing_key
from tests.support.processes import free_port, running_command, settings_environment
from workers.providers.apns import ApnsProvider
from workers.providers.base import Recipient

COMMAND = ".venv/bin/python -m loadtests.one_to_one"
LATENCY_SECONDS = 5.0  # how long the open-loop run lasts


def token_of(n: int) -> str:
    return f"{n:064x}"


@dataclass
class Run:
    """One run's sends: when each token's send started, and the fake's first receipt of it."""

    started: dict[str, float]
    received: dict[str, float]

    def figures(self) -> dict[str, float]:
        latencies = [self.received[t] - s for t, s in self.started.items() if t in self.received]
        span = max(self.received.values()) - min(self.started.values())
        ordered = sorted(latencies)
        return {
            "deliveries": len(latencies),
            "deliveries_per_second": round(len(latencies) / span, 1),
            "latency_p50_ms": round(1000 * statistics.median(ordered), 1),
            "latency_p99_ms": round(
                1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1
            ),
        }


Send = Callable[[int], Awaitable[None]]  # sends the push for device number n


async def closed_loop(send: Send, numbers: list[int], clients: int) -> dict[str, float]:
    """``clients`` senders, each sending its next push once the previous one is answered."""
    queue = list(reversed(numbers))
    started: dict[str, float] = {}

    async def client() -> None:
        while queue:
            n = queue.pop()
            started[token_of(n)] = time.time()
            await send(n)

    await asyncio.gather(*(client() for _ in range(clients)))
    return started


async def open_loop(send: Send, numbers: list[int], rate: float) -> dict[str, float]:
    """A push started every ``1 / rate`` seconds, whatever is still under way."""
    started: dict[str, float] = {}
    tasks = []
    begin = time.monotonic()
    for index, n in enumerate(numbers):
        delay = begin + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        started[token_of(n)] = time.time()
        tasks.append(asyncio.ensure_future(send(n)))
    await asyncio.gather(*tasks)
    return started


async def _wait_received(fake: FakeApnsProcess, count: int) -> None:
    deadline = time.monotonic() + 300
    while fake.ask("accepted") < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fake received {fake.ask('accepted')} of {count}")
        await asyncio.sleep(0.05)


async def measure(
    send: Send, fake: FakeApnsProcess, numbers: list[int], clients: int
) -> dict[str, Any]:
    """Closed loop over the first part of ``numbers``, then open loop at half that rate."""
    half = len(numbers) // 2
    fake.ask("clear")
    started = await closed_loop(send, numbers[:half], clients)
    await _wait_received(fake, half)
    best = Run(started, fake.ask("received_by_token")).figures()
    rate = best["deliveries_per_second"] / 2
    paced = numbers[half : half + max(1, int(rate * LATENCY_SECONDS))]
    fake.ask("clear")
    started = await open_loop(send, paced, rate)
    await _wait_received(fake, len(paced))
    at_half = Run(started, fake.ask("received_by_token")).figures()
    return {
        "deliveries_per_second": best["deliveries_per_second"],
        "closed_loop_latency_p50_ms": best["latency_p50_ms"],
        "closed_loop_latency_p99_ms": best["latency_p99_ms"],
        "half_rate_per_second": round(rate, 1),
        "half_rate_latency_p50_ms": at_half["latency_p50_ms"],
        "half_rate_latency_p99_ms": at_half["latency_p99_ms"],
    }


async def raw(settings: Settings, fake: FakeApnsProcess, key: SigningKey, numbers: list[int],
              clients: int) -> dict[str, Any]:  # fmt: skip
    provider = ApnsProvider(
        key=key.pem, key_id=key.key_id, team_id=key.team_id, topic=TOPIC, sandbox=True,
        settings=settings, max_in_flight=settings.delivery_in_flight_per_connection,
    )  # fmt: skip
    content = PushContent.model_validate(PUSH)

    async def send(n: int) -> None:
        recipient = Recipient(token=token_of(n), platform="ios", message_id=str(uuid.uuid4()),
                              collapse_id=f"psh_{n}")  # fmt: skip
        await provider.send([provider.request(content, recipient)])

    await send(len(numbers) + 10**6)  # warm the connection (a token outside the runs)
    try:
        return await measure(send, fake, numbers, clients)
    finally:
        await provider.close()


async def end_to_end(
    url: str, auth: dict[str, str], device_ids: list[str], fake: FakeApnsProcess,
    numbers: list[int], clients: int,
) -> dict[str, Any]:  # fmt: skip
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, headers=auth, limits=limits, timeout=60) as api:

        async def send(n: int) -> None:
            answer = await api.post(
                "/v1/pushes", json={**PUSH, "to": {"device_ids": [device_ids[n]]}}
            )
            if answer.status_code != 202:
                raise RuntimeError(f"POST /v1/pushes answered {answer.status_code}: {answer.text}")

        return await measure(send, fake, numbers, clients)


async def _project(settings: Settings, devices: int) -> tuple[str, list[str]]:
    """An Enterprise organization's project with ``devices`` iOS devices; its live secret key
    and the device ids, by device number."""
    project, live = await bench_project(settings, SECRET)
    await create_devices(project, settings, devices)
    # Device number n has the token f"{n:064x}" (loadtests/pipeline.py): found by its hash.
    ids = dict(await Device.filter(project_id=project.id).values_list("token_hash", "id"))
    return live, [ids[hash_key(token_of(n), SECRET)] for n in range(devices)]


async def main(devices: int, client_counts: list[int]) -> dict[str, Any]:
    database_url = await create_scratch_database()
    key = new_signing_key()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory, bench_redis() as redis_url:
        fake = FakeApnsProcess(key, Path(directory))
        settings = Settings(
            database_url=database_url, redis_url=redis_url, secret_key=SecretStr(SECRET),
            encryption_keys=[SecretStr(Fernet.generate_key().decode())],
            queue_name=f"brik-bench:{secrets.token_hex(3)}", apns_host="127.0.0.1",
            apns_port=fake.port, apns_ca_file=fake.ca_file, log_level="WARNING",
            egress_rate_per_second=0,  # a per-tenant policy, not a cost: off for the benchmark
        )  # fmt: skip
        try:
            await db.migrate(database_url)
            async with db.database(database_url):
                live, device_ids = await _project(settings, devices)
            env = settings_environment(settings)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {live}"}
            with ExitStack() as stack:
                server = stack.enter_context(running_command(
                    "serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                    ready_url=f"{url}/healthz",
                ))  # fmt: skip
                worker = stack.enter_context(worker_process(settings))
                async with httpx.AsyncClient(base_url=url, headers=auth) as api:
                    await api.put("/v1/credentials/apns", json={
                        "key": key.pem, "key_id": key.key_id, "team_id": key.team_id,
                        "topic": TOPIC, "environment": "sandbox"})  # fmt: skip
                    ready = await api.post("/healthz/pipeline", params={"timeout": 30}, timeout=40)
                    assert ready.status_code == 200, ready.text
                per_run = devices // len(client_counts)
                for index, clients in enumerate(client_counts):
                    numbers = list(range(index * per_run, (index + 1) * per_run))
                    reference = await raw(settings, fake, key, numbers, clients)
                    before = {"api": cpu_seconds(server.pid), "worker": cpu_seconds(worker.pid)}
                    brik = await end_to_end(url, auth, device_ids, fake, numbers, clients)
                    cpu = {
                        name: round(1000 * (cpu_seconds(pid) - before[name]) / len(numbers), 2)
                        for name, pid in (("api", server.pid), ("worker", worker.pid))
                    }
                    results[f"clients_{clients}"] = {
                        "raw_aioapns": reference,
                        "brik": brik,
                        "ratio_deliveries_per_second": round(
                            brik["deliveries_per_second"] / reference["deliveries_per_second"], 3
                        ),
                        "brik_cpu_ms_per_push": cpu,
                    }
        finally:
            fake.stop()
            await drop_scratch_database(database_url)
    return {
        **run_identity("one_to_one"),
        "devices": devices,
        "setup": "one `brik-cloud serve` process, one `brik-cloud worker`, PostgreSQL, Redis, "
        "the fake APNs in its own process and the clients on the same machine",
        **results,
        "command": f"{COMMAND} --devices {devices} "
        + " ".join(f"--clients {c}" for c in client_counts),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=3000, help="split between the runs")
    parser.add_argument(
        "--clients", type=int, action="append",
        help="concurrent clients (repeat for several runs; default 10 and 50)",
    )  # fmt: skip
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where to write the JSON figures"
    )
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments.devices, arguments.clients or [10, 50]))
    write_results("one-to-one", figures, arguments.results_dir)
