"""The embedded default (``brik-cloud dev``) runs on SQLite, so the database tests run there too.

Tortoise cannot switch dialects inside one process, so this runs every test marked
``database`` again in a child pytest pointed at SQLite, and fails with its report if any fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_database_tests_pass_on_sqlite(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["BRIK_TEST_DATABASE_URL"] = f"sqlite://{tmp_path / 'dialect.sqlite3'}"
    # The child starts its own redis-server unless told which Redis to use.
    env.pop("BRIK_TEST_REDIS_URL", None)
    if "BRIK_TEST_SQLITE_REDIS_URL" in os.environ:
        env["BRIK_TEST_REDIS_URL"] = os.environ["BRIK_TEST_SQLITE_REDIS_URL"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "database",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            str(ROOT / "tests"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"SQLite run failed:\n{report}"
    assert " passed" in result.stdout.splitlines()[-1], report
