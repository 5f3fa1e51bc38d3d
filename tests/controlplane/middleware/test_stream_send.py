"""A streaming response's chunks can go past the layers that only act on a response's start."""

from __future__ import annotations

from typing import ClassVar

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.middleware.stream_send import STREAM_SEND, StreamSendMiddleware


class Watching:
    """A layer like ours: it sees what passes through the ``send`` it hands on."""

    seen: ClassVar[list[str]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watched(message: Message) -> None:
            Watching.seen.append(message["type"])
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-watched", b"yes")]
            await send(message)

        await self.app(scope, receive, watched)


class Streaming:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunks = scope[STREAM_SEND]
        for n in range(3):
            await chunks({"type": "http.response.body", "body": b"%d\n" % n, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_the_start_and_end_pass_every_layer_and_the_chunks_go_past_them() -> None:
    app = Starlette(
        routes=[Route("/stream", Streaming())],
        middleware=[Middleware(StreamSendMiddleware), Middleware(Watching)],
    )
    Watching.seen = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/stream")
    assert answer.text == "0\n1\n2\n"
    assert answer.headers["x-watched"] == "yes"  # the start went through the layer
    assert Watching.seen == ["http.response.start", "http.response.body"]  # and the end
