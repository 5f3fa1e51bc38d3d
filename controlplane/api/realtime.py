"""``/v1/realtime``: apps hold server-sent-event streams on channels, servers publish to them.

- ``GET /v1/realtime/channels/{channel}`` — any key of the project (publishable keys are what
  apps hold); a private channel (``private:…``, ``user:…``) also needs a subscribe token, as
  ``?token=`` (EventSource cannot set headers) or the ``Brik-Realtime-Token`` header. Resumes
  after ``Last-Event-ID`` (header, or ``?last_event_id=``) from the channel's history.
- ``POST /v1/realtime/channels/{channel}/messages`` — a secret key with ``realtime:write``.
- ``POST /v1/realtime/tokens`` — a secret key with ``realtime:write`` mints a subscribe token.

Naming and privacy: :mod:`controlplane.realtime.channels`; the fan-out, the history, the
limits: the rest of :mod:`controlplane.realtime`. The user's guide is docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from controlplane.api.eager_send import EagerSender
from controlplane.api.routing import Auth, Call, Operation
from controlplane.auth.api_key_cache import ApiKeyCache
from controlplane.auth.api_keys import bearer_token
from controlplane.errors import (
    DependencyUnavailable,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
)
from controlplane.middleware.stream_send import STREAM_SEND
from controlplane.plans import limits_for
from controlplane.realtime import channels, messages, tokens
from controlplane.realtime.channels import Channel
from controlplane.realtime.hub import CLIENT_GONE, TOO_SLOW, RealtimeHub, Subscription
from controlplane.realtime.limits import ConnectionLimiter
from controlplane.realtime.messages import History, Message
from controlplane.settings import Settings
from controlplane.validation import WHOLE_NUMBER

RECONNECT_MILLISECONDS = 2000  # the SSE `retry:` a client waits before reconnecting
KEY_REVOKED = "key_revoked"  # why a stream ended: its key is no longer valid
QUEUED_WRITES_LIMIT = 1000  # writes waiting on a slow reader before its stream is ended
FLUSH_SECONDS = 5.0  # for what is still being written when a stream ends
RETRY_AFTER_SECONDS = 10  # on 429: how soon another stream of the project may have ended
TOKEN_HEADER = "brik-realtime-token"

ChannelSpec = Annotated[
    str,
    Field(
        pattern=tokens.SPEC_PATTERN,
        description=f"A channel ({channels.NAME_RULE}), or a prefix of names ending in `*` "
        "(`user:u_42:*`).",
    ),
]


class SubscribeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str | None = Field(
        default=None,
        max_length=4096,
        description="A subscribe token (`POST /v1/realtime/tokens`), for private channels; "
        "the `Brik-Realtime-Token` header works too.",
    )
    last_event_id: str | None = Field(
        default=None,
        pattern=messages.MESSAGE_ID_PATTERN,
        description="Resume after this message id (the `Last-Event-ID` header works too).",
    )


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str | None = Field(
        default=None,
        pattern=messages.EVENT_PATTERN,
        description=f"The SSE `event:` name ({messages.EVENT_RULE}); without it, `message`.",
    )
    data: Any = Field(
        description="Any JSON value, at most `BRIK_REALTIME_MAX_MESSAGE_BYTES` (32 KB) as "
        "compact JSON; larger is a 413 `message_too_large`."
    )


class MessagePublished(BaseModel):
    object: Literal["realtime_message"] = "realtime_message"
    id: str = Field(description="The message id: the SSE `id:` subscribers see.")
    channel: str
    event: str | None


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: list[ChannelSpec] = Field(min_length=1, max_length=tokens.MAX_CHANNELS)
    ttl_seconds: Annotated[int, WHOLE_NUMBER] = Field(
        default=3600, ge=1, le=tokens.MAX_TTL_SECONDS,
        description="Lifetime in seconds, at most 86,400 (a day).",
    )  # fmt: skip


class RealtimeToken(BaseModel):
    object: Literal["realtime_token"] = "realtime_token"
    token: str = Field(description="Pass it as `?token=` (or `Brik-Realtime-Token`).")
    channels: list[str]
    expires_at: datetime


def _channel(call: Call) -> Channel:
    name = call.path_name("channel")
    if not channels.is_name(name):
        raise InvalidRequest(
            f"channel: {channels.NAME_RULE}.", code="parameter_invalid", param="channel"
        )
    project = call.tenant.project
    assert project is not None, "an API key's tenant has its project"
    return Channel(project.id, call.key.mode, name)


def _check_token(call: Call, channel: Channel, token: str | None) -> None:
    if token is None:
        raise PermissionDenied(
            f"'{channel.name}' is a private channel: subscribing needs a subscribe token your "
            "server mints (POST /v1/realtime/tokens), as ?token= or the Brik-Realtime-Token "
            "header.",
            code="realtime_token_required",
            param="token",
        )
    try:
        grant = tokens.verify(
            token, call.settings.require_secret_keys(), project_id=channel.project_id,
            mode=channel.mode, now=time.time(),
        )  # fmt: skip
    except tokens.InvalidToken as exc:
        raise PermissionDenied(
            f"The subscribe token opens nothing: {exc}.", code="realtime_token_invalid",
            param="token",
        ) from None  # fmt: skip
    if not grant.allows(channel.name):
        raise PermissionDenied(
            f"The subscribe token does not cover '{channel.name}' (it covers "
            f"{', '.join(grant.channels)}).",
            code="realtime_token_invalid",
            param="token",
        )


def _last_event_id(call: Call, query: SubscribeQuery) -> str | None:
    header = call.request.headers.get("last-event-id")
    if query.last_event_id is not None or not header:
        return query.last_event_id
    if not messages.is_message_id(header):
        raise InvalidRequest(
            "Last-Event-ID: not a message id of this API (`<milliseconds>-<sequence>`).",
            code="parameter_invalid",
            param="last_event_id",
        )
    return header


def _redis_away(doing: str) -> DependencyUnavailable:
    return DependencyUnavailable.redis(
        f"Redis is unavailable, and realtime channels live there: {doing}. Try again shortly."
    )


async def subscribe_channel(call: Call) -> Response:
    channel = _channel(call)
    query = call.query_as(SubscribeQuery)
    if channels.is_private(channel.name):
        _check_token(call, channel, query.token or call.request.headers.get(TOKEN_HEADER))
    last_id = _last_event_id(call, query)
    hub: RealtimeHub = call.request.app.state.realtime_hub
    limiter: ConnectionLimiter = call.request.app.state.realtime_limiter
    limit = limits_for(call.tenant.organization.plan, call.settings).realtime_connections
    try:
        taken = await limiter.take(channel.project_id, limit)
    except RedisError:
        raise _redis_away("no stream was opened") from None
    if not taken:
        raise RateLimited(
            f"Too many open realtime streams: the plan allows {limit} per project. Close one "
            "and try again.",
            code="too_many_connections",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    subscription: Subscription | None = None
    try:
        subscription = await hub.subscribe(channel)
        backlog: list[Message] = []
        if last_id is not None:
            redis = call.request.app.state.redis
            now_ms = int(time.time() * 1000)
            history = History.of(call.settings)
            backlog = await messages.read_since(redis, channel, last_id, history, now_ms)
            newest = await messages.newest_id(redis, channel)
            if newest is None or messages.id_key(last_id) > messages.id_key(newest):
                # An id this channel never gave (a skewed client, another Redis): resuming
                # from it would skip every message until that moment. Resume from what is.
                last_id = newest
    except BaseException as exc:  # a client gone meanwhile too: the place is given back
        if subscription is not None:
            subscription.close()
        limiter.give_back(channel.project_id)
        if isinstance(exc, RedisError):
            raise _redis_away("no stream was opened") from None
        raise
    opened = subscription

    def close() -> None:
        opened.close()
        limiter.give_back(channel.project_id)

    token = bearer_token(call.request.headers.get("authorization"))
    keys: ApiKeyCache = call.request.app.state.api_keys
    return ChannelStream(
        opened, backlog, last_id, call.settings, close, partial(keys.still_valid, token)
    )


class ChannelStream(Response):
    """The stream: `retry:`, the backlog, then live messages (each once) and heartbeats, until
    the hub ends it (Redis lost, the process stopping, the reader too slow), the client goes,
    its key stops being valid (``key_valid``, asked at every heartbeat: revoked, expired, its
    project deleted), or ``BRIK_REALTIME_MAX_SECONDS`` pass. Gives its place back
    (``on_close``) however it ends.

    Live messages are written by the hub as it hears them (:mod:`controlplane.api.eager_send`),
    not by a task per stream woken for each; the stream's own task only wakes for heartbeats
    and the end. A stream ends without ``end``: its client reconnects with Last-Event-ID.
    """

    def __init__(
        self,
        subscription: Subscription,
        backlog: list[Message],
        last_id: str | None,
        settings: Settings,
        on_close: Callable[[], None],
        key_valid: Callable[[], Awaitable[bool]],
    ) -> None:
        super().__init__(
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        # Response gave an empty body a length; this one is streamed (chunked).
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._subscription = subscription
        self._backlog = backlog
        self._last = messages.id_key(last_id) if last_id is not None else None
        self._settings = settings
        self._on_close = on_close
        self._key_valid = key_valid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(scope, receive, send)
        finally:
            self._on_close()

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscription = self._subscription
        loop = asyncio.get_running_loop()
        # The start through every layer; the chunks past those that only act on a start.
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        chunks = scope.get(STREAM_SEND, send)
        writer = EagerSender(
            chunks, max_waiting=QUEUED_WRITES_LIMIT, give_up=lambda: subscription.end(TOO_SLOW)
        )
        written = loop.time()

        def forward(message: Message) -> None:
            nonlocal written
            if self._last is None or message.key > self._last:  # else sent from the backlog
                self._last = message.key
                writer.write(message.sse)
                written = loop.time()

        head = [f"retry: {RECONNECT_MILLISECONDS}\n\n".encode()]
        for old in self._backlog:
            self._last = old.key
            head.append(old.sse)
        writer.write(b"".join(head))
        for queued in subscription.attach(forward):
            forward(queued)
        watcher = asyncio.ensure_future(_end_when_gone(receive, subscription))
        try:
            deadline = loop.time() + self._settings.realtime_max_seconds
            heartbeat = self._settings.realtime_heartbeat_seconds
            checked = loop.time()  # when the key was last found valid (messages or not)
            while subscription.ended is None and (remaining := deadline - loop.time()) > 0:
                if loop.time() - checked >= heartbeat:
                    if not await self._key_valid():
                        subscription.end(KEY_REVOKED)
                        break
                    checked = loop.time()
                quiet = loop.time() - written
                if quiet >= heartbeat:
                    writer.write(b": heartbeat\n\n")
                    written, quiet = loop.time(), 0.0
                unchecked = loop.time() - checked
                # None: time (a heartbeat or a key check is due) or the end
                await subscription.get(min(heartbeat - quiet, heartbeat - unchecked, remaining))
            if subscription.ended != CLIENT_GONE and writer.failed is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLUSH_SECONDS):
                        await writer.flush()
                if writer.failed is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


async def _end_when_gone(receive: Receive, subscription: Subscription) -> None:
    """End the stream when its client disconnects (a stream only writes, so only reading the
    connection tells)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    subscription.end(CLIENT_GONE)


