"""Writes to a streaming response made in the caller, in order even when the server must wait."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from controlplane.api.eager_send import EagerSender


class Server:
    """An ASGI ``send`` that writes at once unless paused, as uvicorn's does (it waits for the
    socket to drain while the client reads slower than the stream writes)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.drained = asyncio.Event()
        self.drained.set()
        self.broken: Exception | None = None

    async def send(self, message: Message) -> None:
        if not self.drained.is_set():
            await self.drained.wait()
        if self.broken is not None:
            raise self.broken
        self.written.append(message["body"])


async def test_a_write_the_server_takes_at_once_is_written_before_write_returns() -> None:
    server = Server()
    writer = EagerSender(server.send, max_waiting=10, give_up=lambda: None)
    writer.write(b"one")
    assert server.written == [b"one"]  # no task, no turn of the loop
    writer.write(b"two")
    assert server.written == [b"one", b"two"]


async def test_writes_behind_one_that_waits_go_after_it_in_order() -> None:
    server = Server()
    writer = EagerSender(server.send, max_waiting=10, give_up=lambda: None)
    server.drained.clear()
    for chunk in (b"a", b"b", b"c"):
        writer.write(chunk)
    await asyncio.sleep(0.01)
    assert server.written == []
    server.drained.set()
    await writer.flush()
    assert b"".join(server.written) == b"abc"
    assert server.written[0] == b"a"  # the one that waited, then the rest together
    writer.write(b"d")
    assert server.written[-1] == b"d"  # written at once again


async def test_a_reader_too_slow_for_the_writes_waiting_is_given_up_on() -> None:
    server = Server()
    given_up: list[bool] = []
    writer = EagerSender(server.send, max_waiting=3, give_up=lambda: given_up.append(True))
    server.drained.clear()
    for n in range(4):
        writer.write(b"%d" % n)
    assert given_up == []  # the first one waits, three queue behind it
    writer.write(b"4")
    assert given_up == [True]
    server.drained.set()
    await writer.flush()
    assert b"".join(server.written) == b"01234"  # given up on is for the caller to act on


async def test_a_send_that_fails_ends_the_writing_and_is_kept() -> None:
    server = Server()
    given_up: list[bool] = []
    writer = EagerSender(server.send, max_waiting=10, give_up=lambda: given_up.append(True))
    server.broken = ConnectionResetError("gone")
    writer.write(b"x")
    assert isinstance(writer.failed, ConnectionResetError)
    assert given_up == [True]
    server.broken = None
    writer.write(b"y")  # nothing more is written once a send failed
    assert server.written == []


async def test_a_send_that_fails_after_waiting_is_kept_and_drops_what_queued() -> None:
    server = Server()
    given_up: list[bool] = []
    writer = EagerSender(server.send, max_waiting=10, give_up=lambda: given_up.append(True))
    server.drained.clear()
    writer.write(b"x")
    writer.write(b"y")
    server.broken = BrokenPipeError("gone")
    server.drained.set()
    await writer.flush()
    assert isinstance(writer.failed, BrokenPipeError)
    assert (given_up, server.written) == ([True], [])
