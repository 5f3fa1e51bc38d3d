"""The embedded default (``brik-cloud dev``) runs on SQLite, so the database tests run there too.

Tortoise cannot switch dialects inside one process, so every test marked ``database`` runs again
in a child pytest pointed at SQLite, and this test fails with its report if any fails there.

The dashboard's browser tests are left out of the child: its pages run the very API operations
whose SQLite behaviour the API tests cover here, and 80 Chromium sessions on SQLite, beside
the main run on the same two cores, pushed the suite past CI's 15 minutes. So are the fault
drills (marked ``faults``), for the same reason (:data:`CHILD_MARKERS`).

The child is started as soon as collection is done, so it runs beside the rest of the suite
instead of after it: most tests spend their time waiting on sockets. It must start exactly once,
and under pytest-xdist every worker collects every test while only one runs this one, so the
child belongs to the process that sees the whole run (tests/conftest.py calls :func:`start`):

- without xdist, the session itself, from ``pytest_collection_finish``;
- with xdist, the controller, as soon as a worker reports that it collected this test
  (``pytest_xdist_node_collection_finished``). The controller gives every worker the run's
  folder (``pytest_configure_node``), and the worker that runs this test waits there.

The run writes its output and, once the child has exited, its exit status into that folder, so
whichever process runs this test reads the result the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_ID = "tests/test_sqlite_dialect.py::test_database_tests_pass_on_sqlite"
TIMEOUT_SECONDS = 900
# How an xdist worker learns the folder of the run its controller started.
WORKERINPUT_KEY = "brik_sqlite_dialect_folder"
# The child's own xdist workers: SQLite tests wait on sockets as the main run's do, and the
# child would otherwise be the last thing running (see docs/architecture.md, "Tests").
CHILD_WORKERS = 2
# Left out: what needs PostgreSQL itself, and the fault drills (a worker killed, Redis
# restarted, a brownout …), whose queries are those of the plain tests the child runs — their
# subject is processes and Redis, and they were a quarter of the child's time.
CHILD_MARKERS = "database and not postgres_only and not faults"


class DialectRun:
    """The child pytest on SQLite. Its output goes to a file (a pipe could fill and stall it);
    a thread writes its exit status next to it once it has exited (or been killed at the
    timeout)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
        # Only the scheme matters: each child session makes its own SQLite file in its temp dir.
        env["BRIK_TEST_DATABASE_URL"] = f"sqlite://{folder / 'dialect.sqlite3'}"
        # Each child session starts its own redis-server unless told which Redis to use.
        env.pop("BRIK_TEST_REDIS_URL", None)
        if "BRIK_TEST_SQLITE_REDIS_URL" in os.environ:
            env["BRIK_TEST_REDIS_URL"] = os.environ["BRIK_TEST_SQLITE_REDIS_URL"]
        self._output = output_path(folder).open("w")
        # fmt: off
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-m", CHILD_MARKERS, "-q",
             "-p", "no:cacheprovider", "-n", str(CHILD_WORKERS), str(ROOT / "tests"),
             "--ignore", str(ROOT / "tests" / "dashboard")],
            cwd=ROOT, env=env, stdout=self._output, stderr=subprocess.STDOUT,
        )
        # fmt: on
        self._waiter = threading.Thread(target=self._record_exit, daemon=True)
        self._waiter.start()

    def _record_exit(self) -> None:
        try:
            code = self.process.wait(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._kill()
            self._output.write(f"\nkilled: still running after {TIMEOUT_SECONDS} s\n")
            code = self.process.returncode
        self._output.close()
        written = status_path(self.folder).with_suffix(".tmp")
        written.write_text(str(code))
        written.replace(status_path(self.folder))  # readers never see half a status

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Kill the child if it still runs (a session that ended early); keep its folder only
        when it failed, for the full output the test's report names."""
        self._kill()
        self._waiter.join()
        if read_status(self.folder) == 0:
            shutil.rmtree(self.folder, ignore_errors=True)


def output_path(folder: Path) -> Path:
    return folder / "output.txt"


def status_path(folder: Path) -> Path:
    return folder / "status"


def read_status(folder: Path) -> int | None:
    try:
        return int(status_path(folder).read_text())
    except FileNotFoundError:
        return None


_folder: Path | None = None
_run: DialectRun | None = None


def planned_folder() -> Path:
    """This process's folder for the run, made on first use (the run itself may never start)."""
    global _folder
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="brik-sqlite-dialect-"))
    return _folder


def start() -> None:
    global _run
    if _run is None:
        _run = DialectRun(planned_folder())


def stop() -> None:
    """At the end of the session of the process that owns the run."""
    if _run is not None:
        _run.stop()
    elif _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)


def wait_for_result(folder: Path) -> tuple[int, str]:
    # The owner kills the child at TIMEOUT_SECONDS; the margin covers the child's start.
    deadline = time.monotonic() + TIMEOUT_SECONDS + 60
    while (code := read_status(folder)) is None:
        assert time.monotonic() < deadline, f"the SQLite run never ended; see {folder}"
        time.sleep(0.2)
    return code, output_path(folder).read_text(errors="replace")


def test_database_tests_pass_on_sqlite(request: pytest.FixtureRequest) -> None:
    workerinput = getattr(request.config, "workerinput", {})
    if WORKERINPUT_KEY in workerinput:
        folder = Path(workerinput[WORKERINPUT_KEY])  # the controller started the run
    else:
        start()  # already running when collection started it
        folder = planned_folder()
    code, output = wait_for_result(folder)
    report = output[-10000:]
    assert code == 0, f"SQLite run failed (full output: {output_path(folder)}):\n{report}"
    last = output.strip().splitlines()[-1]
    assert " passed" in last, report
