"""One Redis pub/sub connection per API process, fanned out to every local realtime stream.

A stream does not hold a Redis connection: :meth:`RealtimeHub.subscribe` adds it to the
channel's local set, and the hub subscribes the process's one connection to the channel's
topic when the first local stream of that channel arrives (and unsubscribes when the last one
leaves). Each message is heard once per process and put in the queue of every local stream of
its channel. Five thousand phones on one channel are five thousand queues and one Redis
subscription, not five thousand Redis clients.

:meth:`subscribe` returns once Redis has confirmed the subscription, so a stream that then
reads the channel's history (``Last-Event-ID``) misses nothing between the two: a message
published meanwhile arrives both ways, and the stream drops the copy it has already sent.

When Redis goes away the hub does not pretend: every stream it feeds is ended (its client
reconnects with ``Last-Event-ID`` and resumes from the history once Redis is back), the
connection is dropped, and the next :meth:`subscribe` opens a new one — or fails at once with
``RedisError`` while Redis is still away, which the API answers with a 503. A connection that
stops answering without closing is noticed by a PING every :data:`PING_EVERY_SECONDS`. A stream
that does not read fast enough (its queue of :data:`QUEUE_SIZE` messages is full, or — for a
stream that took messages as they come with :meth:`Subscription.attach` — its writes pile up
behind a full socket) is ended too, rather than holding messages without bound; its client
resumes from the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from controlplane.core.connections import CONNECT_TIMEOUT_SECONDS, SOCKET_TIMEOUT_SECONDS
from controlplane.realtime.channels import Channel
from controlplane.realtime.messages import Message

logger = logging.getLogger("brik.realtime")

PING_EVERY_SECONDS = 5.0
SILENT_LIMIT_SECONDS = 3 * PING_EVERY_SECONDS
SUBSCRIBE_TIMEOUT_SECONDS = 5.0
QUEUE_SIZE = 1000

LOST_REDIS = "redis"
STOPPING = "stopping"
TOO_SLOW = "too_slow"
CLIENT_GONE = "client_gone"


class Subscription:
    """One local stream's place on a channel; :meth:`close` gives it back."""

    def __init__(self, hub: RealtimeHub, topic: str, queue_size: int) -> None:
        self.topic = topic
        # Why it was ended: LOST_REDIS, STOPPING, TOO_SLOW (the hub), CLIENT_GONE (its reader).
        self.ended: str | None = None
        self._hub = hub
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(queue_size)
        self._receiver: Callable[[Message], None] | None = None
        self._closed = False

    def attach(self, receiver: Callable[[Message], None]) -> list[Message]:
        """Hand each message to ``receiver`` as the hub hears it, instead of queueing it (no
        task wakes per message: :mod:`controlplane.api.eager_send`). Returns what was queued
        before. ``get`` still returns None at the end (or after its wait)."""
        self._receiver = receiver
        return self.ready()

    def deliver(self, message: Message) -> None:
        if self.ended is not None:
            return
        if self._receiver is not None:
            self._receiver(message)
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.end(TOO_SLOW)

    def end(self, reason: str) -> None:
        """Stop feeding it; its reader gets what was queued, then None."""
        if self.ended is None:
            self.ended = reason
            while True:  # wake the reader even if the queue is full
                try:
                    self._queue.put_nowait(None)
                    return
                except asyncio.QueueFull:
                    self._queue.get_nowait()

    async def get(self, at_most: float) -> Message | None:
        """The next message, or None after ``at_most`` seconds or once ended (see ``ended``)."""
        if self.ended is not None and self._queue.empty():
            return None
        try:
            # Not asyncio.wait_for: it wraps the wait in a task of its own, on every message
            # of every stream.
            async with asyncio.timeout(at_most):
                return await self._queue.get()
        except TimeoutError:
            return None

    def ready(self) -> list[Message]:
        """The messages already queued, taken without waiting (sent in one write)."""
        taken: list[Message] = []
        while not self._queue.empty():
            message = self._queue.get_nowait()
            if message is None:  # ended: the next get() says so
                break
            taken.append(message)
        return taken

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._forget(self)


