"""Serving a fake's Starlette app on a free local port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from abc import ABC, abstractmethod

import uvicorn
from starlette.applications import Starlette

from controlplane.serving import QuietSignalServer, wait_until_started


class LocalServer(ABC):
    """Mixin: ``await start()`` serves :meth:`app` and sets :attr:`base_url`; ``stop()``."""

    base_url: str = ""
    _server: QuietSignalServer | None = None
    _task: asyncio.Task[None] | None = None

    @abstractmethod
    def app(self) -> Starlette:
        """The fake's routes."""

    async def start(self, host: str = "127.0.0.1") -> None:
        sock = socket.socket()
        sock.bind((host, 0))
        config = uvicorn.Config(self.app(), log_config=None, lifespan="off", access_log=False)
        self._server = QuietSignalServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        if not await wait_until_started(self._server, self._task):
            self._task.result()
        self.base_url = f"http://{host}:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = None
