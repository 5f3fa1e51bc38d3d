"""Structured logging: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Renders the message plus every ``extra={...}`` field as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PerJobLines(logging.Filter):
    """Drops arq's two INFO lines per job (``→ job started``, ``← job finished``).

    A delivery job is one push's batch: on the everyday one-device send that is two log lines
    — and two writes to stderr — per push, more than every other line of the worker together,
    saying nothing the metrics and the deliveries' rows do not. arq's warnings and errors (a
    job that failed, expired, ran out of retries) and its other lines stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and record.msg.startswith(("%6.2fs → ", "%6.2fs ← "))
        )


def configure_logging(level: str) -> None:
    """Route the root logger (and uvicorn's, arq's) through the JSON formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "arq", "tortoise"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our own middleware writes one line per request; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("tortoise").setLevel(max(logging.getLevelName(level), logging.INFO))
    jobs = logging.getLogger("arq.worker")
    if level != "DEBUG" and not any(isinstance(f, PerJobLines) for f in jobs.filters):
        jobs.addFilter(PerJobLines())
