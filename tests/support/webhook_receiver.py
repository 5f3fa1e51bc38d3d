"""A webhook receiver for tests: a small Starlette app, served over real HTTP like any app here
(``tests/support/servers.py``), that records every request and answers as it is told.

Answers are scripted in order (:meth:`WebhookReceiver.answer`): a status, a delay before
answering, a body, headers; once the script runs out, 200. A request is recorded when it
arrives, before its answer, so a test can see one still being answered (and kill the worker
waiting on it). :meth:`hold` keeps every answer back until :meth:`release`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay: float = 0.0
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    arrived: float
    answered: int | None = None  # the status sent back (None: not answered yet)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers["brik-event-id"]

    @property
    def event_type(self) -> str:
        return self.headers["brik-event-type"]


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: deque[Reply] = deque()
        self._released = asyncio.Event()
        self._released.set()
        self._arrived = asyncio.Condition()
        self.app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST"])])

    def answer(self, *replies: Reply | int) -> None:
        """Answer the next requests so, in order (an int is a status)."""
        self._script.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    def hold(self) -> None:
        """Keep every answer back until :meth:`release` (requests are recorded on arrival)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def _receive(self, request: Request) -> Response:
        record = Received(
            path=request.url.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.body(),
            arrived=time.monotonic(),
        )
        reply = self._script.popleft() if self._script else Reply()
        async with self._arrived:
            self.received.append(record)
            self._arrived.notify_all()
        await self._released.wait()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        record.answered = reply.status
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    async def wait_for(self, count: int, within: float = 20.0, path: str | None = None) -> (
        list[Received]
    ):  # fmt: skip
        """The requests received (to ``path``, if given) once there are ``count`` of them."""

        def matching() -> list[Received]:
            return [r for r in self.received if path is None or r.path == path]

        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(matching()) >= count)
        return matching()

    def succeeded(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        return [r for r in self.received if r.answered is not None and 200 <= r.answered < 300]
