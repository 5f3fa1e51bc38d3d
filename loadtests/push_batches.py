"""Batch benchmark: ``POST /v1/pushes/batch`` accepting independent one-device messages.

What Expo's and FCM's users send: many small pushes, each to one device, in batches. C clients
each send batches of B messages, back to back, to a real ``brik-cloud serve`` process; half the
messages name a registered device (``to.device_ids``), half a raw ``device_token``, of which
half are new tokens registered on the way. Measured as messages accepted per second (every
one of them committed — push, delivery, quota — and queued before its answer), with the CPU
the API process and the load generator spent per message.

The reference, in the same run: the same rows written straight into the same PostgreSQL by
asyncpg — for each batch, one transaction inserting its pushes and their deliveries with one
``unnest`` statement each, C connections at once. It is the floor of the durable bookkeeping
alone (no HTTP, no validation, no idempotency, quota, device lookup or queue), so the ratio
says what everything else costs. A benchmark, not a test: it asserts nothing about speed
(``tests/loadtests/`` runs it at a tiny size so that it keeps working).

    .venv/bin/python -m loadtests.push_batches --messages 20000 --batch 500 --clients 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
from cryptography.fernet import Fernet
from pydantic import SecretStr

from controlplane import db
from controlplane.auth.keys import hash_key
from controlplane.models import Device
from controlplane.settings import Settings
from loadtests.common import (
    RESULTS,
    bench_project,
    bench_redis,
    cpu_seconds,
    create_scratch_database,
    drop_scratch_database,
    run_identity,
    write_results,
)
from loadtests.pipeline import PUSH, SECRET, TOPIC, create_devices
from tests.support.apple import new_signing_key
from tests.support.processes import free_port, running_command, settings_environment

COMMAND = ".venv/bin/python -m loadtests.push_batches"


def token_of(n: int) -> str:
    return f"{n:064x}"


def messages_of(batch: range, device_ids: list[str]) -> list[dict[str, Any]]:
    """Message n: to device n by id (even n), by its raw token (n % 4 == 1) or a new token."""
    messages = []
    for n in batch:
        title = {"alert": {"title": f"Order {n} shipped"}}
        if n % 2 == 0:
            messages.append({**PUSH, **title, "to": {"device_ids": [device_ids[n]]}})
        else:
            token = token_of(n if n % 4 == 1 else 10**9 + n)  # a new one: registered
            messages.append({**PUSH, **title,
                             "device_token": {"platform": "ios", "token": token}})  # fmt: skip
    return messages


async def brik(
    url: str, auth: dict[str, str], device_ids: list[str], batches: list[range], clients: int,
) -> dict[str, Any]:  # fmt: skip
    pending = list(reversed(batches))
    accepted = 0
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, headers=auth, limits=limits, timeout=120) as api:

        async def client() -> None:
            nonlocal accepted
            while pending:
                batch = pending.pop()
                answer = await api.post(
                    "/v1/pushes/batch", json={"messages": messages_of(batch, device_ids)}
                )
                body = answer.json()
                if answer.status_code != 200 or body["refused"]:
                    raise RuntimeError(f"the batch answered {answer.status_code}: {answer.text}")
                accepted += body["accepted"]

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {"messages": accepted, "seconds": round(seconds, 3),
            "messages_per_second": round(accepted / seconds, 1)}  # fmt: skip


_PUSHES = """
INSERT INTO pushes (id, project_id, mode, kind, content, target, status, recipients, created_at)
SELECT row.id, $1, 'live', 'alert', row.content::jsonb, row.target::jsonb, 'queued', 1, $2
FROM unnest($3::text[], $4::text[], $5::text[]) AS row(id, content, target)
"""
_DELIVERIES = """
INSERT INTO deliveries (id, push_id, device_id, provider, platform, apns_id, status, attempts,
                        created_at)
SELECT row.id, row.push_id, row.device_id, 'apns', 'ios', row.apns_id, 'queued', 0, $1
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
    AS row(id, push_id, device_id, apns_id)
