"""The image's entrypoint, run from a fresh virtualenv built exactly as the Dockerfile builds it.

No container runtime here: :mod:`tests.support.image_rehearsal` plays the builder stage (the
lock installed with hashes, wheels only; Brik Cloud's wheel built and installed; ``pip check``)
into a folder that stands for the image's root, then each command runs as ``docker run
--read-only --tmpfs /tmp`` would run it: as uid 10001, with every file system read-only but
/tmp, the image's ENV and nothing of this process's — against a fresh PostgreSQL database and
the session's Redis. About 25 s with a warm pip cache (the build), a minute or more cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO

import httpx
import pytest
from cryptography.fernet import Fernet
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import TEST_SECRET_KEY
from tests.support.databases import (
    configured_server_url,
    create_postgres_database,
    drop_postgres_database,
)
from tests.support.dockerfile import parse
from tests.support.image_rehearsal import Rehearsal, base_python_version, rehearse
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


@pytest.fixture(scope="module")
def image() -> Iterator[Rehearsal]:
    wanted = base_python_version(parse((ROOT / "Dockerfile").read_text()))
    if sys.version_info[:2] != wanted:
        pytest.skip(f"plays the image's Python {wanted} with this interpreter: run on that one")
    workspace = Path(tempfile.mkdtemp(prefix="brik-image-"))
    workspace.chmod(0o755)  # the image's user must reach the files, as in the image
    try:
        yield rehearse(ROOT, workspace / "root")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database: `migrate` in the image creates the schema."""
    server = configured_server_url()
    if server.startswith("sqlite"):
        pytest.skip("the image runs on PostgreSQL")
    url = asyncio.run(create_postgres_database(server))
    try:
        yield url
    finally:
        asyncio.run(drop_postgres_database(server, url))


@pytest.fixture
def environment(image: Rehearsal, database_url: str, redis_url: str) -> dict[str, str]:
    """`docker run -e …`: the settings a deployment gives every command."""
    return image.run_environment(
        BRIK_DATABASE_URL=database_url,
        BRIK_REDIS_URL=redis_url,
        BRIK_SECRET_KEY=TEST_SECRET_KEY,
        BRIK_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        BRIK_QUEUE_NAME=f"brik-image-test:{os.getpid()}",
    )


