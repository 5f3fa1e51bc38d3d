"""Talking to the API: one logical call, its retries, and turning answers into results or errors.

A :class:`Call` is built once per logical call and sent by :class:`SyncTransport` or
:class:`AsyncTransport`, which share everything but the awaiting:

* a mutating call carries an ``Idempotency-Key`` chosen once (or given by the caller) and sent
  unchanged on every retry, so a retried ``POST /v1/pushes`` is answered from the first one;
* connection errors (the request may or may not have arrived), 429 ``rate_limit_error``
  (waiting ``Retry-After``), 409 ``idempotency_key_in_use`` (the first attempt is still running)
  and 5xx are retried up to ``max_retries`` times, with exponential backoff and full jitter;
* anything else is raised as the matching :mod:`brik.errors` class, with the request id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import platform
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from brik import errors
from brik.version import VERSION

logger = logging.getLogger("brik")

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0
MAX_RETRY_AFTER_SECONDS = 60.0
USER_AGENT = f"brik-python/{VERSION} httpx/{httpx.__version__} python/{platform.python_version()}"


def new_idempotency_key() -> str:
    return f"brik-py-{uuid.uuid4()}"


@dataclass(frozen=True)
class Call:
    """One logical API call; its retries send exactly this."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    idempotency_key: str | None = None
    conditions: dict[str, str] | None = None  # If-Match / If-None-Match

    @classmethod
    def mutating(
        cls, method: str, path: str, body: dict[str, Any] | None, idempotency_key: str | None
    ) -> Call:
        return cls(
            method, path, json=body, idempotency_key=idempotency_key or new_idempotency_key()
        )

    def headers(self) -> dict[str, str]:
        headers = dict(self.conditions or {})
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers

    def query(self) -> dict[str, Any] | None:
        if self.params is None:
            return None
        return {key: value for key, value in self.params.items() if value is not None}


@dataclass(frozen=True)
class Config:
    api_key: str
    base_url: str
    timeout: float
    max_retries: int
    default_headers: dict[str, str] = field(default_factory=dict)

    def client_arguments(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            "headers": {
                "Authorization": f"Bearer {self.api_key}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                **self.default_headers,
            },
        }


# --- deciding what an answer means --------------------------------------------------------


def _error_fields(response: httpx.Response) -> tuple[dict[str, Any], Any]:
    try:
        body = response.json()
    except ValueError:
        return {}, response.text
    error = body.get("error") if isinstance(body, dict) else None
    return (error if isinstance(error, dict) else {}), body


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def is_retryable(response: httpx.Response) -> bool:
    if response.status_code in RETRYABLE_STATUSES:
        return True
    fields, _ = _error_fields(response)
    if response.status_code == 429:
        return fields.get("type") != "quota_exceeded"  # waiting will not help a monthly quota
    return response.status_code == 409 and fields.get("code") == "idempotency_key_in_use"


def backoff(attempt: int, response: httpx.Response | None) -> float | None:
    """Seconds to wait before retry number ``attempt`` (0-based), or None: do not retry."""
    delay = random.uniform(0, min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))
    wait = retry_after(response) if response is not None else None
    if wait is not None:
        if wait > MAX_RETRY_AFTER_SECONDS:
            return None
        delay = max(delay, wait)
    return delay


def error_for(response: httpx.Response) -> errors.APIError:
    fields, body = _error_fields(response)
    status = response.status_code
    kind = fields.get("type")
    message = str(fields.get("message") or f"Brik answered {status} {response.reason_phrase}")
    arguments: dict[str, Any] = {
        "status": status,
        "type": kind,
        "code": fields.get("code"),
        "param": fields.get("param"),
        "request_id": response.headers.get("request-id"),
        "body": body,
    }
    if status == 429:
        if kind == "quota_exceeded":
            return errors.QuotaExceededError(message, **arguments)
        return errors.RateLimitError(message, retry_after=retry_after(response), **arguments)
    if kind == "idempotency_error" or status == 422:
        return errors.IdempotencyError(message, **arguments)
    if status == 409:
        return errors.ConflictError(message, **arguments)
    if status == 412:
        return errors.PreconditionFailedError(
            message, etag=response.headers.get("etag"), **arguments
        )
    by_status: dict[int, type[errors.APIError]] = {
        401: errors.AuthenticationError,
        403: errors.PermissionError,
        404: errors.NotFoundError,
    }
    if status in by_status:
        return by_status[status](message, **arguments)
    if status >= 500:
        return errors.ServerError(message, **arguments)
    if 400 <= status < 500:
        return errors.InvalidRequestError(message, **arguments)
    return errors.APIError(message, **arguments)


