"""``brik.realtime``: publish on channels from your server, subscribe from Python.

::

    brik.realtime.publish("scores", {"home": 2, "away": 1}, event="goal")   # a secret key
    token = brik.realtime.create_token(channels=["user:u_42:*"], ttl=3600)  # for the app
    for message in brik.realtime.subscribe("scores"):                       # any key
        print(message.id, message.event, message.data)

:meth:`Realtime.subscribe` is an endless iterator of :class:`~brik.types.RealtimeMessage`:
when the server closes the stream (it does after ``BRIK_REALTIME_MAX_SECONDS``, on a restart,
or when its Redis goes away) or the connection drops, it reconnects with ``Last-Event-ID`` —
the channel's recent history fills the gap, so nothing recent is missed — and a retryable
answer (503 while Redis is away) is retried with backoff, up to ``max_retries`` in a row.
Break out of the loop to stop. Private channels (``private:…``, ``user:…``) need the
``token`` your server minted with :meth:`Realtime.create_token`. docs/realtime.md has the rest.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from brik._http import AsyncTransport, Call, ServerSentEvent, SyncTransport, event_data
from brik.errors import InvalidRequestError
from brik.resources import _read
from brik.types import RealtimeMessage, RealtimeToken

__all__ = ["AsyncRealtime", "Realtime"]

_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@=-]{0,99}")


def _channel_path(channel: str, action: str = "") -> str:
    if not isinstance(channel, str) or _CHANNEL.fullmatch(channel) is None:
        raise InvalidRequestError(
            f"{channel!r} is not a channel name (1 to 100 letters, digits and _ - . : @ =, "
            "starting with a letter or digit); nothing was sent.",
            status=400, type="invalid_request_error", code="parameter_invalid", param="channel",
        )  # fmt: skip
    return f"/v1/realtime/channels/{channel}{action}"


def _publish(channel: str, data: Any, event: str | None) -> Call:
    body: dict[str, Any] = {"data": data}
    if event is not None:
        body["event"] = event
    return Call("POST", _channel_path(channel, "/messages"), json=body)


def _token(channels: Sequence[str], ttl: int) -> Call:
    if isinstance(channels, str):
        raise TypeError("channels is a list of names (or prefixes ending in *), not one string")
    return Call("POST", "/v1/realtime/tokens", json={"channels": list(channels),
                                                      "ttl_seconds": ttl})  # fmt: skip


def _subscribe(channel: str, token: str | None) -> Call:
    return Call("GET", _channel_path(channel), params={"token": token})


def _message(event: ServerSentEvent) -> RealtimeMessage:
    return RealtimeMessage(id=event.id or "", event=event.event, data=event_data(event))


def _published(body: dict[str, Any]) -> str:
    return str(_read(lambda b: b["id"], body, "realtime message"))


class Realtime:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def publish(self, channel: str, data: Any, *, event: str | None = None) -> str:
        """Publish ``data`` (any JSON, up to 32 KB) on ``channel``; the message's id. Needs a
        secret key. Retried like every call; a retry after a connection that dropped once the
        server had published may publish it twice (two ids)."""
        return _published(self._transport.request(_publish(channel, data, event)))

    def create_token(self, *, channels: Sequence[str], ttl: int = 3600) -> RealtimeToken:
        """A subscribe token for ``channels`` (names, or prefixes ending in ``*``), valid for
        ``ttl`` seconds (at most a day). Needs a secret key; give the token to the app."""
        return _read(RealtimeToken.from_json, self._transport.request(_token(channels, ttl)))

    def subscribe(
        self, channel: str, *, token: str | None = None, last_event_id: str | None = None
    ) -> Iterator[RealtimeMessage]:
        """Every message published on ``channel`` from now (or after ``last_event_id``),
        reconnecting as the module docstring says. Ends only when you stop iterating."""
        call = _subscribe(channel, token)
        events = self._transport.events(call, last_event_id=last_event_id, end_event=None)
        for event in events:
            yield _message(event)


class AsyncRealtime:
    """The same as :class:`Realtime`, for asyncio: ``subscribe`` is an async iterator."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def publish(self, channel: str, data: Any, *, event: str | None = None) -> str:
        """As :meth:`Realtime.publish`."""
        return _published(await self._transport.request(_publish(channel, data, event)))

    async def create_token(self, *, channels: Sequence[str], ttl: int = 3600) -> RealtimeToken:
        """As :meth:`Realtime.create_token`."""
        return _read(RealtimeToken.from_json, await self._transport.request(_token(channels, ttl)))

    async def subscribe(
        self, channel: str, *, token: str | None = None, last_event_id: str | None = None
    ) -> AsyncIterator[RealtimeMessage]:
        """As :meth:`Realtime.subscribe`."""
        call = _subscribe(channel, token)
        async for event in self._transport.events(
            call, last_event_id=last_event_id, end_event=None
        ):
            yield _message(event)
