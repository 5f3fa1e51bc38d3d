"""Running a benchmark of ``loadtests/`` as documented, at a tiny size, so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.databases import configured_server_url
from tests.support.processes import clean_environment

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BenchmarkRun:
    figures: dict[str, Any]  # the results file it wrote
    stdout: str


def run_benchmark(
    module: str, *args: str, results_dir: Path, written: str, **env: str
) -> BenchmarkRun:
    """``python -m loadtests.<module> ARGS --results-dir results_dir`` on the test PostgreSQL
    server (``env``: more variables), once it exited 0; its figures are the one results file
    in ``results_dir`` matching the glob ``written``."""
    result = subprocess.run(
        [sys.executable, "-m", f"loadtests.{module}", *args, "--results-dir", str(results_dir)],
        cwd=ROOT, env=clean_environment(BRIK_BENCH_DATABASE_URL=configured_server_url(), **env),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [found] = results_dir.glob(written)
    return BenchmarkRun(json.loads(found.read_text()), result.stdout)
