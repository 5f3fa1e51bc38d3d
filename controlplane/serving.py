"""Running the API under uvicorn inside a host that owns the event loop and the signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from collections.abc import Generator

import uvicorn

# Allocations between collections of the youngest generation, and collections of each
# generation between collections of the next (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 50)


def collect_garbage_less_often() -> None:
    """Let the API process allocate more between garbage collections.

    One realtime message is thousands of short-lived objects (a chunk and a send per open
    stream). With CPython's defaults, fanning one message out to
    5,000 streams set off collections of the older generations mid-way, each walking every
    object the open streams hold: ``loadtests/realtime.py`` measured a p99 of 680 ms, against
    about 200 ms with these thresholds (docs/benchmarks.md). Only objects in reference
    cycles wait longer to be freed; the rest go as before, when their last reference does.
    """
    gc.set_threshold(*GC_THRESHOLDS)


class QuietSignalServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to its host (``brik-cloud dev``, tests).

    uvicorn's own capture re-raises the signal after serving, which would interrupt the
    host's orderly shutdown of whatever else shares the process (the in-process worker).
    Stop it by setting ``should_exit``.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn lets every open response finish before it stops the app, and a stream of
        # server-sent events lasts until its push is final: the app's ``drain`` ends them now
        # (their clients reconnect, to another process).
        drain = getattr(getattr(self.config.app, "state", None), "drain", None)
        if callable(drain):
            drain()
        await super().shutdown(sockets)


def stop_on_signals(server: uvicorn.Server) -> None:
    """Let SIGINT and SIGTERM stop ``server`` gracefully (in-flight requests finish)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, setattr, server, "should_exit", True)


async def serve_until_signalled(server: QuietSignalServer) -> None:
    """Serve until SIGINT/SIGTERM, then exit normally (status 0) after a graceful shutdown."""
    collect_garbage_less_often()
    stop_on_signals(server)
    await server.serve()


async def wait_until_started(server: uvicorn.Server, serving: asyncio.Task[None]) -> bool:
    """Wait until ``server`` accepts connections (True) or its ``serving`` task ends (False)."""
    # uvicorn exposes readiness only as a flag.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return server.started
