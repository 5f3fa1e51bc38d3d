"""APNs broadcast channels (iOS 18): Apple's channel management API, and one push per channel.

For an event many people watch — a match, a launch — a Live Activity can listen on a broadcast
channel instead of a push token of its own: the app starts it with ActivityKit's
``pushType: .channel(<channel id>)`` (or a push-to-start payload names the channel in
``aps.input-push-channel``), and one request on the channel then updates or ends it on every
device subscribed. A broadcast cannot *start* a Live Activity. Apple's pages are the contract:
"Sending channel management requests to APNs", "Sending broadcast push notification requests
to APNs" and the broadcast table of "Handling error responses from APNs".

**Channel management** — HTTP/2 over TLS to ``api-manage-broadcast.sandbox.push.apple.com:2195``
or ``api-manage-broadcast.push.apple.com:2196`` (by the credential's environment; a channel of
one environment does not exist in the other), with the project's provider token; the app's
bundle id is in the path, every request carries a fresh ``apns-request-id``:

=======================  =======================================================  ===========
:class:`ApnsChannels`    request                                                  success
=======================  =======================================================  ===========
``create(policy)``       ``POST /1/apps/<bundle>/channels``, body                 201, the id
                         ``{"message-storage-policy": 0|1,                        in
                         "push-type": "LiveActivity"}``                           ``apns-chan
                                                                                  nel-id``
``read(channel_id)``     ``GET /1/apps/<bundle>/channels`` + ``apns-channel-id``  200, the
                                                                                  body above
``delete(channel_id)``   ``DELETE /1/apps/<bundle>/channels`` + the id            204
``list()``               ``GET /1/apps/<bundle>/all-channels``                    200,
                                                                                  ``{"channels
                                                                                  ": [...]}``
=======================  =======================================================  ===========

Channel ids are opaque base64 strings of no promised length. The storage policy is fixed at
creation: :attr:`StoragePolicy.NO_MESSAGE_STORED` (frequent updates, a higher budget) or
:attr:`StoragePolicy.MOST_RECENT_MESSAGE_STORED` (kept for offline devices, at most 8 hours).
An app may hold 10,000 channels per environment; deleting one is final.

**Broadcast** — :meth:`ApnsChannels.broadcast`: ``POST /4/broadcasts/apps/<bundle>`` on the
ordinary APNs hosts (``api.sandbox.push.apple.com`` / ``api.push.apple.com``, port 443), with
``apns-channel-id``, ``apns-push-type: liveactivity``, ``apns-priority`` and
``apns-expiration`` (all four required) and ``apns-request-id`` (the delivery's own id, the same
on every attempt). There is no ``apns-topic``: the bundle id is in the path, without the
``.push-type.liveactivity`` suffix (that is 400 ``TopicDisallowed``). Apple takes 5,120 bytes
of payload here; Brik's accept-time check stays at 4 KB. Success is 200 with an
``apns-unique-id``, Apple's id of the message.

Storage policy and expiration must agree: a nonzero ``apns-expiration`` on a channel that
stores nothing is refused (400 ``BadExpirationDate``). So a broadcast reads its channel's
policy once (:meth:`ApnsChannels.storage_policy`, remembered: it never changes) and spells the
expiration from it — ``0`` (one attempt, never stored) on a no-storage channel, and on a
most-recent-message channel the push's own expiry, capped at the 8 hours Apple keeps a message
(``0`` when it has already passed).

**Errors** form one small tree::

    Exception
    └── ChannelRequestFailed(status, reason)   .temporary, .channel_gone

Every refusal by Apple is a :class:`ChannelRequestFailed` with Apple's status and ``reason``;
a request that got no answer (connection failed, timed out) has status 0. ``temporary`` is
true for 429, 500, 503 and status 0 — try again later, with the same request id for a
broadcast; ``channel_gone`` for 400 ``ChannelNotRegistered`` (deleted, never made, another
app's or the other environment's) — never retry that.

**Hosts** are Apple's unless overridden the way aioapns' are (tests, an egress proxy):
``BRIK_APNS_CHANNELS_HOST`` / ``BRIK_APNS_CHANNELS_PORT`` for channel management,
``BRIK_APNS_HOST`` / ``BRIK_APNS_PORT`` for broadcasts, ``BRIK_APNS_CA_FILE`` trusted for both.
aioapns cannot send either kind of request (its paths are fixed to ``/3/device/``), so this
module speaks HTTP/2 itself, through httpx on h2. The provider token is an ES256 JWT (``kid``
the key id, ``iss`` the team, ``iat``) made on first use and renewed after 30 minutes, as
aioapns does (Apple: no more often than every 20 minutes, no less than every 60).

Build it from a project's APNs credential with :meth:`ApnsChannels.connect`, inside the event
loop; ``await close()`` when done.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType
from typing import Any

import httpx
import jwt

from controlplane.activities import ChannelUnavailable
from controlplane.crypto import KeyRing
from controlplane.models import ProviderCredential
from controlplane.settings import APPLE_PRODUCTION_HOST, APPLE_SANDBOX_HOST, Settings
from workers.providers.apns_connection import tls_context
from workers.providers.base import Credential

__all__ = [
    "ApnsChannels",
    "ChannelConfig",
    "ChannelRequestFailed",
    "StoragePolicy",
]

MANAGEMENT_HOSTS = {  # sandbox → (host, port)
    True: ("api-manage-broadcast.sandbox.push.apple.com", 2195),
    False: ("api-manage-broadcast.push.apple.com", 2196),
}
BROADCAST_HOSTS = {True: APPLE_SANDBOX_HOST, False: APPLE_PRODUCTION_HOST}
MOST_RECENT_MESSAGE_KEPT_SECONDS = 8 * 3600  # Apple keeps a stored broadcast at most this long
PROVIDER_TOKEN_SECONDS = 30 * 60  # a provider token is reused this long, then renewed
TEMPORARY_STATUSES = frozenset({0, 429, 500, 503})  # 0: no answer at all


class StoragePolicy(IntEnum):
    """Whether APNs keeps a channel's latest message for devices that are offline."""

    NO_MESSAGE_STORED = 0
    MOST_RECENT_MESSAGE_STORED = 1


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """A channel's configuration as APNs reads it back."""

    storage_policy: StoragePolicy
    push_type: str  # "LiveActivity", the only kind there is


