"""Log lines: one JSON object each, and arq's per-job chatter left out unless debugging."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from controlplane.logs import PerJobLines, configure_logging


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    jobs = logging.getLogger("arq.worker")
    filters = jobs.filters[:]
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    jobs.filters[:] = filters


def test_arq_s_two_lines_per_job_are_left_out_and_its_warnings_kept(
    restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO")
    arq = logging.getLogger("arq.worker")
    arq.info("%6.2fs → %s(%s)%s", 0.01, "deliver:psh_1:accept:0:deliver_batch", "…", "")
    arq.info("%6.2fs ← %s ● %s", 0.02, "deliver:psh_1:accept:0:deliver_batch", "{}")
    arq.info("Starting worker for %d functions: %s", 3, "deliver_batch")
    arq.warning("%6.2fs ! %s max retries %d exceeded", 1.0, "deliver:psh_2", 8)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 2
    assert lines[0]["message"].startswith("Starting worker")
    assert "max retries 8 exceeded" in lines[1]["message"]
    # Once only, however often logging is configured; all of them when debugging.
    configure_logging("INFO")
    assert sum(isinstance(f, PerJobLines) for f in arq.filters) == 1


def test_debugging_keeps_every_line(restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("arq.worker").filters[:] = []
    configure_logging("DEBUG")
    logging.getLogger("arq.worker").info("%6.2fs → %s(%s)%s", 0.01, "deliver:psh_1", "…", "")
    assert "deliver:psh_1" in capsys.readouterr().err
