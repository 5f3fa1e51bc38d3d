"""Running the API under uvicorn inside a host that owns the event loop and the signals."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn


class QuietSignalServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to its host (``brik-cloud dev``, tests).

    uvicorn's own capture re-raises the signal after serving, which would interrupt the
    host's orderly shutdown of whatever else shares the process (the in-process worker).
    Stop it by setting ``should_exit``.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
