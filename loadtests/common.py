"""What the benchmarks share: a scratch database, the local servers' URLs, the results file."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from controlplane.settings import Settings
from tests.support.processes import brik_cloud_command, settings_environment

RESULTS = Path(__file__).parent / "results"


def server_url() -> str:
    """The PostgreSQL server the benchmarks make their scratch databases on."""
    return os.environ.get("BRIK_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def redis_url() -> str:
    return os.environ.get("BRIK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def _admin_dsn() -> str:
    return "postgresql://" + server_url().split("://", 1)[1]


async def create_scratch_database() -> str:
    """A new empty database on the server; returns its URL."""
    name = f"brik_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_admin_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server_url().rsplit("/", 1)[0] + f"/{name}"


async def drop_scratch_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(_admin_dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def write_results(stem: str, figures: dict[str, Any]) -> Path:
    """Print ``figures`` and write them to ``loadtests/results/<stem>-<date>.json``."""
    print(json.dumps(figures, indent=2))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stem}-{figures['when'][:10]}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {out}")
    return out


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set size, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def worker_process(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """``brik-cloud worker`` on exactly ``settings``, as in production; SIGTERM on exit."""
    process = subprocess.Popen(
        [*brik_cloud_command(), "worker"], env=settings_environment(settings)
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
