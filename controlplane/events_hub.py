"""One Redis subscriber per API process, shared by every open push-event stream.

Workers publish a notice on a push's channel (:func:`controlplane.core.keyspace.events_channel`)
whenever its deliveries change; ``GET /v1/pushes/{id}/events`` re-reads the push when one
arrives. Each stream once held a pub/sub connection of its own: two thousand streams were two
thousand Redis clients, and a Redis at ``maxclients`` took every API process's readiness down
with it. Here one connection per process subscribes to the pattern of every push channel and
wakes the streams listening for the push a notice names. A pattern rather than a subscription
per push: nothing to subscribe before a stream may start (so no notice slips between the
subscription and the first read), and one pattern to restore after a reconnect. Its cost is
that every API process hears every notice — one short message per delivery job, not per device.

Redis may go away under it. Notices are only a shortcut: a stream re-reads the database every
few seconds regardless (``BRIK_EVENT_STREAM_POLL_SECONDS``), so while Redis is away streams go
on at that pace and none of them sees an error. The subscriber reconnects with backoff (up to
every :data:`MAX_RECONNECT_SECONDS`), says once at WARNING that it lost Redis and once at INFO
that it is back, and then wakes every stream: notices sent meanwhile were lost. A connection
that stops answering without closing (a network partition) is noticed by a PING every
:data:`PING_EVERY_SECONDS` that gets no answer.

The hub also counts the streams, so that an API process holds a bounded number of them: at most
``BRIK_EVENT_STREAMS_PER_PROJECT`` per project and ``BRIK_EVENT_STREAMS_PER_PROCESS`` in all.
:meth:`EventsHub.listen` refuses beyond either with :class:`TooManyStreams`. The counts are per
process, like the streams' resources; behind a load balancer a project may hold the per-project
number on each process.

::

    hub = EventsHub(redis_url, registry, per_project=100, per_process=1000)
    listener = hub.listen(project_id, push_id)   # TooManyStreams when full
    try:
        notified = await listener.wait(5.0)       # a notice, or the timeout (False)
    finally:
        listener.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from controlplane.core.connections import CONNECT_TIMEOUT_SECONDS, SOCKET_TIMEOUT_SECONDS
from controlplane.core.keyspace import events_channel

logger = logging.getLogger("brik.events")

FIRST_RECONNECT_SECONDS = 0.2
MAX_RECONNECT_SECONDS = 5.0
PING_EVERY_SECONDS = 5.0
SILENT_LIMIT_SECONDS = 3 * PING_EVERY_SECONDS  # no answer to a PING this long: reconnect

_CHANNEL_PREFIX = events_channel("")


class TooManyStreams(Exception):
    """The project, or the whole process, holds as many streams as it may."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{limit} streams per {scope}")
        self.scope = scope  # "project" or "process"
        self.limit = limit


class Listener:
    """One open stream's interest in one push; :meth:`close` gives its place back."""

    def __init__(self, hub: EventsHub, project_id: str, push_id: str) -> None:
        self.project_id = project_id
        self.push_id = push_id
        self._hub = hub
        self._notice = asyncio.Event()
        self._closed = False

    def notify(self) -> None:
        self._notice.set()

    @property
    def ending(self) -> bool:
        """The process is shutting down: the stream should end (its client reconnects)."""
        return self._hub.draining

    async def wait(self, at_most: float) -> bool:
        """Until a notice for this push arrives (True) or ``at_most`` seconds pass (False).

        A notice that arrived since the last wait counts at once."""
        if not self._notice.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._notice.wait(), at_most)
        notified = self._notice.is_set()
        self._notice.clear()
        return notified

    def consume(self) -> None:
        """Forget notices that arrived so far: the read about to be made covers them."""
        self._notice.clear()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._forget(self)


class EventsHub:
    def __init__(
        self, redis_url: str, registry: CollectorRegistry, *, per_project: int, per_process: int
    ) -> None:
        self._redis_url = redis_url
        self._per_project = per_project
        self._per_process = per_process
        self._listeners: dict[str, set[Listener]] = {}
        self._by_project: Counter[str] = Counter()
        self._open = 0
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self.draining = False
        self._streams_gauge = Gauge(
            "brik_event_streams", "Open push-event streams (GET /v1/pushes/{id}/events).",
            registry=registry,
        )  # fmt: skip
        self._connected_gauge = Gauge(
            "brik_event_streams_redis_connected",
            "1 while the process's push-event subscriber is connected to Redis.",
            registry=registry,
        )

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def open_streams(self) -> int:
        return self._open

    def listen(self, project_id: str, push_id: str) -> Listener:
        """Take a stream's place (:class:`TooManyStreams` when there is none) and listen."""
        if self._by_project[project_id] >= self._per_project:
            raise TooManyStreams("project", self._per_project)
        if self._open >= self._per_process:
            raise TooManyStreams("process", self._per_process)
        listener = Listener(self, project_id, push_id)
        self._listeners.setdefault(push_id, set()).add(listener)
        self._by_project[project_id] += 1
        self._open += 1
        self._streams_gauge.set(self._open)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._subscribe(), name="brik-events-hub")
        return listener

    def _forget(self, listener: Listener) -> None:
        listeners = self._listeners.get(listener.push_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[listener.push_id]
        self._by_project[listener.project_id] -= 1
        if self._by_project[listener.project_id] <= 0:
            del self._by_project[listener.project_id]
        self._open -= 1
        self._streams_gauge.set(self._open)

    def _wake(self, push_id: str) -> None:
        for listener in self._listeners.get(push_id, ()):
            listener.notify()

    def _wake_all(self) -> None:
        for listeners in self._listeners.values():
            for listener in listeners:
                listener.notify()

    def drain(self) -> None:
        """End every stream soon (the process is stopping; clients reconnect elsewhere)."""
        self.draining = True
        self._wake_all()

    async def close(self) -> None:
        self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        self._connected_gauge.set(1 if connected else 0)

    async def _subscribe(self) -> None:
        """Keep one pattern subscription alive for the life of the process."""
        delay = FIRST_RECONNECT_SECONDS
        lost = False
        while True:
            try:
                await self._listen_until_lost(was_lost=lost)
            except (RedisError, OSError) as exc:
                if self._connected or not lost:
                    logger.warning(
                        "push events: Redis unreachable (%s: %s); open streams re-read the "
                        "database every few seconds until it is back", type(exc).__name__, exc,
                    )  # fmt: skip
                if self._connected:
                    delay = FIRST_RECONNECT_SECONDS
                lost = True
                self._set_connected(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_SECONDS)

    async def _listen_until_lost(self, *, was_lost: bool) -> None:
        client = Redis.from_url(
            self._redis_url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(events_channel("*"))
            self._set_connected(True)
            if was_lost:
                logger.info("push events: Redis is back; notices resume")
            self._wake_all()  # whatever was published while we were away is lost
            loop = asyncio.get_running_loop()
            heard = pinged = loop.time()
            while True:
                message = await pubsub.get_message(timeout=PING_EVERY_SECONDS)
                now = loop.time()
                if message is not None:
                    heard = now
                    if message["type"] == "pmessage":
                        channel = message["channel"].decode()
                        self._wake(channel.removeprefix(_CHANNEL_PREFIX))
                if now - heard > SILENT_LIMIT_SECONDS:
                    raise ConnectionError(f"no answer from Redis for {now - heard:.0f} s")
                if now - pinged >= PING_EVERY_SECONDS:
                    await pubsub.ping()  # its PONG arrives as a message: "heard"
                    pinged = now
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
