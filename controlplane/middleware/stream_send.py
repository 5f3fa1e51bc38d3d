"""The server's own ``send``, kept in the scope for responses that stream many small chunks.

Every middleware here wraps ``send`` to act on a response's *start* (its headers, its status, a
cookie, the request id) and passes each body chunk on untouched — one coroutine frame per layer
per chunk. A realtime stream writes a chunk per message to thousands of streams at once, and
that pass-through was a tenth of the fan-out's cost (``loadtests/realtime.py``: p50 61 ms with
them, 54 ms without, at 5,000 subscribers). So this middleware, outermost of ours, puts the
``send`` it was given in ``scope["brik.stream_send"]``: a streaming response sends its start
(and its end) through the ``send`` it got, so every layer sees them, and its body chunks through
this one, past layers that would only pass them on.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

STREAM_SEND = "brik.stream_send"


class StreamSendMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[STREAM_SEND] = send
        await self.app(scope, receive, send)
