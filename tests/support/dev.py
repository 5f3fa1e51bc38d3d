"""``brik-cloud dev`` as a user runs it: a real process in a directory of the test's own."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import brik_cloud_command, clean_environment, free_port

STARTUP_LIMIT_SECONDS = 90


def start_dev(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    with (workdir / "dev.log").open("ab") as log:
        return subprocess.Popen(
            [*brik_cloud_command(), "dev", "--port", str(port)],
            cwd=workdir,
            env=clean_environment(),
            stdout=subprocess.PIPE,
            stderr=log,
        )


def wait_until_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "brik-cloud dev exited during start-up"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("brik-cloud dev did not become ready")


def stop(process: subprocess.Popen[bytes]) -> bytes:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    return out


@dataclass
class DevInstance:
    workdir: Path
    url: str
    process: subprocess.Popen[bytes]

    @property
    def data(self) -> dict[str, Any]:
        """What ``dev`` wrote to ``.brik/dev.json``."""
        return dict(json.loads((self.workdir / ".brik" / "dev.json").read_text()))


@contextlib.contextmanager
def running_dev(workdir: Path) -> Iterator[DevInstance]:
    """``brik-cloud dev`` started in ``workdir``, ready; stopped with Ctrl-C afterwards."""
    port = free_port()
    process = start_dev(workdir, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(process, url)
        yield DevInstance(workdir, url, process)
    finally:
        if process.poll() is None:
            stop(process)