"""


async def raw(
    database_url: str, project_id: str, device_ids: list[str], batches: list[range],
    clients: int,
) -> dict[str, Any]:  # fmt: skip
    """The same pushes and deliveries, inserted by asyncpg alone: one transaction per batch."""
    dsn = database_url.replace("postgres://", "postgresql://", 1)
    pending = list(reversed(batches))
    written = 0

    async def client() -> None:
        nonlocal written
        connection = await asyncpg.connect(dsn)
        try:
            while pending:
                batch = pending.pop()
                now = datetime.now(UTC)
                pushes = [f"psh_raw{secrets.token_hex(10)}" for _ in batch]
                async with connection.transaction():
                    await connection.execute(_PUSHES, project_id, now, pushes, [
                        json.dumps({**PUSH, "alert": {"title": f"Order {n} shipped"}})
                        for n in batch
                    ], [json.dumps({"device_ids": [device_ids[n]]}) for n in batch])  # fmt: skip
                    await connection.execute(
                        _DELIVERIES, now, [f"dlv_raw{secrets.token_hex(10)}" for _ in batch],
                        pushes, [device_ids[n] for n in batch],
                        [str(uuid.uuid4()) for _ in batch],
                    )  # fmt: skip
                written += len(batch)
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - started
    return {"messages": written, "seconds": round(seconds, 3),
            "messages_per_second": round(written / seconds, 1)}  # fmt: skip


async def _project(settings: Settings, devices: int) -> tuple[str, str, list[str]]:
    project, live = await bench_project(settings, SECRET)
    await create_devices(project, settings, devices)
    # Statistics, as a database in service has them (autovacuum would, a minute later): just
    # after a bulk load the planner takes the table for empty and scans it for every lookup.
    await Device._meta.db.execute_script("ANALYZE devices")
    ids = dict(await Device.filter(project_id=project.id).values_list("token_hash", "id"))
    return project.id, live, [ids[hash_key(token_of(n), SECRET)] for n in range(devices)]


async def main(messages: int, batch_size: int, clients: int) -> dict[str, Any]:
    database_url = await create_scratch_database()
    key = new_signing_key()
    batches = [range(start, min(start + batch_size, messages))
               for start in range(0, messages, batch_size)]  # fmt: skip
    with bench_redis() as redis_url:
        settings = Settings(
            database_url=database_url, redis_url=redis_url, secret_key=SecretStr(SECRET),
            encryption_keys=[SecretStr(Fernet.generate_key().decode())],
            queue_name=f"brik-bench:{secrets.token_hex(3)}", log_level="WARNING",
        )  # fmt: skip
        try:
            await db.migrate(database_url)
            async with db.database(database_url):
                project_id, live, device_ids = await _project(settings, messages)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {live}"}
            reference = await raw(database_url, project_id, device_ids, batches, clients)
            with ExitStack() as stack:
                server = stack.enter_context(running_command(
                    "serve", "--host", "127.0.0.1", "--port", str(port),
                    env=settings_environment(settings), ready_url=f"{url}/healthz",
                ))  # fmt: skip
                async with httpx.AsyncClient(base_url=url, headers=auth) as api:
                    await api.put("/v1/credentials/apns", json={
                        "key": key.pem, "key_id": key.key_id, "team_id": key.team_id,
                        "topic": TOPIC, "environment": "sandbox"})  # fmt: skip
                before = {"api": cpu_seconds(server.pid), "load": cpu_seconds(os.getpid())}
                measured = await brik(url, auth, device_ids, batches, clients)
                cpu = {
                    name: round(1000 * (cpu_seconds(pid) - before[name]) / messages, 3)
                    for name, pid in (("api", server.pid), ("load", os.getpid()))
                }
        finally:
            await drop_scratch_database(database_url)
    return {
        **run_identity("push_batches"),
        "messages": messages,
        "batch": batch_size,
        "clients": clients,
        "setup": "one `brik-cloud serve` process, PostgreSQL, Redis and the clients on the same "
        "machine; half the messages to a device id, a quarter to a registered raw token, a "
        "quarter to a new raw token (registered on the way)",
        "raw_asyncpg_inserts": reference,
        "brik": measured,
        "ratio_messages_per_second": round(
            measured["messages_per_second"] / reference["messages_per_second"], 3
        ),
        "cpu_ms_per_message": cpu,
        "command": f"{COMMAND} --messages {messages} --batch {batch_size} --clients {clients}",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500, help="messages per request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where to write the JSON figures"
    )
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments.messages, arguments.batch, arguments.clients))
    write_results("push-batches", figures, arguments.results_dir)