class RealtimeHub:
    def __init__(
        self, redis_url: str, registry: CollectorRegistry, *, queue_size: int = QUEUE_SIZE
    ) -> None:
        self._redis_url = redis_url
        self._queue_size = queue_size
        self._topics: dict[str, set[Subscription]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._open = 0
        self._lost_logged = False
        self.draining = False
        self._streams = Gauge(
            "brik_realtime_connections",
            "Open realtime streams (GET /v1/realtime/channels/{channel}) on this process.",
            registry=registry,
        )
        self._channels = Gauge(
            "brik_realtime_channels",
            "Realtime channels this process is subscribed to in Redis.",
            registry=registry,
        )
        self._connected = Gauge(
            "brik_realtime_redis_connected",
            "1 while the process's realtime subscriber is connected to Redis.",
            registry=registry,
        )
        self._delivered = Counter(
            "brik_realtime_messages_delivered",
            "Realtime messages put on local streams (one per stream per message).",
            registry=registry,
        )

    @property
    def open_streams(self) -> int:
        return self._open

    async def subscribe(self, channel: Channel) -> Subscription:
        """A place on ``channel``, once Redis confirms the process is subscribed to it.

        Raises ``RedisError`` when Redis cannot be reached (nothing is kept)."""
        topic = channel.topic
        subscription = Subscription(self, topic, self._queue_size)
        self._topics.setdefault(topic, set()).add(subscription)
        self._open += 1
        self._streams.set(self._open)
        try:
            pubsub = await self._connection()
            confirmed = self._confirmed.get(topic)
            if confirmed is None:
                confirmed = self._confirmed[topic] = asyncio.Event()
                self._channels.set(len(self._confirmed))
                await pubsub.subscribe(topic)
            try:
                await asyncio.wait_for(confirmed.wait(), SUBSCRIBE_TIMEOUT_SECONDS)
            except TimeoutError:
                raise RedisError("Redis did not confirm the subscription in time") from None
            if subscription.ended == LOST_REDIS:
                raise RedisError("Redis went away while subscribing")
        except BaseException as exc:  # cancelled too (the client went): nothing is kept
            subscription.close()
            if isinstance(exc, OSError):
                raise RedisError(str(exc)) from exc
            raise
        return subscription

    def _forget(self, subscription: Subscription) -> None:
        self._open -= 1
        self._streams.set(self._open)
        subscriptions = self._topics.get(subscription.topic)
        if subscriptions is None:
            return
        subscriptions.discard(subscription)
        if not subscriptions:
            del self._topics[subscription.topic]
            if self._confirmed.pop(subscription.topic, None) is not None:
                self._channels.set(len(self._confirmed))
                pubsub = self._pubsub
                if pubsub is not None:
                    self._in_background(self._unsubscribe(pubsub, subscription.topic))

    async def _unsubscribe(self, pubsub: PubSub, topic: str) -> None:
        if topic in self._confirmed or pubsub is not self._pubsub:
            return  # a stream came back for it meanwhile, or that connection is gone
        with contextlib.suppress(RedisError, OSError):
            await pubsub.unsubscribe(topic)

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _connection(self) -> PubSub:
        async with self._lock:
            if self._pubsub is None:
                client = Redis.from_url(
                    self._redis_url,
                    socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    socket_timeout=SOCKET_TIMEOUT_SECONDS,
                )
                pubsub = client.pubsub()
                try:
                    await pubsub.connect()
                except BaseException:
                    await _close_quietly(pubsub, client)
                    raise
                self._client, self._pubsub = client, pubsub
                self._connected.set(1)
                if self._lost_logged:
                    logger.info("realtime: Redis is back; streams may open again")
                    self._lost_logged = False
                self._reader = asyncio.create_task(self._read(pubsub), name="brik-realtime-hub")
            return self._pubsub

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        try:
            while True:
                message = await pubsub.get_message(timeout=PING_EVERY_SECONDS)
                now = loop.time()
                if message is not None:
                    heard = now
                    self._dispatch(message)
                if now - heard > SILENT_LIMIT_SECONDS:
                    raise ConnectionError(f"no answer from Redis for {now - heard:.0f} s")
                if now - pinged >= PING_EVERY_SECONDS:
                    await pubsub.ping()
                    pinged = now
        except (RedisError, OSError) as exc:
            if not self._lost_logged:
                logger.warning(
                    "realtime: lost Redis (%s: %s); ended %d open streams (their clients "
                    "reconnect with Last-Event-ID), new ones get 503 until it is back",
                    type(exc).__name__, exc, self._open,
                )  # fmt: skip
                self._lost_logged = True
        finally:
            self._lose(pubsub)

    def _dispatch(self, message: dict[str, object]) -> None:
        kind = message["type"]
        channel = message.get("channel")
        topic = channel.decode() if isinstance(channel, bytes) else str(channel)
        if kind == "message":
            data = message["data"]
            try:
                assert isinstance(data, bytes)
                announced = Message.announced(data)
            except (AssertionError, ValueError):  # not published by messages.publish
                logger.warning("realtime: dropped a malformed message on %s", topic)
                return
            subscriptions = self._topics.get(topic, ())
            for subscription in subscriptions:
                subscription.deliver(announced)
            self._delivered.inc(len(subscriptions))
        elif kind == "subscribe":
            confirmed = self._confirmed.get(topic)
            if confirmed is not None:
                confirmed.set()

    def _lose(self, pubsub: PubSub) -> None:
        """The connection is gone: end every stream it fed, forget what it subscribed."""
        if self._pubsub is not pubsub:
            return
        client = self._client
        self._pubsub = self._client = None
        self._connected.set(0)
        for subscriptions in self._topics.values():
            for subscription in subscriptions:
                subscription.end(LOST_REDIS)
        for confirmed in self._confirmed.values():
            confirmed.set()  # wake subscribers waiting on it: they see LOST_REDIS
        self._confirmed.clear()
        self._channels.set(0)
        if client is not None:
            self._in_background(_close_quietly(pubsub, client))

    def drain(self) -> None:
        """End every stream now (the process is stopping; clients reconnect elsewhere)."""
        self.draining = True
        for subscriptions in self._topics.values():
            for subscription in subscriptions:
                subscription.end(STOPPING)

    async def close(self) -> None:
        self.drain()
        reader = self._reader
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self._pubsub is not None:
            self._lose(self._pubsub)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


async def _close_quietly(pubsub: PubSub, client: Redis) -> None:
    with contextlib.suppress(RedisError, OSError):
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    with contextlib.suppress(RedisError, OSError):
        await client.aclose()