def run(image: Rehearsal, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        image.command(*args), cwd=image.workdir, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


@dataclass
class Started:
    """A long-running command and the file its log goes to (never a pipe no one reads: a
    worker's log fills one in minutes, and then the worker blocks on it)."""

    process: subprocess.Popen[str]
    log: IO[bytes]

    def errors(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextlib.contextmanager
def running(image: Rehearsal, *args: str, env: dict[str, str], ready_url: str) -> Iterator[Started]:
    """A long-running command, once ``ready_url`` answers 200; SIGTERM afterwards."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            image.command(*args), cwd=image.workdir, env=env, text=True,
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        started = Started(process, log)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"brik-cloud {args} exited: {started.errors()}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"brik-cloud {args} never became ready"
                time.sleep(0.2)
            yield started
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.wait(timeout=45)  # the worker's grace period (30 s) and some


def stopped_cleanly(started: Started) -> str:
    """Its log, once it has exited 0 after SIGTERM."""
    started.process.send_signal(signal.SIGTERM)
    code = started.process.wait(timeout=45)  # the worker's grace period (30 s) and some
    errors = started.errors()
    assert code == 0, errors[-3000:]
    assert "Traceback" not in errors
    return errors


def test_the_build_holds_the_lock_and_brik_cloud_and_nothing_else(image: Rehearsal) -> None:
    """What the lock pins is exactly what brik-cloud needs on the image's platform, followed
    through every requirement and extra the installed packages declare: nothing missing (the
    image would fail at import), nothing stale."""
    site_packages = next(image.host_path("/opt/brik-cloud/lib").glob("python3.*/site-packages"))
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist
        for dist in metadata.distributions(path=[str(site_packages)])
    }
    needed: set[str] = set()
    pending = [(Requirement(r), "") for r in installed["brik-cloud"].requires or []]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate(
            {**default_environment(), "extra": extra}
        ):
            continue
        name = canonicalize_name(requirement.name)
        assert name in installed, f"{requirement} is needed but not in requirements.lock"
        assert requirement.specifier.contains(installed[name].version, prereleases=True)
        for wanted in {"", *requirement.extras}:
            key = f"{name}[{wanted}]"
            if key not in needed:
                needed.add(key)
                pending += [(Requirement(r), wanted) for r in installed[name].requires or []]
    needed_names = {key.split("[")[0] for key in needed}
    locked = set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", LOCK.read_text(), flags=re.M))
    assert {canonicalize_name(name) for name in locked} == needed_names
    assert set(installed) == needed_names | {"brik-cloud", "pip"}


def test_help_lists_the_commands_the_image_documents(
    image: Rehearsal, environment: dict[str, str]
) -> None:
    result = run(image, "--help", env=environment)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "worker", "migrate", "bootstrap"):
        assert re.search(rf"^\s+{command}\s", result.stdout, flags=re.M), command


def test_migrate_and_bootstrap_on_a_fresh_database(
    image: Rehearsal, environment: dict[str, str]
) -> None:
    migrated = run(image, "migrate", env=environment)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == "Database is up to date."
    again = run(image, "migrate", env=environment)
    assert again.returncode == 0, again.stderr

    created = run(image, "bootstrap", "--json", env=environment)
    assert created.returncode == 0, created.stderr
    result = json.loads(created.stdout)
    assert result["admin_email"] == "admin@brik.local"
    assert result["keys"]["live_secret"].startswith("bk_sk_live_")


def test_serve_by_default_answers_on_every_interface(
    image: Rehearsal, environment: dict[str, str]
) -> None:
    # `docker run IMAGE` runs the CMD, `serve` on 8000; 8000 may be taken on a shared machine,
    # so the same command is given its own port (`docker run IMAGE serve --port N`).
    assert image.cmd == ["serve"]
    port = free_port()
    migrated = run(image, "migrate", env=environment)
    assert migrated.returncode == 0, migrated.stderr
    base = f"http://127.0.0.1:{port}"
    with running(image, *image.cmd, "--port", str(port), env=environment,
                 ready_url=f"{base}/healthz") as server:  # fmt: skip
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz").status_code == 200
        # Reachable from outside the container: bound to 0.0.0.0, not to loopback.
        assert ("0.0.0.0", port) in _listening(server.process.pid)
        stopped_cleanly(server)


def test_worker_starts_and_answers_its_probes(
    image: Rehearsal, environment: dict[str, str]
) -> None:
    port = free_port()
    env = {**environment, "BRIK_WORKER_METRICS_PORT": str(port)}
    migrated = run(image, "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    ready = f"http://127.0.0.1:{port}/readyz"
    with running(image, "worker", env=env, ready_url=ready) as worker:
        assert (
            "brik_worker_redis_connected 1.0" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
        )
        # Kubernetes probes and Prometheus reach it on the pod's address, not loopback.
        assert ("0.0.0.0", port) in _listening(worker.process.pid)
        stopped_cleanly(worker)


def test_commands_run_as_the_image_user_with_only_tmp_writable(image: Rehearsal) -> None:
    """The sandbox the commands above ran in is what the image promises a deployment:
    uid 10001, its own code read-only, nothing writable but /tmp."""
    if not Rehearsal.can_sandbox():
        pytest.skip("needs root, unshare and setpriv to play the read-only image")
    probe = (
        "import os, sys\n"
        "print(os.getuid(), os.getgid())\n"
        "for path in sys.argv[1:]:\n"
        "    probe = os.path.join(path, f'brik-image-probe-{os.getpid()}')\n"
        "    try:\n"
        "        open(probe, 'w').close()\n"
        "        os.unlink(probe)\n"
        "        print(path, 'writable')\n"
        "    except OSError:\n"
        "        print(path, 'read-only')\n"
    )
    venv = str(image.host_path("/opt/brik-cloud"))
    paths = [venv, f"{venv}/bin", str(image.workdir), "/var/tmp", str(ROOT), "/tmp"]
    python = str(image.host_path("/opt/brik-cloud/bin/python"))
    result = subprocess.run(
        image.sandbox([python, "-c", probe, *paths]), cwd=image.workdir,
        env=image.run_environment(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0] == "10001 10001"
    assert lines[1:] == [f"{path} read-only" for path in paths[:-1]] + ["/tmp writable"]


def _listening(pid: int) -> set[tuple[str, int]]:
    """The IPv4 (address, port) pairs process ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in inodes:  # 0A: LISTEN
            address, port = local.split(":")
            octets = [str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)]
            found.add((".".join(octets), int(port, 16)))
    return found
