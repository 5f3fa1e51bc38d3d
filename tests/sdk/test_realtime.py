"""``brik.realtime`` against a real server: publish, tokens, and a subscriber that reconnects
(the server ends each stream after 2 s here) without missing what was published meanwhile."""

from __future__ import annotations

import asyncio
import queue
import threading
from datetime import UTC, datetime

import brik
import pytest
from brik.types import RealtimeMessage

from tests.sdk.conftest import BrikServer


async def test_an_async_subscriber_gets_every_message_across_the_server_s_reconnects(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    async with (
        brik.AsyncClient(keys["test_secret"], base_url=brik_server.url) as server,
        brik.AsyncClient(keys["test_publishable"], base_url=brik_server.url) as app,
    ):
        received: list[RealtimeMessage] = []

        async def listen() -> None:
            async for message in app.realtime.subscribe("scores"):
                received.append(message)
                if len(received) == 6:
                    return

        listening = asyncio.create_task(listen())
        await asyncio.sleep(0.5)  # subscribed
        sent = []
        for n in range(6):  # over 3 s: the stream is closed and reopened at least once
            sent.append(await server.realtime.publish("scores", {"n": n}, event="tick"))
            await asyncio.sleep(0.6)
        await asyncio.wait_for(listening, 15)
        assert [(m.id, m.event, m.data) for m in received] == [
            (id_, "tick", {"n": n}) for n, id_ in enumerate(sent)
        ]


async def test_a_private_channel_opens_with_the_server_s_token_and_resumes_from_an_id(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    async with (
        brik.AsyncClient(keys["test_secret"], base_url=brik_server.url) as server,
        brik.AsyncClient(keys["test_publishable"], base_url=brik_server.url) as app,
    ):
        token = await server.realtime.create_token(channels=["user:ann:*"], ttl=600)
        assert token.channels == ["user:ann:*"]
        assert token.expires_at > datetime.now(UTC)
        first = await server.realtime.publish("user:ann:inbox", "one")
        second = await server.realtime.publish("user:ann:inbox", "two")
        messages = app.realtime.subscribe("user:ann:inbox", token=token.token, last_event_id=first)
        got = await asyncio.wait_for(anext(messages), 10)
        assert (got.id, got.event, got.data) == (second, "message", "two")
        await messages.aclose()

        with pytest.raises(brik.PermissionError) as refused:
            await anext(app.realtime.subscribe("user:ann:inbox"))
        assert refused.value.code == "realtime_token_required"
        with pytest.raises(brik.PermissionError):
            await app.realtime.publish("user:ann:inbox", "from the app")
        with pytest.raises(brik.InvalidRequestError) as bad:
            await server.realtime.publish("no spaces", 1)
        assert bad.value.param == "channel"


def test_the_blocking_client_publishes_and_subscribes_too(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    got: queue.Queue[RealtimeMessage] = queue.Queue()
    with (
        brik.Client(keys["test_secret"], base_url=brik_server.url) as server,
        brik.Client(keys["test_publishable"], base_url=brik_server.url) as app,
    ):

        def listen() -> None:
            for message in app.realtime.subscribe("news"):
                got.put(message)
                return

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        sent: list[str] = []
        while got.empty() and len(sent) < 50:  # publish until the subscriber, once open, hears
            sent.append(server.realtime.publish("news", {"headline": "hi"}))
            thread.join(0.2)
        message = got.get(timeout=5)
        assert message.data == {"headline": "hi"}
        assert message.id in sent