class ChannelRequestFailed(Exception):
    """APNs refused a channel or broadcast request (``status``, Apple's ``reason``), or the
    request got no answer (``status`` 0)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"APNs answered {status} {reason}" if status else reason)
        self.status = status
        self.reason = reason

    @property
    def temporary(self) -> bool:
        """Worth trying again later: throttled, an APNs failure, or no answer."""
        return self.status in TEMPORARY_STATUSES

    @property
    def channel_gone(self) -> bool:
        """The channel does not exist (deleted, never made, or another app's/environment's)."""
        return (self.status, self.reason) == (400, "ChannelNotRegistered")


class _ProviderToken:
    """The ES256 provider token for one APNs key, renewed every :data:`PROVIDER_TOKEN_SECONDS`."""

    def __init__(self, key: str, key_id: str, team_id: str) -> None:
        self._key, self._key_id, self._team_id = key, key_id, team_id
        self._token = ""
        self._issued_at = 0.0

    def current(self) -> str:
        now = time.time()
        if not self._token or now - self._issued_at >= PROVIDER_TOKEN_SECONDS:
            self._token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)}, self._key, algorithm="ES256",
                headers={"kid": self._key_id},
            )  # fmt: skip
            self._issued_at = now
        return self._token


class ApnsChannels:
    """One app's (bundle id's) broadcast channels, for one APNs key and environment."""

    def __init__(
        self,
        *,
        key: str,
        key_id: str,
        team_id: str,
        bundle_id: str,
        sandbox: bool,
        settings: Settings,
        timeout: float = 30.0,
    ) -> None:
        self.bundle_id = bundle_id
        self._token = _ProviderToken(key, key_id, team_id)
        host, port = MANAGEMENT_HOSTS[sandbox]
        host = settings.apns_channels_host or host
        self.management_url = f"https://{host}:{settings.apns_channels_port or port}"
        push_host = settings.apns_host or BROADCAST_HOSTS[sandbox]
        self.broadcast_url = f"https://{push_host}:{settings.apns_port}"
        self._management = self._client(self.management_url, settings, timeout)
        self._push = self._client(self.broadcast_url, settings, timeout)
        self._policies: dict[str, StoragePolicy] = {}

    @classmethod
    def connect(cls, credential: Credential, settings: Settings) -> ApnsChannels:
        """The channels of a project's APNs credential (its .p8 key, key id, team, topic)."""
        details = credential.details
        return cls(
            key=credential.secret["key"], key_id=details["key_id"], team_id=details["team_id"],
            bundle_id=details["topic"], sandbox=details["environment"] == "sandbox",
            settings=settings,
        )  # fmt: skip

    @staticmethod
    def _client(base_url: str, settings: Settings, timeout: float) -> httpx.AsyncClient:
        # HTTP/2 only, as APNs requires; one multiplexed connection per host.
        return httpx.AsyncClient(
            base_url=base_url, http1=False, http2=True, verify=tls_context(settings),
            timeout=timeout,
        )  # fmt: skip

    # -- channel management ------------------------------------------------------------------

    async def create(self, storage_policy: StoragePolicy = StoragePolicy.NO_MESSAGE_STORED) -> str:
        """A new channel for the app; its id (Apple makes it, at random)."""
        config = {"message-storage-policy": int(storage_policy), "push-type": "LiveActivity"}
        response = await self._manage("POST", "channels", content=json.dumps(config).encode())
        channel_id: str = response.headers.get("apns-channel-id", "")
        if not channel_id:
            raise ChannelRequestFailed(response.status_code, "no apns-channel-id in the answer")
        self._policies[channel_id] = StoragePolicy(storage_policy)
        return channel_id

    async def read(self, channel_id: str) -> ChannelConfig:
        """The channel's configuration (its storage policy); ``channel_gone`` if there is none."""
        response = await self._manage("GET", "channels", channel_id=channel_id)
        try:
            body = response.json()
            config = ChannelConfig(
                StoragePolicy(body["message-storage-policy"]), str(body["push-type"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ChannelRequestFailed(response.status_code, "unreadable channel") from exc
        self._policies[channel_id] = config.storage_policy
        return config

    async def delete(self, channel_id: str) -> None:
        """Delete the channel for good (messages already stored may still be delivered)."""
        await self._manage("DELETE", "channels", channel_id=channel_id)
        self._policies.pop(channel_id, None)

    async def list(self) -> list[str]:
        """The ids of all the app's channels."""
        response = await self._manage("GET", "all-channels")
        try:
            channels = response.json()["channels"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ChannelRequestFailed(response.status_code, "unreadable channel list") from exc
        return [str(channel) for channel in channels or []]

    async def storage_policy(self, channel_id: str) -> StoragePolicy:
        """The channel's storage policy, read from APNs once and then remembered."""
        policy = self._policies.get(channel_id)
        if policy is None:
            policy = (await self.read(channel_id)).storage_policy
        return policy

    async def _manage(
        self, method: str, resource: str, *, channel_id: str | None = None, content: bytes = b""
    ) -> httpx.Response:
        headers = {"apns-request-id": str(uuid.uuid4())}
        if channel_id is not None:
            headers["apns-channel-id"] = channel_id
        path = f"/1/apps/{self.bundle_id}/{resource}"
        return await self._request(self._management, method, path, headers, content)

    # -- broadcasting ------------------------------------------------------------------------

    async def broadcast(
        self,
        channel_id: str,
        payload: Mapping[str, Any],
        *,
        request_id: str,
        priority: int = 10,
        expires_at: int | None = None,
    ) -> str | None:
        """Send ``payload`` (a Live Activity update or end) on the channel; Apple's
        ``apns-unique-id`` for it. ``request_id`` (a UUID) should be the same on every attempt
        of one update; ``expires_at`` (unix seconds) is spelled as the channel allows."""
        policy = await self.storage_policy(channel_id)
        headers = {
            "apns-channel-id": channel_id,
            "apns-request-id": request_id,
            "apns-push-type": "liveactivity",
            "apns-priority": str(priority),
            "apns-expiration": str(_expiration(policy, expires_at)),
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        path = f"/4/broadcasts/apps/{self.bundle_id}"
        response = await self._request(self._push, "POST", path, headers, body)
        unique_id: str | None = response.headers.get("apns-unique-id")
        return unique_id

    # -- the wire ----------------------------------------------------------------------------

    async def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        headers: dict[str, str],
        content: bytes,
    ) -> httpx.Response:
        headers["authorization"] = f"bearer {self._token.current()}"
        try:
            response = await client.request(method, path, headers=headers, content=content)
        except httpx.TimeoutException as exc:
            raise ChannelRequestFailed(0, "APNs did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ChannelRequestFailed(0, f"APNs connection failed: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise ChannelRequestFailed(response.status_code, _reason(response))
        return response

    async def close(self) -> None:
        await self._management.aclose()
        await self._push.aclose()

    async def __aenter__(self) -> ApnsChannels:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _expiration(policy: StoragePolicy, expires_at: int | None) -> int:
    """``apns-expiration`` for a broadcast: what the channel's storage policy allows."""
    if policy is StoragePolicy.NO_MESSAGE_STORED:
        return 0
    now = int(time.time())
    kept_until = now + MOST_RECENT_MESSAGE_KEPT_SECONDS
    if expires_at is None:
        return kept_until
    return 0 if expires_at <= now else min(expires_at, kept_until)


def _reason(response: httpx.Response) -> str:
    try:
        reason = response.json().get("reason")
    except (ValueError, AttributeError):
        reason = None
    return str(reason) if reason else f"HTTP {response.status_code}"


class ChannelAdmin:
    """Opens and closes a project's broadcast channels for its Live Activities: what
    :class:`controlplane.activities.BroadcastChannels` asks, answered with the project's APNs
    credential (a test-mode activity gets a sandbox channel id: nothing reaches Apple)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def _channels(self, project_id: str, keyring: KeyRing) -> ApnsChannels:
        row = await ProviderCredential.get_or_none(project_id=project_id, provider="apns")
        if row is None:
            raise ChannelUnavailable(
                "This project has no APNs credential: PUT /v1/credentials/apns first.",
                temporary=False,
            )
        secret = json.loads(keyring.decrypt(row.secret_encrypted))
        return ApnsChannels.connect(Credential(secret, row.details), self._settings)

    async def open(
        self, project_id: str, keyring: KeyRing, *, test_mode: bool, keep_latest: bool
    ) -> str:
        if test_mode:
            return base64.b64encode(b"sandbox:" + secrets.token_bytes(12)).decode()
        policy = (
            StoragePolicy.MOST_RECENT_MESSAGE_STORED if keep_latest
            else StoragePolicy.NO_MESSAGE_STORED
        )  # fmt: skip
        async with await self._channels(project_id, keyring) as channels:
            try:
                return await channels.create(policy)
            except ChannelRequestFailed as exc:
                raise _unavailable(exc, "create a broadcast channel") from None

    async def close(
        self, project_id: str, channel_id: str, keyring: KeyRing, *, test_mode: bool
    ) -> None:
        if test_mode:
            return
        async with await self._channels(project_id, keyring) as channels:
            try:
                await channels.delete(channel_id)
            except ChannelRequestFailed as exc:
                if not exc.channel_gone:  # already gone is what was asked
                    raise _unavailable(exc, "delete a broadcast channel") from None


_CHANNEL_FIXES = {
    "FeatureNotEnabled": "enable the Broadcast capability for the app's App ID in the Apple "
    "Developer portal",
    "TopicDisallowed": "the APNs key may not send to this bundle id",
}


def _unavailable(exc: ChannelRequestFailed, doing: str) -> ChannelUnavailable:
    fix = _CHANNEL_FIXES.get(exc.reason, "")
    said = f"APNs refused to {doing}: {exc.reason}" if exc.status else (
        f"APNs did not answer a request to {doing}"
    )  # fmt: skip
    return ChannelUnavailable(f"{said}{f' ({fix})' if fix else ''}.", temporary=exc.temporary)