async def publish_message(call: Call) -> MessagePublished:
    channel = _channel(call)
    if channels.is_reserved(channel.name):
        raise InvalidRequest(
            f"channel: '{channels.ACTIVITY_PREFIX}…' channels are Brik's: every update and end "
            "of the Live Activity is published there. Publish on another name.",
            code="reserved_channel",
            param="channel",
        )
    body = call.body_as(MessageIn)
    data = json.dumps(body.data, separators=(",", ":"), ensure_ascii=False)
    limit = call.settings.realtime_max_message_bytes
    if len(data.encode()) > limit:
        raise PayloadTooLarge(
            f"data: {len(data.encode()):,} bytes as compact JSON; at most {limit:,}.",
            code="message_too_large",
            param="data",
        )
    try:
        message_id = await messages.publish(
            call.request.app.state.redis, channel, body.event or "", data,
            History.of(call.settings),
        )  # fmt: skip
    except RedisError:
        raise _redis_away("the message was not published") from None
    return MessagePublished(id=message_id, channel=channel.name, event=body.event)


async def create_realtime_token(call: Call) -> RealtimeToken:
    body = call.body_as(TokenRequest)
    project = call.tenant.project
    assert project is not None
    expires_at = int(time.time()) + body.ttl_seconds
    specs = list(dict.fromkeys(body.channels))
    grant = tokens.Grant(project.id, call.key.mode, tuple(specs), expires_at)
    return RealtimeToken(
        token=tokens.mint(grant, call.settings.require_secret_key()),
        channels=specs,
        expires_at=datetime.fromtimestamp(expires_at, UTC),
    )


