"""How many sends a worker may have outstanding: sent to a provider, result not yet recorded.

That number bounds the only duplicates the pipeline can produce (sends whose worker died before
recording them), so it is enforced per worker process, across all its jobs, from the moment a
send starts until its result is committed. A job reserves a whole chunk at once — never part of
one — so concurrent jobs cannot deadlock holding partial reservations.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class InFlightBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._available = limit
        self._changed = asyncio.Condition()

    @property
    def in_use(self) -> int:
        return self.limit - self._available

    @asynccontextmanager
    async def reserve(self, count: int) -> AsyncIterator[None]:
        if not 0 < count <= self.limit:
            raise ValueError(f"cannot reserve {count} of {self.limit}")
        async with self._changed:
            await self._changed.wait_for(lambda: self._available >= count)
            self._available -= count
        try:
            yield
        finally:
            async with self._changed:
                self._available += count
                self._changed.notify_all()