def result_of(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise error_for(response)
    try:
        body = response.json()
    except ValueError:
        raise errors.APIError(
            "Brik answered with something that is not JSON.",
            status=response.status_code,
            request_id=response.headers.get("request-id"),
            body=response.text,
        ) from None
    if not isinstance(body, dict):
        raise errors.APIError("Brik answered with unexpected JSON.", status=200, body=body)
    return body


def connection_error(exc: httpx.TransportError, call: Call, attempts: int) -> errors.BrikError:
    return errors.APIConnectionError(
        f"Could not complete {call.method} {call.path} after {attempts} attempt(s): "
        f"{type(exc).__name__}: {exc or 'connection closed'}"
    )


# --- server-sent events -------------------------------------------------------------------


@dataclass
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None  # the stream's last event id as of this event (``id:`` lines)


class EventParser:
    """Feeds lines of a ``text/event-stream``; returns each complete event."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self.last_id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._data:
                self._event = "message"
                return None
            event = ServerSentEvent(self._event, "\n".join(self._data), self.last_id)
            self._event, self._data = "message", []
            return event
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


def event_data(event: ServerSentEvent) -> Any:
    """The event's JSON, or its text when it is not JSON (the caller checks the shape)."""
    try:
        return json.loads(event.data)
    except ValueError:
        return event.data


# --- the two transports -------------------------------------------------------------------


class Attempts:
    """The retry decisions of one call, for both transports: each outcome gives the seconds
    to wait before the next attempt, or ends the call (a result, or an exception)."""

    def __init__(self, call: Call, max_retries: int) -> None:
        self.call = call
        self.max_retries = max_retries
        self.made = 0

    def failed(self, exc: httpx.TransportError) -> float:
        """The connection failed; the wait before the next attempt, or raise."""
        self.made += 1
        delay = backoff(self.made - 1, None)
        if self.made > self.max_retries or delay is None:
            raise connection_error(exc, self.call, self.made) from exc
        self._log(delay, type(exc).__name__)
        return delay

    def answered(self, response: httpx.Response) -> float | None:
        """An answer; the wait before the next attempt, or None when it is the result."""
        self.made += 1
        delay = backoff(self.made - 1, response) if is_retryable(response) else None
        if delay is None or self.made > self.max_retries:
            return None
        self._log(
            delay, f"{response.status_code} (request id {response.headers.get('request-id')})"
        )
        return delay

    def _log(self, delay: float, why: str) -> None:
        logger.info("brik: %s %s failed (%s); retry %d of %d in %.2f s", self.call.method,
                    self.call.path, why, self.made, self.max_retries, delay)  # fmt: skip

    def progressed(self) -> None:
        """A stream opened: a later drop starts counting retries afresh (a quiet stream the
        server closes after its maximum length is reopened for ever, not given up on)."""
        self.made = 0


def _stream_timeout(config: Config) -> httpx.Timeout:
    # The server sends a keep-alive every few seconds; a longer read timeout never trips on it.
    return httpx.Timeout(config.timeout, read=max(config.timeout, 60.0))


def _stream_headers(last_event_id: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return headers


END_EVENT = "end"  # the server's last word on a stream; any other close is reconnected


def _closed_before_end() -> httpx.TransportError:
    # The server closes a stream after a while (and when it restarts) without ``end``; it is
    # reopened like a dropped connection, and the new stream starts with the state as it is.
    return httpx.RemoteProtocolError("the stream closed before its end event")


class SyncTransport:
    def __init__(self, config: Config, http_client: httpx.Client | None = None) -> None:
        self.config = config
        self._owns_client = http_client is None
        self._http = http_client or httpx.Client(**config.client_arguments())

    def close(self) -> None:
        if self._owns_client:
            self._http.close()

    def request(self, call: Call) -> dict[str, Any]:
        attempts = Attempts(call, self.config.max_retries)
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, json=call.json, params=call.query(),
                    headers=call.headers(),
                )  # fmt: skip
            except httpx.TransportError as exc:
                delay = attempts.failed(exc)
            else:
                answered = attempts.answered(response)
                if answered is None:
                    return result_of(response)
                delay = answered
            time.sleep(delay)

    def events(
        self, call: Call, *, last_event_id: str | None = None, end_event: str | None = END_EVENT
    ) -> Iterator[ServerSentEvent]:
        """The events of one stream up to its ``end_event`` (None: for ever), reconnecting
        after a dropped connection, a stream closed before it (the server bounds how long one
        stream lasts) or a retryable answer (503, 429), with ``Last-Event-ID`` once the stream
        has sent ids."""
        attempts = Attempts(call, self.config.max_retries)
        while True:
            delay: float | None = None
            try:
                opened = self._http.stream(
                    call.method, call.path, params=call.query(),
                    headers=_stream_headers(last_event_id), timeout=_stream_timeout(self.config),
                )  # fmt: skip
                with opened as response:
                    if response.status_code >= 400:
                        response.read()
                        delay = attempts.answered(response)
                        if delay is None:
                            raise error_for(response)
                    else:
                        attempts.progressed()
                        parser = EventParser()
                        for line in response.iter_lines():
                            if (event := parser.feed(line)) is not None:
                                last_event_id = event.id or last_event_id
                                yield event
                                if event.event == end_event:
                                    return
                        raise _closed_before_end()
            except httpx.TransportError as exc:
                delay = attempts.failed(exc)
            assert delay is not None  # every other way out of the try returned or raised
            time.sleep(delay)

    def download(self, path: str, target: Path) -> str:
        """Stream ``path`` (a signed link's path and query) into ``target``; returns the bytes'
        SHA-256. Written beside ``target`` first and renamed when whole."""
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        with self._http.stream("GET", path, timeout=_stream_timeout(self.config)) as response:
            if response.status_code >= 400:
                response.read()
                raise error_for(response)
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
        partial.replace(target)
        return digest.hexdigest()


class AsyncTransport:
    def __init__(self, config: Config, http_client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._owns_client = http_client is None
        self._http = http_client or httpx.AsyncClient(**config.client_arguments())

    async def close(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    async def request(self, call: Call) -> dict[str, Any]:
        attempts = Attempts(call, self.config.max_retries)
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, json=call.json, params=call.query(),
                    headers=call.headers(),
                )  # fmt: skip
            except httpx.TransportError as exc:
                delay = attempts.failed(exc)
            else:
                answered = attempts.answered(response)
                if answered is None:
                    return result_of(response)
                delay = answered
            await asyncio.sleep(delay)

    async def events(
        self, call: Call, *, last_event_id: str | None = None, end_event: str | None = END_EVENT
    ) -> AsyncIterator[ServerSentEvent]:
        """The events of one stream, reconnecting as :meth:`SyncTransport.events` does."""
        attempts = Attempts(call, self.config.max_retries)
        while True:
            delay: float | None = None
            try:
                opened = self._http.stream(
                    call.method, call.path, params=call.query(),
                    headers=_stream_headers(last_event_id), timeout=_stream_timeout(self.config),
                )  # fmt: skip
                async with opened as response:
                    if response.status_code >= 400:
                        await response.aread()
                        delay = attempts.answered(response)
                        if delay is None:
                            raise error_for(response)
                    else:
                        attempts.progressed()
                        parser = EventParser()
                        async for line in response.aiter_lines():
                            if (event := parser.feed(line)) is not None:
                                last_event_id = event.id or last_event_id
                                yield event
                                if event.event == end_event:
                                    return
                        raise _closed_before_end()
            except httpx.TransportError as exc:
                delay = attempts.failed(exc)
            assert delay is not None  # every other way out of the try returned or raised
            await asyncio.sleep(delay)

    async def download(self, path: str, target: Path) -> str:
        """As :meth:`SyncTransport.download` (the file is written in a thread)."""
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        async with self._http.stream("GET", path, timeout=_stream_timeout(self.config)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise error_for(response)
            out = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
            finally:
                await asyncio.to_thread(out.close)
        await asyncio.to_thread(partial.replace, target)
        return digest.hexdigest()
