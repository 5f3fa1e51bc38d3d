"""The embedded default (``brik-cloud dev``) runs on SQLite, so the database tests run there too.

Tortoise cannot switch dialects inside one process, so every test marked ``database`` runs again
in a child pytest pointed at SQLite, and this test fails with its report if any fails there.

The child is started as soon as collection is done (``pytest_collection_finish`` in
tests/conftest.py calls :func:`start`), so it runs beside the rest of the suite instead of after
it: most tests spend their time waiting on sockets, and the two runs overlap well on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_ID = "tests/test_sqlite_dialect.py::test_database_tests_pass_on_sqlite"
TIMEOUT_SECONDS = 900


class DialectRun:
    """The child pytest on SQLite, its output kept in a file (a pipe could fill and stall it)."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="brik-sqlite-dialect-"))
        env = dict(os.environ)
        env["BRIK_TEST_DATABASE_URL"] = f"sqlite://{self.workdir / 'dialect.sqlite3'}"
        # The child starts its own redis-server unless told which Redis to use.
        env.pop("BRIK_TEST_REDIS_URL", None)
        if "BRIK_TEST_SQLITE_REDIS_URL" in os.environ:
            env["BRIK_TEST_REDIS_URL"] = os.environ["BRIK_TEST_SQLITE_REDIS_URL"]
        self.output_path = self.workdir / "output.txt"
        self._output = self.output_path.open("w")
        # fmt: off
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-m", "database", "-q", "-p", "no:cacheprovider",
             "-o", "addopts=", str(ROOT / "tests")],
            cwd=ROOT, env=env, stdout=self._output, stderr=subprocess.STDOUT,
        )
        # fmt: on

    def wait(self) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout=TIMEOUT_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._output.close()
        return code, self.output_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._output.close()


_run: DialectRun | None = None


def start() -> None:
    global _run
    if _run is None:
        _run = DialectRun()


def stop() -> None:
    if _run is not None:
        _run.stop()


def test_database_tests_pass_on_sqlite() -> None:
    start()  # already running when collection started it
    assert _run is not None
    code, output = _run.wait()
    report = output[-10000:]
    assert code == 0, f"SQLite run failed:\n{report}"
    last = output.strip().splitlines()[-1]
    assert " passed" in last, report
