"""``brik.events``: report analytics events, batched.

::

    brik.events.track("widget.impression", widget="OrderWidget", user_id="u_42", platform="ios")
    brik.events.track("custom.checkout_started", properties={"cart_items": 3})
    brik.events.flush()  # before the process ends; closing the client flushes too

:meth:`Events.track` only buffers: events go out in one ``POST /v1/events`` of up to
``batch_size`` once that many are waiting, once the oldest has waited ``flush_interval``
seconds (checked at each ``track``), on :meth:`~Events.flush`, and when the client closes
(the default client of ``brik.init()`` also at interpreter exit). Each event gets an ``id``
(a UUID) and a ``timestamp`` (now) unless you give them, so a retried batch — the transport
retries connection errors, 429 and 5xx — is counted once by the server.

The server keeps the good events of a batch and refuses the bad ones one by one: each refusal
is logged on the ``brik`` logger and returned in :class:`~brik.types.EventBatch`. A flush
that fails after its retries keeps its events buffered for the next one: :meth:`~Events.flush`
raises, a flush that ``track`` started only logs (tracking never breaks the code around it);
past ``max_buffered`` the oldest are dropped (and logged) rather than growing without bound.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from brik._http import AsyncTransport, Call, SyncTransport, logger
from brik.errors import BrikError
from brik.resources import _read
from brik.types import EventBatch, Platform

__all__ = ["AsyncEvents", "Events"]

MAX_BATCH = 500  # the server's limit per request
DEFAULT_BATCH_SIZE = 100
DEFAULT_FLUSH_INTERVAL = 10.0
DEFAULT_MAX_BUFFERED = 10_000


def build_event(
    name: str, *, id: str | None, timestamp: datetime | None, device_id: str | None,
    user_id: str | None, platform: Platform | None, app_version: str | None,
    os_version: str | None, device_model: str | None, locale: str | None, country: str | None,
    widget: str | None, action: str | None, activity_id: str | None, push_id: str | None,
    error_code: str | None, error_message: str | None, properties: Mapping[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    """One event as ``POST /v1/events`` takes it; fields left out are not sent."""
    if not isinstance(name, str) or not name:
        raise ValueError("an event needs a name: widget.impression, … or custom.<name>")
    moment = timestamp or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise ValueError("give the event's timestamp with a timezone")
    fields = {
        "id": id or str(uuid.uuid4()), "name": name, "timestamp": moment.isoformat(),
        "device_id": device_id, "user_id": user_id, "platform": platform,
        "app_version": app_version, "os_version": os_version, "device_model": device_model,
        "locale": locale, "country": country, "widget": widget, "action": action,
        "activity_id": activity_id, "push_id": push_id, "error_code": error_code,
        "error_message": error_message,
        "properties": dict(properties) if properties is not None else None,
    }  # fmt: skip
    return {key: value for key, value in fields.items() if value is not None}


def _batch_call(events: list[dict[str, Any]]) -> Call:
    return Call("POST", "/v1/events", json={"events": events})


def _result(body: dict[str, Any]) -> EventBatch:
    """The server's answer; each refused event is logged, so one is heard even by code that
    never looks at the result."""
    result = _read(EventBatch.from_json, body)
    for error in result.errors:
        logger.warning("brik: event %s refused: %s: %s", error.id, error.code, error.message)
    return result


def _flush_failed(buffer: _Buffer, exc: BrikError) -> None:
    logger.warning("brik: %d events kept for the next flush, which failed: %s", len(buffer), exc)


class _Buffer:
    """The events waiting to be sent, shared by both flavours (thread-safe)."""

    def __init__(self, batch_size: int, flush_interval: float, max_buffered: int) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH}")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffered = max(max_buffered, batch_size)
        self._events: deque[dict[str, Any]] = deque()
        self._oldest: float | None = None
        self._lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> bool:
        """Buffer ``event``; True when a flush is due."""
        with self._lock:
            if len(self._events) >= self.max_buffered:
                dropped = self._events.popleft()
                logger.warning("brik: %d events buffered: the oldest (%s) was dropped",
                               self.max_buffered, dropped.get("id"))  # fmt: skip
            self._events.append(event)
            if self._oldest is None:
                self._oldest = time.monotonic()
            return len(self._events) >= self.batch_size or (
                time.monotonic() - self._oldest >= self.flush_interval
            )

    def take(self) -> list[dict[str, Any]]:
        """Up to one request's worth of events, oldest first (put them back if it fails)."""
        with self._lock:
            count = min(len(self._events), MAX_BATCH)
            taken = [self._events.popleft() for _ in range(count)]
            if not self._events:
                self._oldest = None
            return taken

    def put_back(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._events.extendleft(reversed(events))
            while len(self._events) > self.max_buffered:
                self._events.pop()
            if self._oldest is None and self._events:
                self._oldest = time.monotonic()

    def __len__(self) -> int:
        return len(self._events)


class Events:
    """Analytics events for one project and mode (the key's): buffered, sent in batches."""

    def __init__(
        self, transport: SyncTransport, *, batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:  # fmt: skip
        self._transport = transport
        self._buffer = _Buffer(batch_size, flush_interval, max_buffered)

    @property
    def pending(self) -> int:
        """Events tracked and not sent yet."""
        return len(self._buffer)

    def track(
        self, name: str, *, id: str | None = None, timestamp: datetime | None = None,
        device_id: str | None = None, user_id: str | None = None,
        platform: Platform | None = None, app_version: str | None = None,
        os_version: str | None = None, device_model: str | None = None,
        locale: str | None = None, country: str | None = None, widget: str | None = None,
        action: str | None = None, activity_id: str | None = None, push_id: str | None = None,
        error_code: str | None = None, error_message: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:  # fmt: skip
        """Buffer one event (sent with the next flush); returns its id. ``name`` is one of
        Brik's (``widget.impression`` with ``widget``, ``widget.click`` with ``widget`` and
        ``action``, ``activity.start``/``.update``/``.end`` with ``activity_id``,
        ``push.opened`` with ``push_id``, ``error`` with ``error_message``) or
        ``custom.<name>``; docs/analytics.md has every field."""
        event = build_event(
            name, id=id, timestamp=timestamp, device_id=device_id, user_id=user_id,
            platform=platform, app_version=app_version, os_version=os_version,
            device_model=device_model, locale=locale, country=country, widget=widget,
            action=action, activity_id=activity_id, push_id=push_id, error_code=error_code,
            error_message=error_message, properties=properties,
        )  # fmt: skip
        if self._buffer.add(event):
            try:
                self.flush()
            except BrikError as exc:  # tracking never breaks the caller: kept for next time
                _flush_failed(self._buffer, exc)
        return str(event["id"])

    def flush(self) -> EventBatch:
        """Send every buffered event now; what the server kept and refused. Raises (after the
        transport's retries) with the unsent events still buffered."""
        result = EventBatch()
        while batch := self._buffer.take():
            try:
                result += self.send(batch)
            except BaseException:
                self._buffer.put_back(batch)
                raise
        return result

    def send(self, events: Sequence[Mapping[str, Any]]) -> EventBatch:
        """Send up to 500 events at once, bypassing the buffer (each a dict as
        ``POST /v1/events`` takes it: give each an ``id`` so a retry counts it once)."""
        return _result(self._transport.request(_batch_call([dict(event) for event in events])))


class AsyncEvents:
    """The same as :class:`Events`, for asyncio: ``track`` and ``flush`` are awaited."""

    def __init__(
        self, transport: AsyncTransport, *, batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:  # fmt: skip
        self._transport = transport
        self._buffer = _Buffer(batch_size, flush_interval, max_buffered)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def track(
        self, name: str, *, id: str | None = None, timestamp: datetime | None = None,
        device_id: str | None = None, user_id: str | None = None,
        platform: Platform | None = None, app_version: str | None = None,
        os_version: str | None = None, device_model: str | None = None,
        locale: str | None = None, country: str | None = None, widget: str | None = None,
        action: str | None = None, activity_id: str | None = None, push_id: str | None = None,
        error_code: str | None = None, error_message: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:  # fmt: skip
        """As :meth:`Events.track`."""
        event = build_event(
            name, id=id, timestamp=timestamp, device_id=device_id, user_id=user_id,
            platform=platform, app_version=app_version, os_version=os_version,
            device_model=device_model, locale=locale, country=country, widget=widget,
            action=action, activity_id=activity_id, push_id=push_id, error_code=error_code,
            error_message=error_message, properties=properties,
        )  # fmt: skip
        if self._buffer.add(event):
            try:
                await self.flush()
            except BrikError as exc:
                _flush_failed(self._buffer, exc)
        return str(event["id"])

    async def flush(self) -> EventBatch:
        """As :meth:`Events.flush`."""
        result = EventBatch()
        while batch := self._buffer.take():
            try:
                result += await self.send(batch)
            except BaseException:
                self._buffer.put_back(batch)
                raise
        return result

    async def send(self, events: Sequence[Mapping[str, Any]]) -> EventBatch:
        """As :meth:`Events.send`."""
        call = _batch_call([dict(event) for event in events])
        return _result(await self._transport.request(call))
