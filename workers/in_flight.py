"""How many sends a worker may have outstanding: sent to a provider, result not yet recorded.

That number bounds the only duplicates the pipeline can produce (sends whose worker died before
recording them), so it is enforced per worker process, across all its jobs, from the moment a
send starts until its result is committed. A job reserves a whole chunk at once — never part of
one — so concurrent jobs cannot deadlock holding partial reservations, and waiting jobs are
served in arrival order.

:meth:`InFlightBudget.run` runs a chunk's work to completion even when the job awaiting it is
cancelled (arq's job timeout, a shutdown): a send that started is always recorded, so a
cancellation never turns into an unrecorded send that the reconciler would send again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class InFlightBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._available = limit
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def in_use(self) -> int:
        return self.limit - self._available

    async def acquire(self, count: int) -> None:
        """Wait until ``count`` of the budget is free, then take it (first come, first served)."""
        if not 0 < count <= self.limit:
            raise ValueError(f"cannot reserve {count} of {self.limit}")
        if not self._waiting and self._available >= count:
            self._available -= count
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (count, granted)
        self._waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(count)  # granted in the same instant it was cancelled
            else:
                self._waiting.remove(entry)
                self._grant()
            raise

    def release(self, count: int) -> None:
        self._available += count
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0][0] <= self._available:
            count, granted = self._waiting.popleft()
            self._available -= count
            granted.set_result(None)

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until nothing is in flight (a worker shutting down); False if time ran out."""
        try:
            await asyncio.wait_for(self.acquire(self.limit), seconds)
        except TimeoutError:
            return False
        self.release(self.limit)
        return True

    async def run(self, count: int, work: Callable[[], Awaitable[T]]) -> T:
        """``work()`` holding ``count`` of the budget, finished even if the caller is cancelled."""
        await self.acquire(count)
        task = asyncio.ensure_future(work())
        abandoned = False

        def finished(done: asyncio.Future[T]) -> None:
            self.release(count)
            failure = None if done.cancelled() else done.exception()
            if abandoned and failure is not None:  # nobody is left to raise it to
                log.error("in-flight work failed after its job was cancelled", exc_info=failure)

        task.add_done_callback(finished)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            abandoned = not task.done()
            raise
