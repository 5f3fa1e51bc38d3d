"""What the benchmarks share: a scratch database, a Redis, the results file, the plan.

The benchmark organization is put on the Enterprise plan (no push quota, the highest request
rate) through the same plan change ``brik-cloud set-plan`` makes: a benchmark measures the
pipeline, and on the Free plan its 20,000-device push was refused whole (10,000 a month).

Redis is a redis-server of the benchmark's own on a free port (as the tests do), unless
``BRIK_BENCH_REDIS_URL`` names one: a benchmark flushes its Redis, and a developer's own must
never be flushed.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from controlplane.audit import Actor
from controlplane.auth.api_keys import issue_api_key
from controlplane.billing import set_plan_by_admin
from controlplane.embedded_redis import EmbeddedRedis
from controlplane.models import KeyKind, KeyMode, Organization, Plan, Project
from controlplane.settings import Settings
from tests.support.processes import brik_cloud_command, settings_environment

RESULTS = Path(__file__).parent / "results"


def server_url() -> str:
    """The PostgreSQL server the benchmarks make their scratch databases on."""
    return os.environ.get("BRIK_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@contextmanager
def bench_redis() -> Iterator[str]:
    """``BRIK_BENCH_REDIS_URL``, else a private redis-server for the run; yields its URL."""
    configured = os.environ.get("BRIK_BENCH_REDIS_URL")
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory() as directory, EmbeddedRedis(Path(directory)) as redis:
        yield redis.url


BENCH_PLAN = Plan.ENTERPRISE


async def put_on_benchmark_plan(organization: Organization, settings: Settings) -> None:
    """The plan change ``brik-cloud set-plan ORG enterprise`` makes (controlplane/billing.py)."""
    await set_plan_by_admin(organization, BENCH_PLAN, settings, Actor("cli", None, "loadtests"))


async def bench_project(
    settings: Settings, pepper: str, name: str = "Bench"
) -> tuple[Project, str]:
    """A project of a new organization on the benchmark plan, and a live secret key of it
    (hashed with ``pepper``, the run's secret key)."""
    organization = await Organization.create(name=name)
    await put_on_benchmark_plan(organization, settings)
    project = await Project.create(organization=organization, name="Bench app")
    _, live = await issue_api_key(project, name="live", kind=KeyKind.SECRET, mode=KeyMode.LIVE,
                                  pepper=pepper)  # fmt: skip
    return project, live


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


def run_identity(benchmark: str) -> dict[str, Any]:
    """What every results file starts with: which benchmark, when, on what machine."""
    return {
        "benchmark": benchmark,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def write_results(stem: str, figures: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Print ``figures`` and write them to ``<directory>/<stem>-<date>.json``."""
    print(json.dumps(figures, indent=2))
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{stem}-{figures['when'][:10]}.json"
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


def cpu_snapshot(**pids: int) -> dict[str, float]:
    """CPU seconds so far of each named process, and of every PostgreSQL server process."""
    snapshot = {name: cpu_seconds(pid) for name, pid in pids.items()}
    postgres = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                postgres += cpu_seconds(int(comm.parent.name))
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return {**snapshot, "postgres": postgres}


def cpu_per_thousand(
    before: dict[str, float], after: dict[str, float], count: int
) -> dict[str, float]:
    """CPU seconds each process spent per 1,000 deliveries between two snapshots."""
    return {name: round((after[name] - before[name]) * 1000 / count, 3) for name in after}


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
