"""Helpers for tests that run ``brik-cloud`` as a real subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
from pydantic import SecretStr

from controlplane.settings import Settings


def brik_cloud_command() -> list[str]:
    """The installed console script next to this interpreter."""
    script = Path(sys.executable).parent / "brik-cloud"
    return [str(script)] if script.exists() else [sys.executable, "-m", "controlplane"]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any BRIK_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIK_")}
    env.update(extra)
    return env


def settings_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """A clean environment carrying every setting ``settings`` was given, as ``BRIK_*`` vars.

    So a ``brik-cloud`` subprocess runs on exactly the settings an in-process test built.
    """

    def text(value: object) -> str:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, list):
            return ",".join(text(item) for item in value)
        return str(value)

    variables = {
        f"BRIK_{name.upper()}": text(getattr(settings, name))
        for name in settings.model_fields_set
        if getattr(settings, name) is not None
    }
    return clean_environment(**variables, **extra)


def server_environment(database_url: str, redis_url: str, queue: str, **extra: str) -> (
    dict[str, str]
):  # fmt: skip
    """What a ``brik-cloud serve``/``worker`` subprocess needs on the test database and Redis."""
    from cryptography.fernet import Fernet

    from tests.conftest import TEST_SECRET_KEY

    return clean_environment(
        BRIK_DATABASE_URL=database_url,
        BRIK_REDIS_URL=redis_url,
        BRIK_SECRET_KEY=TEST_SECRET_KEY,
        BRIK_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        BRIK_QUEUE_NAME=queue,
        **extra,
    )


def free_port() -> int:
    """A loopback port that no one else is given for a minute, for a server the test starts
    later (or for nothing to listen on: a client is refused).

    A port that was merely free a moment ago could meanwhile go to another test running at the
    same time (pytest-xdist workers, the SQLite dialect run, other runs on the machine). This
    one is left in TIME_WAIT by a connection that it accepted and closed first, so the kernel
    hands it to no other ``bind(port 0)`` and no outgoing connection for a minute, while a
    server that binds it with SO_REUSEADDR (uvicorn, redis-server, aiohttp, aiosmtpd and
    wsgiref all do) takes it at once.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            accepted.close()  # closed first: the port's side of the connection waits
        return port


def child_pids(parent: int) -> dict[int, str]:
    """Live children of ``parent`` as {pid: command name}, read from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            children[int(stat.parent.name)] = name
    return children


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def log_tail(log: IO[bytes], size: int = 4000) -> str:
    """The last ``size`` bytes a subprocess wrote to ``log``, for an assertion message."""
    log.flush()
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - size))
    return log.read().decode(errors="replace")


@contextlib.contextmanager
def running_command(
    *args: str, env: dict[str, str], ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``brik-cloud <args>`` as a subprocess, once ``ready_url`` answers 200; SIGTERM on exit.

    Its log goes to a file, never to a pipe: a pipe no one reads fills after 64 KB, and a
    process blocked writing its log neither works nor stops (a long module's worker did).
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*brik_cloud_command(), *args], env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"brik-cloud {args[0]} exited: {log_tail(log)}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"brik-cloud {args[0]} never became ready: {log_tail(log)}")
                time.sleep(0.2)
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=45)  # the worker's grace period (30 s) and some
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(
                    f"brik-cloud {args[0]} did not stop within 45 s of SIGTERM: {log_tail(log)}"
                ) from None
