"""Server-sent events for ``GET /v1/pushes/{id}/events``: the push on every change, until final.

The stream is the database read again, not a relay of messages: it sends the push as it is now
(``event: push``), and sends it again whenever a worker's notice says its deliveries changed —
and every ``BRIK_EVENT_STREAM_POLL_SECONDS`` regardless, since some changes come without a
notice (a cancel, a Redis outage). So a stream needs Redis for nothing: while Redis is away it
goes on at the polling pace, and its notices come back with Redis
(:mod:`controlplane.events_hub`, which also holds the one Redis connection all of a process's
streams share and bounds how many there are).

How a stream ends:

- ``event: end`` with ``data: {}`` once the push is final (``completed`` or ``canceled``; the
  ``push`` event just before says which) — the client stops;
- ``event: end`` with ``data: {"reason": "deleted"}`` when the push is gone (its project was
  deleted) — the client stops;
- closed without ``end`` after ``BRIK_EVENT_STREAM_MAX_SECONDS`` (a push scheduled for next
  month does not hold a connection until then), when the process is stopping, or when the
  database is away — the client reconnects, and the new stream starts with the push as it is
  then, so nothing is missed.

Refused with 429 ``too_many_streams`` beyond ``BRIK_EVENT_STREAMS_PER_PROJECT`` streams of one
project or ``BRIK_EVENT_STREAMS_PER_PROCESS`` in all on one API process.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from controlplane.errors import DATABASE_OUTAGES, RateLimited
from controlplane.events_hub import EventsHub, Listener, TooManyStreams
from controlplane.settings import Settings

logger = logging.getLogger("brik.events")

# Notices arriving this close together are answered with one read: a large fan-out publishes
# one per worker job, and each listening stream would otherwise re-read for every one.
COALESCE_SECONDS = 0.2
RETRY_AFTER_SECONDS = 10  # on 429: how soon another stream may have ended
DELETED = json.dumps({"reason": "deleted"})


@dataclass(frozen=True)
class Snapshot:
    """The push as a stream sends it: the ``push`` event's JSON, and whether it is final."""

    data: str
    final: bool


Read = Callable[[str], Awaitable[Snapshot | None]]  # None: the push is gone


def open_stream(
    hub: EventsHub, settings: Settings, project_id: str, push_id: str, read: Read
) -> StreamingResponse:
    """The stream's response, its place taken now (429 ``too_many_streams`` when full)."""
    try:
        listener = hub.listen(project_id, push_id)
    except TooManyStreams as exc:
        raise RateLimited(
            f"Too many open event streams: at most {exc.limit} per {exc.scope} on this API "
            "process. Close one (or follow the push with GET /v1/pushes/{id}) and try again.",
            code="too_many_streams",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    return EventStreamResponse(_events(listener, settings, read), listener.close)


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` answer that gives its stream's place back (``on_close``) however
    it ends — even if it never starts."""

    def __init__(self, body: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _events(listener: Listener, settings: Settings, read: Read) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.event_stream_max_seconds
    poll = settings.event_stream_poll_seconds
    last = ""
    written = loop.time()
    try:
        while True:
            try:
                snapshot = await read(listener.push_id)
            except DATABASE_OUTAGES as exc:
                logger.warning(
                    "event stream of push %s closed: the database is unavailable (%s: %s)",
                    listener.push_id, type(exc).__name__, exc,
                )  # fmt: skip
                return  # the client reconnects, and hears 503 until the database is back
            if snapshot is None:
                yield f"event: end\ndata: {DELETED}\n\n"
                return
            if snapshot.data != last:
                yield f"event: push\ndata: {snapshot.data}\n\n"
                last, written = snapshot.data, loop.time()
            if snapshot.final:
                yield "event: end\ndata: {}\n\n"
                return
            remaining = deadline - loop.time()
            if remaining <= 0 or listener.ending:
                return  # no `end`: the client opens a new stream
            notified = await listener.wait(min(poll, remaining))
            if listener.ending:
                return
            if notified:
                await asyncio.sleep(COALESCE_SECONDS)
                listener.consume()
            if loop.time() - written >= poll:
                yield ": keep-alive\n\n"
                written = loop.time()
    finally:
        listener.close()
