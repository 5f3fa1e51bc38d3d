"""Pipeline benchmark: how close does Brik get to what aioapns alone can push to APNs?

(a) raw: the APNs provider (aioapns, HTTP/2, the same in-flight limit) sending straight to the
    local fake APNs — the ceiling on this machine;
(b) end to end: ``POST /v1/pushes`` to N devices → PostgreSQL → Redis → an arq worker → the same
    fake, timed from the 202 to the fake receiving the last delivery, with per-delivery latency
    (accept → received) p50/p99.

Prints the figures and b/a, and writes them as JSON to ``loadtests/results/``. Needs the local
PostgreSQL and Redis (``BRIK_BENCH_DATABASE_URL`` — a server URL; a scratch database is created
and dropped — and ``BRIK_BENCH_REDIS_URL``). A benchmark, not a test: it asserts nothing.

    .venv/bin/python -m loadtests.pipeline --devices 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from controlplane import db
from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.keys import hash_key
from controlplane.crypto import KeyRing
from controlplane.models import Device, KeyKind, KeyMode, Organization, Platform, Project
from controlplane.settings import Settings
from tests.support.apple import fake_host_tls, new_signing_key
from tests.support.servers import running_worker, serving
from workers.fakes.apns import FakeAPNs
from workers.providers.apns import ApnsProvider
from workers.providers.base import ApnsPush

RESULTS = Path(__file__).parent / "results"
SECRET = "benchmark-secret-key-" + "x" * 32
TOPIC = "com.example.bench"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def raw_sends_per_second(fake: FakeAPNs, settings: Settings, key: Any, count: int) -> float:
    provider = ApnsProvider(
        key=key.pem, key_id=key.key_id, team_id=key.team_id, topic=TOPIC, sandbox=True,
        settings=settings, max_in_flight=settings.delivery_in_flight_per_connection,
    )  # fmt: skip
    pushes = [
        ApnsPush(token=f"{n:064x}", apns_id=str(uuid.uuid4()), payload={"aps": {"alert": "x"}})
        for n in range(count)
    ]
    await provider.send(pushes[:100])  # warm the connection
    started = time.perf_counter()
    await provider.send(pushes)
    elapsed = time.perf_counter() - started
    await provider.close()
    return count / elapsed


async def end_to_end(settings: Settings, fake: FakeAPNs, key: Any, count: int) -> dict[str, Any]:
    organization = await Organization.create(name="Bench")
    project = await Project.create(organization=organization, name="Bench app")
    _, live = await issue_api_key(project, name="live", kind=KeyKind.SECRET, mode=KeyMode.LIVE,
                                  pepper=SECRET)  # fmt: skip
    keyring = KeyRing([k.get_secret_value() for k in settings.encryption_keys])
    for start in range(0, count, 5000):
        await Device.bulk_create([
            Device(project=project, mode=KeyMode.LIVE, platform=Platform.IOS,
                   token_hash=hash_key(f"{n:064x}", SECRET),
                   token_encrypted=keyring.encrypt(f"{n:064x}".encode()),
                   token_last_four=f"{n:064x}"[-4:], user_id="everyone")
            for n in range(start, min(count, start + 5000))
        ])  # fmt: skip
    auth = {"Authorization": f"Bearer {live}"}
    fake.received.clear()
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as api:
        await api.put("/v1/credentials/apns", json={
            "key": key.pem, "key_id": key.key_id, "team_id": key.team_id, "topic": TOPIC,
            "environment": "sandbox"}, headers=auth)  # fmt: skip
        async with running_worker(settings):
            started = time.perf_counter()
            started_wall = time.time()
            accepted = await api.post("/v1/pushes", json={
                "kind": "alert", "alert": {"title": "Bench"}, "to": {"user_ids": ["everyone"]}},
                headers=auth, timeout=300)  # fmt: skip
            accepted_at = time.time()
            accept_seconds = time.perf_counter() - started
            assert accepted.status_code == 202, accepted.text
            while len(fake.accepted()) < count:  # noqa: ASYNC110 — the fake keeps a log
                await asyncio.sleep(0.05)
            elapsed = max(push.received_at for push in fake.accepted()) - started_wall
    latencies = [push.received_at - accepted_at for push in fake.accepted()]
    return {
        "deliveries_per_second": count / elapsed,
        "accept_seconds": accept_seconds,
        "latency_p50_seconds": statistics.median(latencies),
        "latency_p99_seconds": _percentile(latencies, 0.99),
    }


async def main(count: int) -> dict[str, Any]:
    server = os.environ.get(
        "BRIK_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"
    )
    name = f"brik_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect("postgresql://" + server.split("://", 1)[1])
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = server.rsplit("/", 1)[0] + f"/{name}"
    key = new_signing_key()
    with tempfile.TemporaryDirectory() as directory:
        tls = fake_host_tls(Path(directory))
        fake = FakeAPNs(tls=tls.server)
        fake.add_key(key.key_id, key.team_id, key.public_key)
        await fake.start()
        settings = Settings(
            database_url=database_url,
            redis_url=os.environ.get("BRIK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
            secret_key=SECRET, encryption_keys=[Fernet.generate_key().decode()],
            queue_name=f"brik-bench:{secrets.token_hex(3)}", apns_host=fake.host,
            apns_port=fake.port, apns_ca_file=tls.ca_file, log_level="WARNING",
        )  # fmt: skip
        await Redis.from_url(settings.redis_url).flushdb()
        try:
            await db.migrate(database_url)
            async with db.database(database_url):
                raw = await raw_sends_per_second(fake, settings, key, count)
                fake.received.clear()
                e2e = await end_to_end(settings, fake, key, count)
        finally:
            await fake.stop()
            admin = await asyncpg.connect("postgresql://" + server.split("://", 1)[1])
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    return {
        "benchmark": "pipeline",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "devices": count,
        "raw_aioapns_sends_per_second": round(raw, 1),
        "end_to_end_deliveries_per_second": round(e2e["deliveries_per_second"], 1),
        "ratio_end_to_end_over_raw": round(e2e["deliveries_per_second"] / raw, 3),
        "accept_seconds": round(e2e["accept_seconds"], 3),
        "latency_p50_seconds": round(e2e["latency_p50_seconds"], 3),
        "latency_p99_seconds": round(e2e["latency_p99_seconds"], 3),
        "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "command": f".venv/bin/python -m loadtests.pipeline --devices {count}",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    figures = asyncio.run(main(parser.parse_args().devices))
    print(json.dumps(figures, indent=2))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pipeline-{figures['when'][:10]}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {out}")
