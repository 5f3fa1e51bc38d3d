"""Realtime benchmark: N concurrent SSE subscribers on one API process, against a bare server.

(a) reference: a minimal SSE server (``--serve-reference``, its own process: asyncio streams,
    no framework, no auth, one Redis pub/sub subscription written to every socket) fed by a
    bare redis-py ``PUBLISH`` — the floor for "Redis pub/sub → N sockets" in Python here;
(b) Brik: one real ``brik-cloud serve`` process, N streams of
    ``GET /v1/realtime/channels/{channel}`` with a test-mode publishable key, each message
    published with ``POST /v1/realtime/channels/{channel}/messages`` (a secret key).

For each, the same client (this process, raw asyncio sockets, so its own cost is alike for both)
opens ``--subscribers`` streams, then publishes ``--messages`` messages ``--interval`` seconds
apart; every subscriber timestamps each message as it reads it. Printed: publish → receive
latency p50/p99 over every (message, subscriber) pair (timed from just before the publish call;
how long the call itself took is given apart), how long opening the streams took, and the server
process's memory per connection (RSS with the streams open minus RSS before, over N) — with b/a
for each. The organization is on the Enterprise plan (no realtime connection limit). A
benchmark: it asserts nothing about speed (``tests/loadtests/`` runs it at a tiny size so that
it keeps working).

    .venv/bin/python -m loadtests.realtime --subscribers 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from controlplane.settings import Settings
from loadtests.common import (
    BENCH_PLAN,
    RESULTS,
    bench_redis,
    create_scratch_database,
    drop_scratch_database,
    run_identity,
    write_results,
)
from tests.support.processes import (
    brik_cloud_command,
    free_port,
    running_command,
    settings_environment,
)

COMMAND = ".venv/bin/python -m loadtests.realtime"
CHANNEL = "bench"
REFERENCE_TOPIC = "brik-bench:reference"
_SEQ = re.compile(rb'"seq":(\d+)')
OPEN_AT_ONCE = 200  # connections being opened at the same time


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc status")


# --- (a) the reference server ---------------------------------------------------------------


async def serve_reference(port: int, redis_url: str) -> None:
    """A bare SSE server: every connection gets every message of one Redis topic."""
    writers: set[asyncio.StreamWriter] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-cache\r\n\r\nretry: 2000\n\n")  # fmt: skip
        writers.add(writer)
        try:
            await reader.read()  # until the client goes
        finally:
            writers.discard(writer)
            writer.close()

    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(REFERENCE_TOPIC)
    server = await asyncio.start_server(accept, "127.0.0.1", port, backlog=4096)
    async with server:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None:
                event = b"data: " + message["data"] + b"\n\n"
                for writer in list(writers):
                    writer.write(event)


# --- the subscribers ------------------------------------------------------------------------


class Subscribers:
    """N raw SSE connections to one server, each noting when it reads each message."""

    def __init__(self, port: int, path: str, key: str | None) -> None:
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self._request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
                         "Accept: text/event-stream\r\n\r\n").encode()  # fmt: skip
        self._port = port
        self.received: dict[int, list[float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self.failed = 0

    async def open(self, count: int) -> float:
        """Open ``count`` streams (each answered 200 and started); seconds it took."""
        started = time.perf_counter()
        gate = asyncio.Semaphore(OPEN_AT_ONCE)

        async def one() -> None:
            async with gate:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
                    writer.write(self._request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    if b" 200 " not in head.split(b"\r\n", 1)[0]:
                        raise RuntimeError(head.decode(errors="replace")[:200])
                    await reader.readuntil(b"retry:")  # the stream has started
                except (OSError, RuntimeError, asyncio.IncompleteReadError):
                    self.failed += 1
                    return
            self._writers.append(writer)
            self._tasks.append(asyncio.create_task(self._read(reader)))

        await asyncio.gather(*(one() for _ in range(count)))
        return time.perf_counter() - started

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with_tail = b""
        while chunk := await reader.read(65536):
            now = time.perf_counter()
            with_tail = with_tail[-32:] + chunk
            for match in _SEQ.finditer(with_tail):
                if match.end() > len(with_tail) - len(chunk):  # not one seen in the last tail
                    self.received.setdefault(int(match[1]), []).append(now)

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


Publish = Callable[[int], Awaitable[None]]


async def measure(
    server_pid: int, subscribers: Subscribers, count: int, publish: Publish, messages: int,
    interval: float,
) -> dict[str, Any]:  # fmt: skip
    """Open the streams, publish, and read the figures."""
    rss_before = rss_mb(server_pid)
    open_seconds = await subscribers.open(count)
    await asyncio.sleep(1.0)  # settled
    rss_open = rss_mb(server_pid)
    sent: dict[int, float] = {}
    calls: list[float] = []
    for seq in range(messages):
        sent[seq] = time.perf_counter()
        await publish(seq)
        calls.append((time.perf_counter() - sent[seq]) * 1000)
        await asyncio.sleep(interval)
    await asyncio.sleep(max(2.0, interval))  # the last one arrives
    latencies = [
        (at - sent[seq]) * 1000
        for seq, times in subscribers.received.items()
        if seq in sent
        for at in times
    ]
    expected = messages * (count - subscribers.failed)
    await subscribers.close()
    return {
        "subscribers": count,
        "failed_to_open": subscribers.failed,
        "open_seconds": round(open_seconds, 2),
        "messages": messages,
        "deliveries": len(latencies),
        "deliveries_expected": expected,
        "latency_p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "latency_p99_ms": round(_percentile(latencies, 0.99), 2) if latencies else None,
        "latency_max_ms": round(max(latencies), 2) if latencies else None,
        "publish_call_p50_ms": round(statistics.median(calls), 2),
        "server_rss_before_mb": round(rss_before, 1),
        "server_rss_open_mb": round(rss_open, 1),
        "server_kb_per_connection": round((rss_open - rss_before) * 1024 / max(1, count), 2),
    }


# --- the two runs ---------------------------------------------------------------------------


async def _reference(port: int, pid: int, redis_url: str, count: int, messages: int,
                     interval: float) -> dict[str, Any]:  # fmt: skip
    redis = Redis.from_url(redis_url)
    payload = "x" * 64

    async def publish(seq: int) -> None:
        await redis.publish(
            REFERENCE_TOPIC, json.dumps({"seq": seq, "pad": payload}, separators=(",", ":"))
        )

    try:
        subscribers = Subscribers(port, "/", None)
        return await measure(pid, subscribers, count, publish, messages, interval)
    finally:
        await redis.aclose()


async def _brik(port: int, pid: int, keys: dict[str, str], count: int, messages: int,
                interval: float) -> dict[str, Any]:  # fmt: skip
    headers = {"Authorization": f"Bearer {keys['test_secret']}"}
    payload = "x" * 64
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as api:

        async def publish(seq: int) -> None:
            answer = await api.post(f"/v1/realtime/channels/{CHANNEL}/messages",
                                    json={"data": {"seq": seq, "pad": payload}})  # fmt: skip
            if answer.status_code != 200:
                raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")

        await publish(-1)  # warm the connection and the key cache
        subscribers = Subscribers(port, f"/v1/realtime/channels/{CHANNEL}",
                                  keys["test_publishable"])  # fmt: skip
        return await measure(pid, subscribers, count, publish, messages, interval)


def _keys(env: dict[str, str]) -> dict[str, str]:
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


def main(subscribers: int, messages: int, interval: float) -> dict[str, Any]:
    with bench_redis() as redis_url:
        return _run(subscribers, messages, interval, redis_url)


def _run(count: int, messages: int, interval: float, redis_url: str) -> dict[str, Any]:
    database_url = asyncio.run(create_scratch_database())
    try:
        settings = Settings(
            database_url=database_url, redis_url=redis_url,
            secret_key=secrets.token_urlsafe(48),
            encryption_keys=[Fernet.generate_key().decode()],
            queue_name=f"brik-bench:{secrets.token_hex(3)}", log_level="WARNING",
        )  # fmt: skip
        env = settings_environment(settings)
        keys = _keys(env)
        with ExitStack() as stack:
            reference_port = free_port()
            reference = stack.enter_context(subprocess.Popen(
                [sys.executable, "-m", "loadtests.realtime", "--serve-reference",
                 str(reference_port), "--redis-url", redis_url],
            ))  # fmt: skip
            stack.callback(reference.terminate)
            port = free_port()
            server = stack.enter_context(running_command(
                "serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                ready_url=f"http://127.0.0.1:{port}/healthz",
            ))  # fmt: skip
            _wait_for_port(reference_port)
            raw = asyncio.run(
                _reference(reference_port, reference.pid, redis_url, count, messages, interval)
            )
            brik = asyncio.run(_brik(port, server.pid, keys, count, messages, interval))
    finally:
        asyncio.run(drop_scratch_database(database_url))

    def ratio(name: str) -> float | None:
        a, b = raw[name], brik[name]
        return round(b / a, 2) if a and b else None

    return {
        **run_identity("realtime"),
        "setup": "one `brik-cloud serve` process (b) and one bare asyncio SSE server (a), each "
        "fed through the same Redis; the subscribers are raw asyncio sockets in this process; "
        "PostgreSQL, Redis, both servers and this client on the same machine",
        "reference_raw_sse": raw,
        "brik": brik,
        "ratio_brik_over_raw": {
            "latency_p50": ratio("latency_p50_ms"),
            "latency_p99": ratio("latency_p99_ms"),
            "kb_per_connection": ratio("server_kb_per_connection"),
            "open_seconds": ratio("open_seconds"),
        },
        "command": f"{COMMAND} --subscribers {count} --messages {messages} --interval {interval:g}",
    }


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.2)
        except httpx.TimeoutException:
            return  # it answered the connection: a stream, never ending
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        return
    raise RuntimeError(f"the reference server did not listen on {port}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000, help="concurrent SSE streams")
    parser.add_argument("--messages", type=int, default=20, help="messages published")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between them")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where to write the JSON figures"
    )
    parser.add_argument("--serve-reference", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve_reference:
        asyncio.run(serve_reference(arguments.serve_reference, arguments.redis_url))
        sys.exit(0)
    figures = main(arguments.subscribers, arguments.messages, arguments.interval)
    ratios = figures["ratio_brik_over_raw"]
    print(
        f"b/a (Brik over a bare SSE server): latency p50 {ratios['latency_p50']}, "
        f"p99 {ratios['latency_p99']}; memory per connection {ratios['kb_per_connection']}"
    )
    write_results("realtime", figures, arguments.results_dir)
