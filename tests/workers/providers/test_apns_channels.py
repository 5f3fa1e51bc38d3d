"""APNs broadcast channels: the channel management client and broadcasts, over HTTP/2 and TLS
against the fake APNs, as Apple's "Sending channel management requests to APNs" and "Sending
broadcast push notification requests to APNs" describe them."""

from __future__ import annotations

import base64
import socket
import time
import uuid
from typing import cast

import pytest

from controlplane.settings import Settings
from tests.support.apple import TOPIC, SigningKey, new_signing_key
from workers.fakes.apns import FakeAPNs
from workers.providers.apns_channels import (
    MOST_RECENT_MESSAGE_KEPT_SECONDS,
    ApnsChannels,
    ChannelConfig,
    ChannelRequestFailed,
    StoragePolicy,
)
from workers.providers.base import Credential

UPDATE = {"aps": {"event": "update", "timestamp": 1, "content-state": {"score": "1-0"}}}


def channels_for(settings: Settings, key: SigningKey, bundle_id: str = TOPIC) -> ApnsChannels:
    credential = Credential(
        secret={"key": key.pem},
        details={"key_id": key.key_id, "team_id": key.team_id, "topic": bundle_id,
                 "environment": "sandbox"},
    )  # fmt: skip
    return ApnsChannels.connect(credential, settings)


