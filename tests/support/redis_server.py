"""A redis-server of the test's own that it may kill and start again on the same port.

The session's Redis (the ``redis_url`` fixture) is shared by every test; a test about a Redis
outage needs one it can take away. ``RestartableRedis`` runs ``redis-server`` in its own folder
on a fixed free port, so a client configured with :attr:`url` reconnects to the new process.
Snapshots are written only when the test asks (:meth:`save`), and a restart loads the last one
— "Redis came back from its dump", with whatever it held at that moment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from controlplane.embedded_redis import find_redis_server
from tests.support.processes import free_port


class RestartableRedis:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # fmt: off
        self.process = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
             "--dbfilename", "dump.rdb", "--logfile", str(self.workdir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # fmt: on
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
            time.sleep(0.02)

    def save(self) -> None:
        """Write the dump a restart will load (SAVE, synchronously)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"SAVE\r\n")
            assert sock.recv(64).startswith(b"+OK")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no snapshot; clients see their connections drop."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> RestartableRedis:
        self.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.kill()