KEY = Auth.API_KEY
CHANNEL = "/v1/realtime/channels/{channel}"
_REDIS = "Redis is unavailable (`dependency_unavailable`, `param: redis`): nothing was done"
operations = [
    Operation("GET", CHANNEL, subscribe_channel,
              "Server-sent events: the channel's messages as they are published", "Realtime",
              auth=KEY, query=SubscribeQuery, response_media_type="text/event-stream",
              errors={503: _REDIS},
              description="Any key of the project; a private channel (`private:…`, `user:…`) "
              "also needs a subscribe token (`?token=` or `Brik-Realtime-Token`): 403 "
              "`realtime_token_required` or `realtime_token_invalid`. Each message is `id:`, "
              "`event:` (when published with one) and `data:` (its JSON); `: heartbeat` "
              "comments keep the connection alive. With `Last-Event-ID` (or "
              "`?last_event_id=`) the stream starts with the messages after it still in the "
              "channel's history. A stream closed without error (after "
              "`BRIK_REALTIME_MAX_SECONDS`, a Redis outage, a restart) is reopened by the "
              "client with its last id. Open streams per project are bounded by the plan: "
              "beyond, 429 `too_many_connections`."),
    Operation("POST", CHANNEL + "/messages", publish_message, "Publish a message on a channel",
              "Realtime", auth=KEY, scope="realtime:write", secret_key_only=True,
              body=MessageIn, response=MessagePublished, transactional=False,
              errors={413: "`data` is larger than `BRIK_REALTIME_MAX_MESSAGE_BYTES` "
                      "(`message_too_large`)", 503: _REDIS},
              description="Delivered to every open stream of the channel, on every API "
              "process, and kept in the channel's history for resume. `activity:…` channels "
              "are Brik's (400 `reserved_channel`)."),
    Operation("POST", "/v1/realtime/tokens", create_realtime_token,
              "Mint a subscribe token for private channels", "Realtime", auth=KEY,
              scope="realtime:write", secret_key_only=True, body=TokenRequest,
              response=RealtimeToken, transactional=False,
              description="For the key's project and mode, the channels named (or every "
              "channel under a prefix ending in `*`), for at most a day. Give it to the app "
              "that should read them."),
]  # fmt: skip
