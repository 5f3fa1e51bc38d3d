"""A fake APNs: HTTP/2 over TLS, provider-token (JWT) auth, scripted outcomes, a full log.

What it checks, as Apple does (reasons are Apple's):

* ``POST /3/device/<hex token>`` only (405 ``MethodNotAllowed``, 404 ``BadPath``,
  400 ``BadDeviceToken``);
* the ES256 provider token: present (403 ``MissingProviderToken``), a known ``kid`` whose
  signature verifies and whose ``iss`` is that key's team (403 ``InvalidProviderToken``),
  issued less than an hour ago (403 ``ExpiredProviderToken``);
* ``apns-topic`` present (400 ``MissingTopic``) and, for ``apns-push-type: liveactivity`` and
  ``widgets``, ending in ``.push-type.liveactivity`` / ``.push-type.widgets`` (400
  ``BadTopic``: Apple's answer to a wrong suffix is not documented); ``apns-push-type`` known
  (400 ``InvalidPushType``); ``apns-priority`` 1, 5 or 10 (400 ``BadPriority``); ``apns-id`` a
  UUID (400 ``BadMessageId``); ``apns-expiration`` an integer (400 ``BadExpirationDate``);
  ``apns-collapse-id`` at most 64 bytes (400 ``BadCollapseId``);
* the payload: a JSON object (400 ``PayloadEmpty``) of at most 4096 bytes
  (413 ``PayloadTooLarge``).

A good request gets 200 with headers only, echoing ``apns-id`` (or a fresh one). Tests script
per-token outcomes (:meth:`FakeAPNs.script`): an error status and reason (a 410 carries a
timestamp), a slow answer, or a dropped connection; ``chaos`` makes a share of all
requests fail temporarily. Every request is recorded (:attr:`FakeAPNs.received`) with what
was answered, so tests can count accepted deliveries per ``(apns-id, token)``.

**Broadcast channels** (iOS 18 Live Activities), as Apple's "Sending channel management
requests to APNs" and "Sending broadcast push notification requests to APNs" describe them,
with the reasons of the broadcast table of "Handling error responses from APNs":

* the channel management API listens on a port of its own (:attr:`FakeAPNs.management_port`;
  Apple's is another host, ``api-manage-broadcast[.sandbox].push.apple.com``), per bundle id
  from the path: ``POST /1/apps/<bundle>/channels`` with ``{"message-storage-policy": 0|1,
  "push-type": "LiveActivity"}`` → 201 and the new id in ``apns-channel-id`` (400
  ``BadRequestPayload`` for a body that is no JSON object, ``BadRequestParams`` for an unknown
  key or a policy other than 0 or 1, ``MissingPushType``/``InvalidPushType``,
  ``CannotCreateChannelConfig`` past :attr:`FakeAPNs.max_channels`); ``GET`` (200, the
  channel's configuration) and ``DELETE`` (204) of ``/1/apps/<bundle>/channels`` with
  ``apns-channel-id`` (400 ``MissingChannelId``, ``BadChannelId`` — not base64, or longer than
  :data:`MAX_CHANNEL_ID_LENGTH` —, ``ChannelNotRegistered`` — unknown, deleted, or another
  app's); ``GET /1/apps/<bundle>/all-channels`` → 200 ``{"channels": [...]}``;
* ``POST /4/broadcasts/apps/<bundle>`` on the push port, with ``apns-channel-id`` (the same
  three reasons), ``apns-push-type: liveactivity`` (``MissingPushType``/``InvalidPushType``),
  ``apns-priority`` 1, 5 or 10 (``BadPriority``), ``apns-expiration`` an integer, and ``0`` on
  a channel that stores no message (``BadExpirationDate``), ``apns-request-id`` a UUID
  (``BadMessageId``), and a JSON object of at most 5,120 bytes (413 ``PayloadTooLarge``, 400
  ``PayloadEmpty``/``BadRequestPayload``) → 200 with ``apns-request-id`` and
  ``apns-unique-id``. Every broadcast is recorded (:attr:`FakeAPNs.broadcasts`; count them
  with :meth:`FakeAPNs.broadcasts_per_channel`) and can be scripted per channel
  (:meth:`FakeAPNs.script_broadcast`);
* both check the provider token as above (403), refuse a bundle id with a push-type suffix
  (400 ``TopicDisallowed``) or one whose broadcast capability is off
  (:attr:`FakeAPNs.broadcast_disabled`: 400 ``FeatureNotEnabled``); management requests are
  recorded too (:attr:`FakeAPNs.channel_requests`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import re
import secrets
import ssl
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded
from h2.exceptions import ProtocolError, StreamClosedError

MAX_PAYLOAD_BYTES = 4096
PROVIDER_TOKEN_MAX_AGE = 3600
PUSH_TYPES = frozenset(
    {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm",
     "liveactivity", "pushtotalk", "widgets", "controls"}
)  # fmt: skip
# The topic suffix each push type needs (the app's bundle id, then this).
TOPIC_SUFFIXES = {"liveactivity": ".push-type.liveactivity", "widgets": ".push-type.widgets"}
_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")
_DEVICE_PATH = re.compile(r"^/3/device/(?P<token>[^/?]+)$")

MAX_BROADCAST_PAYLOAD_BYTES = 5120  # Apple: "a maximum size of 5 KB (5,120 bytes)"
MAX_CHANNELS = 10_000  # per app and environment
# Apple gives no length ("don't make assumptions on the channel ID size"); the fake's own bound.
MAX_CHANNEL_ID_LENGTH = 256
STORAGE_POLICIES = (0, 1)  # No Message Stored, Most Recent Message Stored
_CHANNELS_PATH = re.compile(r"^/1/apps/(?P<bundle>[^/?]+)/(?P<what>channels|all-channels)$")
_BROADCAST_PATH = re.compile(r"^/4/broadcasts/apps/(?P<bundle>[^/?]+)$")
_CHANNEL_KEYS = frozenset({"message-storage-policy", "push-type"})


@dataclass(frozen=True)
class Outcome:
    """What the fake answers to one request for a token."""

    status: int = 200
    reason: str | None = None
    delay: float = 0.0
    drop_connection: bool = False

    @classmethod
    def ok(cls, delay: float = 0.0) -> Outcome:
        return cls(delay=delay)

    @classmethod
    def error(cls, status: int, reason: str) -> Outcome:
        return cls(status=status, reason=reason)

    @classmethod
    def dropped(cls) -> Outcome:
        """Close the connection without answering (the provider's fate unknown to the client)."""
        return cls(status=0, drop_connection=True)


UNREGISTERED = Outcome.error(410, "Unregistered")
EXPIRED_TOKEN = Outcome.error(410, "ExpiredToken")
BAD_DEVICE_TOKEN = Outcome.error(400, "BadDeviceToken")
DEVICE_TOKEN_NOT_FOR_TOPIC = Outcome.error(400, "DeviceTokenNotForTopic")
TOO_MANY_REQUESTS = Outcome.error(429, "TooManyRequests")
INTERNAL_SERVER_ERROR = Outcome.error(500, "InternalServerError")
SERVICE_UNAVAILABLE = Outcome.error(503, "ServiceUnavailable")
EXPIRED_PROVIDER_TOKEN = Outcome.error(403, "ExpiredProviderToken")


@dataclass(frozen=True)
class ReceivedPush:
    """One request as the fake saw it, and what it answered."""

    apns_id: str
    token: str
    headers: dict[str, str]
    payload: Any
    status: int
    reason: str | None
    received_at: float

    @property
    def accepted(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Channel:
    """A broadcast channel the fake made for one app."""

    channel_id: str
    bundle_id: str
    storage_policy: int
    push_type: str = "LiveActivity"


@dataclass(frozen=True)
class ReceivedBroadcast:
    """One broadcast request as the fake saw it, and what it answered."""

    request_id: str
    channel_id: str
    bundle_id: str
    headers: dict[str, str]
    payload: Any
    status: int
    reason: str | None
    received_at: float

    @property
    def accepted(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class ChannelRequest:
    """One channel management request, and what it answered."""

    method: str
    path: str
    request_id: str
    headers: dict[str, str]
    status: int
    reason: str | None


@dataclass(frozen=True)
class _Answer:
    """A broadcast or management answer: status, reason, headers beside the request id, body."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None


@dataclass
class SigningKey:
    team_id: str
    public_key: Any  # a cryptography EC public key


@dataclass
class FakeAPNs:
    """The server; ``await start()``, point aioapns at ``host``/``port``, ``await stop()``."""

    tls: ssl.SSLContext
    keys: dict[str, SigningKey] = field(default_factory=dict)
    chaos: float = 0.0
    chaos_outcomes: tuple[Outcome, ...] = (
        TOO_MANY_REQUESTS, INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE,
    )  # fmt: skip
    seed: int = 0
    default_delay: float = 0.0  # seconds before answering an unscripted request
    received: list[ReceivedPush] = field(default_factory=list)
    # Broadcast channels: by channel id; bundle ids whose broadcast capability is off.
    channels: dict[str, Channel] = field(default_factory=dict)
    broadcast_disabled: set[str] = field(default_factory=set)
    max_channels: int = MAX_CHANNELS
    broadcasts: list[ReceivedBroadcast] = field(default_factory=list)
    channel_requests: list[ChannelRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._scripts: dict[str, deque[Outcome]] = defaultdict(deque)
        self._broadcast_scripts: dict[str, deque[Outcome]] = defaultdict(deque)
        self._random = random.Random(self.seed)
        self._server: asyncio.Server | None = None
        self._management_server: asyncio.Server | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.management_port = 0  # the channel management API (Apple: its own host)
        self.connections = 0
        self._transports: set[asyncio.Transport] = set()
        # Apple verifies a provider token's signature once, not on every request; its age is
        # still checked each time. Keyed by the token text, so a rogue token is never cached.
        self._verified_tokens: dict[str, float] = {}

    def add_key(self, key_id: str, team_id: str, public_key: Any) -> None:
        self.keys[key_id] = SigningKey(team_id, public_key)
        self._verified_tokens.clear()

    def script(self, token: str, *outcomes: Outcome) -> None:
        """Answer the next requests for ``token`` with ``outcomes``, then 200 again."""
        self._scripts[token.lower()].extend(outcomes)

    def script_broadcast(self, channel_id: str, *outcomes: Outcome) -> None:
        """Answer the next valid broadcasts on ``channel_id`` with ``outcomes``, then 200."""
        self._broadcast_scripts[channel_id].extend(outcomes)

    def channels_of(self, bundle_id: str) -> list[str]:
        """The ids of ``bundle_id``'s channels, oldest first."""
        return [c.channel_id for c in self.channels.values() if c.bundle_id == bundle_id]

    def broadcasts_per_channel(self) -> dict[str, int]:
        """Broadcasts accepted on each channel id."""
        counts: dict[str, int] = defaultdict(int)
        for broadcast in self.broadcasts:
            if broadcast.accepted:
                counts[broadcast.channel_id] += 1
        return dict(counts)

    def accepted(self) -> list[ReceivedPush]:
        return [push for push in self.received if push.accepted]

    def deliveries_per_device(self) -> dict[tuple[str, str], int]:
        """Times each ``(apns-id, token)`` was accepted; anything above 1 is a duplicate."""
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for push in self.accepted():
            counts[(push.apns_id, push.token)] += 1
        return dict(counts)

    async def start(self, host: str = "127.0.0.1", port: int = 0, management_port: int = 0) -> None:
        """Listen for pushes and broadcasts on ``port`` and for channel management requests on
        ``management_port`` (0: a free port each; read :attr:`port`, :attr:`management_port`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _APNsConnection(self), host, port, ssl=self.tls
        )
        self._management_server = await loop.create_server(
            lambda: _APNsConnection(self, management=True), host, management_port, ssl=self.tls
        )
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        self.management_port = self._management_server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        servers = [s for s in (self._server, self._management_server) if s is not None]
        for server in servers:
            server.close()
        for transport in list(self._transports):
            transport.abort()
        for server in servers:
            await server.wait_closed()
        self._server = self._management_server = None

    async def __aenter__(self) -> FakeAPNs:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # -- request handling ------------------------------------------------------------------

    def _next_outcome(self, token: str) -> Outcome:
        script = self._scripts.get(token.lower())
        if script:
            return script.popleft()
        if self.chaos and self._random.random() < self.chaos:
            return self._random.choice(self.chaos_outcomes)
        return Outcome.ok(delay=self.default_delay)

    def _check_provider_token(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return "MissingProviderToken"
        token = authorization[7:].strip()
        verified = self._verified_tokens.get(token)
        if verified is None:
            problem = self._verify_provider_token(token)
            if problem is not None:
                return problem
            verified = self._verified_tokens[token]
        if time.time() - verified > PROVIDER_TOKEN_MAX_AGE:
            return "ExpiredProviderToken"
        return None

    def _verify_provider_token(self, token: str) -> str | None:
        """Check a token's signature and claims once; remember its ``iat`` if it is good."""
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.get(str(header.get("kid")))
            if key is None or header.get("alg") != "ES256":
                return "InvalidProviderToken"
            claims = jwt.decode(
                token, key.public_key, algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )  # fmt: skip
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if claims.get("iss") != key.team_id:
            return "InvalidProviderToken"
        self._verified_tokens[token] = float(claims["iat"])
        return None

    def check(self, headers: dict[str, str], body: bytes) -> tuple[int, str | None, str, Any]:
        """Validate one request as APNs does: ``(status, reason, token, payload)``."""
        if headers.get(":method") != "POST":
            return 405, "MethodNotAllowed", "", None
        match = _DEVICE_PATH.match(headers.get(":path", ""))
        if match is None:
            return 404, "BadPath", "", None
        token = match["token"]
        if not _TOKEN.match(token):
            return 400, "BadDeviceToken", token, None
        problem = self._check_provider_token(headers.get("authorization"))
        if problem is not None:
            return 403, problem, token, None
        topic = headers.get("apns-topic")
        push_type = headers.get("apns-push-type", "alert")
        apns_id = headers.get("apns-id")
        failures = [
            (not topic, "MissingTopic"),
            (push_type not in PUSH_TYPES, "InvalidPushType"),
            (not (topic or "").endswith(TOPIC_SUFFIXES.get(push_type, "")), "BadTopic"),
            (headers.get("apns-priority", "10") not in {"1", "5", "10"}, "BadPriority"),
            (apns_id is not None and not _is_uuid(apns_id), "BadMessageId"),
            (not headers.get("apns-expiration", "0").isdigit(), "BadExpirationDate"),
            (len(headers.get("apns-collapse-id", "").encode()) > 64, "BadCollapseId"),
        ]  # fmt: skip
        for failed, reason in failures:
            if failed:
                return 400, reason, token, None
        if len(body) > MAX_PAYLOAD_BYTES:
            return 413, "PayloadTooLarge", token, None
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return 400, "PayloadEmpty", token, None
        return 200, None, token, payload

    # -- broadcast channels ----------------------------------------------------------------

    def _check_app(self, headers: dict[str, str], bundle_id: str) -> tuple[int, str] | None:
        """What Apple checks first on both broadcast hosts: the token, then the app."""
        problem = self._check_provider_token(headers.get("authorization"))
        if problem is not None:
            return 403, problem
        if ".push-type." in bundle_id:
            return 400, "TopicDisallowed"  # Apple: no push type suffix on the bundle id
        if bundle_id in self.broadcast_disabled:
            return 400, "FeatureNotEnabled"
        request_id = headers.get("apns-request-id")
        if request_id is not None and not _is_uuid(request_id):
            return 400, "BadMessageId"
        return None

    def _find_channel(self, headers: dict[str, str], bundle_id: str) -> Channel | str:
        """The channel ``apns-channel-id`` names for ``bundle_id``, or Apple's reason why not."""
        channel_id = headers.get("apns-channel-id")
        if not channel_id:
            return "MissingChannelId"
        if len(channel_id) > MAX_CHANNEL_ID_LENGTH or not _is_base64(channel_id):
            return "BadChannelId"
        channel = self.channels.get(channel_id)
        if channel is None or channel.bundle_id != bundle_id:
            return "ChannelNotRegistered"
        return channel

    def manage(self, headers: dict[str, str], body: bytes) -> _Answer:
        """Answer one channel management request as APNs does (creating or deleting)."""
        method, path = headers.get(":method", ""), headers.get(":path", "")
        match = _CHANNELS_PATH.match(path)
        if match is None:
            return _Answer(404, "BadPath")
        bundle_id, what = match["bundle"], match["what"]
        allowed = {"POST", "GET", "DELETE"} if what == "channels" else {"GET"}
        if method not in allowed:
            return _Answer(405, "MethodNotAllowed")
        problem = self._check_app(headers, bundle_id)
        if problem is not None:
            return _Answer(*problem)
        if what == "all-channels":
            return _Answer(200, body={"channels": self.channels_of(bundle_id)})
        if method == "POST":
            return self._create_channel(bundle_id, body)
        channel = self._find_channel(headers, bundle_id)
        if isinstance(channel, str):
            return _Answer(400, channel)
        if method == "DELETE":
            del self.channels[channel.channel_id]
            return _Answer(204)
        return _Answer(200, body={
            "message-storage-policy": channel.storage_policy, "push-type": channel.push_type,
        })  # fmt: skip

    def _create_channel(self, bundle_id: str, body: bytes) -> _Answer:
        try:
            config = json.loads(body) if body else None
        except ValueError:
            config = None
        if not isinstance(config, dict):
            return _Answer(400, "BadRequestPayload")
        policy = config.get("message-storage-policy")
        if set(config) - _CHANNEL_KEYS or policy not in STORAGE_POLICIES or policy is True:
            return _Answer(400, "BadRequestParams")
        push_type = config.get("push-type")
        if push_type is None:
            return _Answer(400, "MissingPushType")
        if not isinstance(push_type, str) or push_type.lower() != "liveactivity":
            return _Answer(400, "InvalidPushType")
        if len(self.channels_of(bundle_id)) >= self.max_channels:
            return _Answer(400, "CannotCreateChannelConfig")
        channel_id = base64.b64encode(secrets.token_bytes(16)).decode()
        self.channels[channel_id] = Channel(channel_id, bundle_id, int(policy))
        return _Answer(201, headers=(("apns-channel-id", channel_id),))

    def check_broadcast(self, headers: dict[str, str], body: bytes) -> tuple[_Answer, str, Any]:
        """Validate one broadcast as APNs does: ``(answer, channel id, payload)``."""
        if headers.get(":method") != "POST":
            return _Answer(405, "MethodNotAllowed"), "", None
        match = _BROADCAST_PATH.match(headers.get(":path", ""))
        if match is None:
            return _Answer(404, "BadPath"), "", None
        bundle_id = match["bundle"]
        problem = self._check_app(headers, bundle_id)
        channel_id = headers.get("apns-channel-id", "")
        if problem is not None:
            return _Answer(*problem), channel_id, None
        channel = self._find_channel(headers, bundle_id)
        if isinstance(channel, str):
            return _Answer(400, channel), channel_id, None
        push_type = headers.get("apns-push-type")
        expiration = headers.get("apns-expiration", "")
        failures = [
            (push_type is None, "MissingPushType"),
            ((push_type or "").lower() != "liveactivity", "InvalidPushType"),
            (headers.get("apns-priority") not in {"1", "5", "10"}, "BadPriority"),
            (not expiration.isdigit(), "BadExpirationDate"),
            # A channel that stores nothing takes only "attempt once": a nonzero expiration
            # "results in message rejection".
            (channel.storage_policy == 0 and expiration.strip("0") != "", "BadExpirationDate"),
        ]  # fmt: skip
        for failed, reason in failures:
            if failed:
                return _Answer(400, reason), channel_id, None
        if len(body) > MAX_BROADCAST_PAYLOAD_BYTES:
            return _Answer(413, "PayloadTooLarge"), channel_id, None
        if not body:
            return _Answer(400, "PayloadEmpty"), channel_id, None
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return _Answer(400, "BadRequestPayload"), channel_id, None
        return _Answer(200, headers=(("apns-unique-id", str(uuid.uuid4())),)), channel_id, payload

    def _next_broadcast_outcome(self, channel_id: str) -> Outcome:
        script = self._broadcast_scripts.get(channel_id)
        if script:
            return script.popleft()
        if self.chaos and self._random.random() < self.chaos:
            return self._random.choice(self.chaos_outcomes)
        return Outcome.ok(delay=self.default_delay)


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


class _APNsConnection(asyncio.Protocol):
    """One client connection: an h2 server state machine."""

    def __init__(self, fake: FakeAPNs, management: bool = False) -> None:
        self.fake = fake
        self.management = management  # the channel management host, not the push host
        # h2's generic header validation is off both ways: requests come from aioapns, whose
        # own h2 already validates every header it sends, and our answers are a few fixed,
        # valid headers. Checking them twice made the fake, not Brik, the bottleneck of the
        # pipeline benchmark. What APNs itself checks, ``FakeAPNs.check`` checks.
        config = H2Configuration(
            client_side=False, header_encoding="utf-8",
            validate_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False,
        )  # fmt: skip
        self.conn = H2Connection(config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.fake.connections += 1
        self.fake._transports.add(transport)
        self.conn.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = (dict(_str_headers(event.headers)), bytearray())
            elif isinstance(event, DataReceived):
                self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                headers, body = self.streams.pop(event.stream_id)
                self._answer(event.stream_id, headers, bytes(body))
            elif isinstance(event, ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self._flush()

    def _answer(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        if self.management:
            self._answer_management(stream_id, headers, body)
            return
        if headers.get(":path", "").startswith("/4/"):
            self._answer_broadcast(stream_id, headers, body)
            return
        status, reason, token, payload = self.fake.check(headers, body)
        outcome = self.fake._next_outcome(token) if status == 200 else Outcome(status, reason)
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        self.fake.received.append(
            ReceivedPush(
                apns_id=apns_id.lower(),
                token=token.lower(),
                headers={k: v for k, v in headers.items() if not k.startswith(":")},
                payload=payload,
                status=0 if outcome.drop_connection else outcome.status,
                reason=outcome.reason,
                received_at=time.time(),
            )
        )
        if outcome.drop_connection:
            if self.transport is not None:
                self.transport.abort()
            return
        if outcome.delay:
            asyncio.get_running_loop().call_later(
                outcome.delay, self._respond, stream_id, apns_id, outcome
            )
        else:
            self._respond(stream_id, apns_id, outcome)

    def _respond(self, stream_id: int, apns_id: str, outcome: Outcome) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        response_headers = [(":status", str(outcome.status)), ("apns-id", apns_id)]
        try:
            if outcome.status == 200:
                self.conn.send_headers(stream_id, response_headers, end_stream=True)
            else:
                error: dict[str, Any] = {"reason": outcome.reason}
                if outcome.status == 410:
                    error["timestamp"] = int(time.time() * 1000)
                data = json.dumps(error).encode()
                self.conn.send_headers(
                    stream_id,
                    [*response_headers, ("content-type", "application/json")],
                )
                self.conn.send_data(stream_id, data, end_stream=True)
        except StreamClosedError:
            return
        self._flush()

    def _answer_management(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        answer = self.fake.manage(headers, body)
        request_id = headers.get("apns-request-id") or str(uuid.uuid4())
        request = ChannelRequest(
            method=headers.get(":method", ""), path=headers.get(":path", ""),
            request_id=request_id,
            headers={k: v for k, v in headers.items() if not k.startswith(":")},
            status=answer.status, reason=answer.reason,
        )  # fmt: skip
        self.fake.channel_requests.append(request)
        self._send(stream_id, request_id, answer)

    def _answer_broadcast(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        answer, channel_id, payload = self.fake.check_broadcast(headers, body)
        if answer.status == 200:
            outcome = self.fake._next_broadcast_outcome(channel_id)
            if outcome.status != 200 or outcome.drop_connection:
                answer = _Answer(outcome.status, outcome.reason)
        else:
            outcome = Outcome(answer.status, answer.reason)
        match = _BROADCAST_PATH.match(headers.get(":path", ""))
        request_id = headers.get("apns-request-id") or str(uuid.uuid4())
        received = ReceivedBroadcast(
            request_id=request_id, channel_id=channel_id,
            bundle_id=match["bundle"] if match else "",
            headers={k: v for k, v in headers.items() if not k.startswith(":")},
            payload=payload, status=0 if outcome.drop_connection else answer.status,
            reason=answer.reason, received_at=time.time(),
        )  # fmt: skip
        self.fake.broadcasts.append(received)
        if outcome.drop_connection:
            if self.transport is not None:
                self.transport.abort()
            return
        if outcome.delay:
            asyncio.get_running_loop().call_later(
                outcome.delay, self._send, stream_id, request_id, answer
            )
        else:
            self._send(stream_id, request_id, answer)

    def _send(self, stream_id: int, request_id: str, answer: _Answer) -> None:
        """A broadcast or management answer: ``apns-request-id`` always, a JSON body if any."""
        if self.transport is None or self.transport.is_closing():
            return
        headers = [(":status", str(answer.status)), ("apns-request-id", request_id),
                   *answer.headers]  # fmt: skip
        body = answer.body if answer.reason is None else {"reason": answer.reason}
        try:
            if body is None:
                self.conn.send_headers(stream_id, headers, end_stream=True)
            else:
                headers.append(("content-type", "application/json"))
                self.conn.send_headers(stream_id, headers)
                self.conn.send_data(stream_id, json.dumps(body).encode(), end_stream=True)
        except StreamClosedError:
            return
        self._flush()

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.fake._transports.discard(self.transport)
        self.transport = None


def _str_headers(headers: Iterable[tuple[Any, Any]]) -> Iterable[tuple[str, str]]:
    for name, value in headers:
        yield (
            name.decode() if isinstance(name, bytes) else name,
            value.decode() if isinstance(value, bytes) else value,
        )
