"""Publishing a message, and reading back what a reconnecting client missed.

A publish is one Lua script, so it is all or nothing: the message is appended to the channel's
Redis stream (its id — ``<unix ms>-<seq>`` — is the message id, the SSE ``id:``), the stream is
trimmed to the last ``BRIK_REALTIME_HISTORY_MESSAGES`` and set to expire
``BRIK_REALTIME_HISTORY_SECONDS`` after the last publish, and the message is announced on the
channel's pub/sub topic, where each API process's hub (:mod:`.hub`) hears it once.

A client that reconnects with ``Last-Event-ID`` gets every message after that id still in the
history and not older than ``BRIK_REALTIME_HISTORY_SECONDS`` (:func:`read_since`), then the live
ones. Pub/sub alone delivers nothing to a process that is not listening; the history is what
makes a dropped connection lose nothing recent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from redis.asyncio import Redis

from controlplane.realtime.channels import Channel
from controlplane.settings import Settings

MESSAGE_ID_PATTERN = r"^[0-9]{1,19}-[0-9]{1,19}$"  # within Redis's 64-bit halves
EVENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
EVENT_RULE = "1 to 64 characters: letters, digits and _ . : -, starting with a letter or digit"
_MESSAGE_ID = re.compile(MESSAGE_ID_PATTERN)

_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'e', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3])
return id
"""


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    event: str  # "" : the SSE default, "message"
    data: str  # compact JSON
    # Made once, however many streams send it: the SSE text, and the id's place in the order.
    sse: bytes = field(init=False, repr=False, compare=False)
    key: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sse", self.as_sse().encode())
        object.__setattr__(self, "key", id_key(self.id))

    def as_sse(self) -> str:
        event = f"event: {self.event}\n" if self.event else ""
        return f"id: {self.id}\n{event}data: {self.data}\n\n"

    @classmethod
    def announced(cls, raw: bytes) -> Message:
        """A message as :func:`publish` announces it on pub/sub."""
        id_, event, data = raw.decode().split("\n", 2)
        return cls(id_, event, data)


def is_message_id(text: str) -> bool:
    return _MESSAGE_ID.fullmatch(text) is not None


def id_key(message_id: str) -> tuple[int, int]:
    """Message ids in publishing order."""
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq)


@dataclass(frozen=True, slots=True)
class History:
    messages: int
    seconds: int

    @classmethod
    def of(cls, settings: Settings) -> History:
        return cls(settings.realtime_history_messages, settings.realtime_history_seconds)


async def publish(redis: Redis, channel: Channel, event: str, data: str, history: History) -> str:
    """Append, trim and announce; the message's id. Raises ``RedisError`` when Redis is away."""
    result = await redis.eval(  # type: ignore[misc]
        _PUBLISH, 2, channel.history_key, channel.topic,
        str(history.messages), event, data, str(history.seconds * 1000),
    )  # fmt: skip
    return result.decode() if isinstance(result, bytes) else str(result)


async def newest_id(redis: Redis, channel: Channel) -> str | None:
    """The id of the channel's newest kept message, if it keeps any."""
    entries = await redis.xrevrange(channel.history_key, max="+", min="-", count=1)
    if not entries:
        return None
    entry_id = entries[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def read_since(
    redis: Redis, channel: Channel, last_id: str, history: History, now_ms: int
) -> list[Message]:
    """The messages after ``last_id`` still kept, oldest first."""
    oldest_ms = now_ms - history.seconds * 1000
    start = f"({last_id}" if id_key(last_id)[0] >= oldest_ms else f"{oldest_ms}-0"
    entries = await redis.xrange(channel.history_key, min=start, max="+", count=history.messages)
    return [
        Message(
            entry_id.decode(), fields.get(b"e", b"").decode(), fields.get(b"d", b"null").decode()
        )
        for entry_id, fields in entries
    ]
