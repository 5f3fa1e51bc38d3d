"""Writing to a streaming response from plain code, without a task per write.

A realtime message goes to thousands of open streams at once. Waking a task per stream to call
the ASGI ``send`` cost each stream a task switch per message, and a fan-out to 5,000 streams
took longer than the 100 ms budget (docs/benchmarks.md). :class:`EagerSender` instead runs the
``send`` coroutine right away, in the caller: with uvicorn a body chunk goes straight to the
socket's transport and the coroutine finishes without ever waiting, so one message to 5,000
streams is 5,000 function calls. This is what Python 3.12's eager tasks do, for one coroutine.

When a ``send`` does have to wait (the client reads slower than the stream writes: uvicorn
pauses until the socket drains), it goes on in a task of its own, and later writes queue
behind it in order. ``give_up`` is called when more than ``max_waiting`` writes queue (the
reader is not keeping up: end the stream rather than buffer without bound) or a send fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.types import Send


class EagerSender:
    """Body chunks of one streaming response, written in order, each as soon as it can go."""

    def __init__(self, send: Send, *, max_waiting: int, give_up: Callable[[], None]) -> None:
        self._send = send
        self._max_waiting = max_waiting
        self._give_up = give_up
        self._busy: asyncio.Future[Any] | None = None
        self._waiting: list[bytes] = []
        self.failed: BaseException | None = None  # what a send raised (the stream is over)

    def write(self, chunk: bytes) -> None:
        """Send ``chunk`` now, or after the writes still under way."""
        if self.failed is not None:
            return
        if self._busy is not None:
            self._waiting.append(chunk)
            if len(self._waiting) > self._max_waiting:
                self._give_up()
            return
        self._start(chunk)

    async def flush(self) -> None:
        """Wait until every chunk written so far has gone to the server."""
        while self._busy is not None:
            await asyncio.wait({self._busy})  # how it ended is in ``failed``

    def _start(self, chunk: bytes) -> None:
        running = self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not isinstance(running, Coroutine):  # an awaitable of another kind: a task runs it
            self._wait_for(asyncio.ensure_future(running))
            return
        try:
            awaited = running.send(None)
        except StopIteration:
            return  # the usual case: written without waiting
        except BaseException as exc:  # kept: the stream ends on it
            self.failed = exc
            self._give_up()
            return
        self._wait_for(asyncio.ensure_future(_finish(running, awaited)))

    def _wait_for(self, busy: asyncio.Future[Any]) -> None:
        self._busy = busy
        busy.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._busy = None
        if task.cancelled():
            self.failed = asyncio.CancelledError()
        elif (exc := task.exception()) is not None:
            self.failed = exc
        if self.failed is not None:
            self._waiting.clear()
            self._give_up()
            return
        if self._waiting:
            chunk = b"".join(self._waiting)
            self._waiting.clear()
            self._start(chunk)


async def _finish(running: Coroutine[Any, Any, Any], awaited: object) -> None:
    """Carry on a coroutine that was started by hand and stopped at ``awaited`` (a future, or
    None for a bare yield), the way a task would have: resume it when what it waits for is
    done, throwing in what that raised."""
    while True:
        try:
            if awaited is None:
                await asyncio.sleep(0)
            else:
                # Taken from the coroutine, as a task takes it: a future it yields is marked
                # as waited on, and must be unmarked before it is awaited again.
                awaited._asyncio_future_blocking = False  # type: ignore[attr-defined]
                await awaited  # type: ignore[misc]
        except GeneratorExit:  # this coroutine is being closed: close the one it carries
            running.close()
            raise
        except BaseException as exc:  # handed on, as a task would
            try:
                awaited = running.throw(exc)
            except StopIteration:
                return
            continue
        try:
            awaited = running.send(None)
        except StopIteration:
            return