async def test_a_channel_is_created_listed_read_and_deleted(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    async with channels_for(apns_settings, signing_key) as channels:
        match = await channels.create(StoragePolicy.MOST_RECENT_MESSAGE_STORED)
        launch = await channels.create()
        assert match != launch
        assert base64.b64decode(match, validate=True)  # Apple's ids are base64
        assert set(await channels.list()) == {match, launch}
        assert await channels.read(match) == ChannelConfig(
            StoragePolicy.MOST_RECENT_MESSAGE_STORED, "LiveActivity"
        )
        assert (await channels.read(launch)).storage_policy is StoragePolicy.NO_MESSAGE_STORED
        await channels.delete(match)
        assert await channels.list() == [launch]
    # Each operation on Apple's paths and methods, for the bundle id, signed, with a request id.
    requests = [(r.method, r.path, r.status) for r in apns_fake.channel_requests]
    assert requests == [
        ("POST", f"/1/apps/{TOPIC}/channels", 201),
        ("POST", f"/1/apps/{TOPIC}/channels", 201),
        ("GET", f"/1/apps/{TOPIC}/all-channels", 200),
        ("GET", f"/1/apps/{TOPIC}/channels", 200),
        ("GET", f"/1/apps/{TOPIC}/channels", 200),
        ("DELETE", f"/1/apps/{TOPIC}/channels", 204),
        ("GET", f"/1/apps/{TOPIC}/all-channels", 200),
    ]
    for request in apns_fake.channel_requests:
        assert request.headers["authorization"].startswith("bearer ")
        assert str(uuid.UUID(request.request_id)) == request.request_id
    assert apns_fake.channel_requests[3].headers["apns-channel-id"] == match
    assert apns_fake.received == []  # nothing went to the push host


async def test_channels_belong_to_their_app(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    async with (
        channels_for(apns_settings, signing_key) as ours,
        channels_for(apns_settings, signing_key, bundle_id="com.example.other") as theirs,
    ):
        channel = await ours.create()
        assert await theirs.list() == []
        with pytest.raises(ChannelRequestFailed) as refused:
            await theirs.delete(channel)
        assert refused.value.channel_gone
        assert await ours.list() == [channel]


async def test_a_deleted_or_unknown_channel_is_not_registered(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    async with channels_for(apns_settings, signing_key) as channels:
        channel = await channels.create()
        await channels.delete(channel)
        for attempt in (channels.delete(channel), channels.read(channel)):
            with pytest.raises(ChannelRequestFailed) as refused:
                await attempt
            failure = refused.value
            assert (failure.status, failure.reason) == (400, "ChannelNotRegistered")
            assert failure.channel_gone
            assert not failure.temporary
        with pytest.raises(ChannelRequestFailed) as malformed:
            await channels.read("not base64!")
    assert (malformed.value.status, malformed.value.reason) == (400, "BadChannelId")


async def test_a_storage_policy_apple_does_not_have_is_refused(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    async with channels_for(apns_settings, signing_key) as channels:
        with pytest.raises(ChannelRequestFailed) as refused:
            await channels.create(cast(StoragePolicy, 2))
        assert (refused.value.status, refused.value.reason) == (400, "BadRequestParams")
        assert not refused.value.temporary
        assert await channels.list() == []


async def test_a_key_apple_never_issued_is_refused(
    apns_fake: FakeAPNs, apns_settings: Settings
) -> None:
    async with channels_for(apns_settings, new_signing_key(key_id="REVOKED001")) as channels:
        with pytest.raises(ChannelRequestFailed) as refused:
            await channels.create()
    assert (refused.value.status, refused.value.reason) == (403, "InvalidProviderToken")
    assert not refused.value.temporary
    assert apns_fake.channels == {}


async def test_a_broadcast_carries_apples_headers_and_an_expiration_its_channel_allows(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    in_an_hour = int(time.time()) + 3600
    async with channels_for(apns_settings, signing_key) as channels:
        stored = await channels.create(StoragePolicy.MOST_RECENT_MESSAGE_STORED)
        unstored = await channels.create(StoragePolicy.NO_MESSAGE_STORED)
        request_id = str(uuid.uuid4())
        unique_id = await channels.broadcast(
            stored, UPDATE, request_id=request_id, priority=5, expires_at=in_an_hour
        )
        # A ttl on a channel that stores nothing would be refused: it goes out as "0".
        await channels.broadcast(unstored, UPDATE, request_id=str(uuid.uuid4()),
                                 expires_at=in_an_hour)  # fmt: skip
        # No ttl: as long as Apple keeps a stored message, 8 hours.
        await channels.broadcast(stored, UPDATE, request_id=str(uuid.uuid4()))
    first, second, third = apns_fake.broadcasts
    assert [b.status for b in apns_fake.broadcasts] == [200, 200, 200]
    assert unique_id is not None
    assert (first.bundle_id, first.channel_id, first.request_id) == (TOPIC, stored, request_id)
    assert first.payload == UPDATE
    assert first.headers["apns-push-type"] == "liveactivity"
    assert first.headers["apns-priority"] == "5"
    assert first.headers["apns-expiration"] == str(in_an_hour)
    assert "apns-topic" not in first.headers  # the bundle id is in the path
    assert second.headers["apns-expiration"] == "0"
    kept = int(third.headers["apns-expiration"]) - time.time()
    assert MOST_RECENT_MESSAGE_KEPT_SECONDS - 60 < kept <= MOST_RECENT_MESSAGE_KEPT_SECONDS
    assert apns_fake.broadcasts_per_channel() == {stored: 2, unstored: 1}


async def test_no_answer_is_a_temporary_failure(signing_key: SigningKey) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    # Nothing listens there any more: the connection is refused.
    settings = Settings(apns_channels_host="127.0.0.1", apns_channels_port=port)
    async with channels_for(settings, signing_key) as channels:
        with pytest.raises(ChannelRequestFailed) as failed:
            await channels.list()
    assert failed.value.status == 0
    assert failed.value.temporary
    assert not failed.value.channel_gone
    assert "connection failed" in failed.value.reason


def test_the_hosts_are_apples_unless_configured(signing_key: SigningKey) -> None:
    def urls(settings: Settings, environment: str) -> tuple[str, str]:
        credential = Credential(
            secret={"key": signing_key.pem},
            details={"key_id": "K", "team_id": "T", "topic": TOPIC, "environment": environment},
        )
        channels = ApnsChannels.connect(credential, settings)
        return channels.management_url, channels.broadcast_url

    apple = Settings(apns_host=None, apns_channels_host=None, apns_channels_port=None)
    assert urls(apple, "sandbox") == (
        "https://api-manage-broadcast.sandbox.push.apple.com:2195",
        "https://api.sandbox.push.apple.com:443",
    )
    assert urls(apple, "production") == (
        "https://api-manage-broadcast.push.apple.com:2196",
        "https://api.push.apple.com:443",
    )
    proxied = Settings(apns_host="egress.internal", apns_port=8443,
                       apns_channels_host="egress.internal", apns_channels_port=8444)  # fmt: skip
    assert urls(proxied, "production") == (
        "https://egress.internal:8444",
        "https://egress.internal:8443",
    )
