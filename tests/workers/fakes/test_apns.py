"""The fake APNs, exercised by the real aioapns over TLS + HTTP/2 on a loopback socket."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from aioapns import NotificationRequest, PushType
from aioapns.connection import APNsKeyConnectionPool

from controlplane.settings import Settings
from tests.support.apple import TOPIC, SigningKey, fake_host_tls, new_signing_key
from workers.fakes.apns import (
    BAD_DEVICE_TOKEN,
    UNREGISTERED,
    Channel,
    FakeAPNs,
    Outcome,
)
from workers.providers.apns_connection import apns_pool

TOKEN = "ab" * 32


@pytest.fixture
def pool_for(apns_settings: Settings) -> Callable[..., APNsKeyConnectionPool]:
    def make(key: SigningKey, topic: str = TOPIC) -> APNsKeyConnectionPool:
        settings = apns_settings
        return apns_pool(
            key=key.pem, key_id=key.key_id, team_id=key.team_id, topic=topic,
            sandbox=True, settings=settings,
        )  # fmt: skip

    return make


async def test_an_alert_is_accepted_and_recorded_as_sent(
    apns_fake: FakeAPNs, pool_for: Callable[..., APNsKeyConnectionPool], signing_key: SigningKey
) -> None:
    pool = pool_for(signing_key)
    apns_id = str(uuid.uuid4())
    request = NotificationRequest(
        device_token=TOKEN,
        message={"aps": {"alert": {"title": "Order shipped"}}},
        notification_id=apns_id,
        priority=10,
        collapse_key="order-42",
        push_type=PushType.ALERT,
        time_to_live=3600,
    )
    result = await pool.send_notification(request)
    pool.close()
    assert (result.status, result.notification_id) == ("200", apns_id)
    [received] = apns_fake.received
    assert received.accepted
    assert (received.apns_id, received.token) == (apns_id, TOKEN)
    assert received.payload == {"aps": {"alert": {"title": "Order shipped"}}}
    headers = received.headers
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "order-42"
    assert int(headers["apns-expiration"]) > time.time()
    assert apns_fake.deliveries_per_device() == {(apns_id, TOKEN): 1}


async def test_scripted_outcomes_reach_the_client_with_apples_reasons(
    apns_fake: FakeAPNs, pool_for: Callable[..., APNsKeyConnectionPool], signing_key: SigningKey
) -> None:
    apns_fake.script(TOKEN, UNREGISTERED, BAD_DEVICE_TOKEN, Outcome.error(429, "TooManyRequests"))
    pool = pool_for(signing_key)
    results = [
        await pool.send_notification(NotificationRequest(TOKEN, {"aps": {"alert": "x"}}))
        for _ in range(4)
    ]
    pool.close()
    assert [(r.status, r.description) for r in results] == [
        ("410", "Unregistered"),
        ("400", "BadDeviceToken"),
        ("429", "TooManyRequests"),
        ("200", None),
    ]
    assert results[0].timestamp is not None
    assert [push.accepted for push in apns_fake.received] == [False, False, False, True]


async def test_an_unknown_key_or_wrong_team_is_refused(
    apns_fake: FakeAPNs, pool_for: Callable[..., APNsKeyConnectionPool]
) -> None:
    # A key id Apple never issued; and a known key id signed by someone else's key.
    for key in (new_signing_key(key_id="UNKNOWNKEY"), new_signing_key(team_id="OTHERTEAM")):
        pool = pool_for(key)
        result = await pool.send_notification(NotificationRequest(TOKEN, {"aps": {}}))
        pool.close()
        assert (result.status, result.description) == ("403", "InvalidProviderToken")
    assert apns_fake.accepted() == []


async def test_live_activity_topics_and_payload_size_are_enforced(
    apns_fake: FakeAPNs, pool_for: Callable[..., APNsKeyConnectionPool], signing_key: SigningKey
) -> None:
    plain = pool_for(signing_key)
    wrong_topic = await plain.send_notification(
        NotificationRequest(TOKEN, {"aps": {"event": "update"}}, push_type=PushType.LIVEACTIVITY)
    )
    too_big = await plain.send_notification(
        NotificationRequest(TOKEN, {"aps": {"alert": "x" * 4100}})
    )
    plain.close()
    assert (wrong_topic.status, wrong_topic.description) == ("400", "BadTopic")
    assert (too_big.status, too_big.description) == ("413", "PayloadTooLarge")
    live = pool_for(signing_key, topic=f"{TOPIC}.push-type.liveactivity")
    ok = await live.send_notification(
        NotificationRequest(
            TOKEN,
            {
                "aps": {
                    "event": "update",
                    "timestamp": int(time.time()),
                    "content-state": {"eta": 5},
                }
            },
            push_type=PushType.LIVEACTIVITY,
            priority=10,
        )
    )
    live.close()
    assert ok.status == "200"
    assert apns_fake.accepted()[0].headers["apns-topic"].endswith(".push-type.liveactivity")


async def test_a_dropped_connection_is_recorded_and_the_client_reconnects(
    apns_fake: FakeAPNs, pool_for: Callable[..., APNsKeyConnectionPool], signing_key: SigningKey
) -> None:
    apns_fake.script(TOKEN, Outcome.dropped())
    pool = pool_for(signing_key)
    apns_id = str(uuid.uuid4())
    result = await pool.send_notification(NotificationRequest(TOKEN, {"aps": {}}, apns_id))
    pool.close()
    # aioapns re-sends on a new connection with the same apns-id; only one was accepted.
    assert result.status == "200"
    assert [push.status for push in apns_fake.received] == [0, 200]
    assert {push.apns_id for push in apns_fake.received} == {apns_id}
    assert apns_fake.connections == 2
    assert apns_fake.deliveries_per_device() == {(apns_id, TOKEN): 1}


def test_the_fake_checks_provider_token_age_and_headers(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    fake = FakeAPNs(tls=fake_host_tls(tmp_path).server)
    fake.add_key(signing_key.key_id, signing_key.team_id, signing_key.public_key)

    def token(issued_at: float) -> str:
        return "bearer " + jwt.encode(
            {"iss": signing_key.team_id, "iat": int(issued_at)},
            signing_key.pem,
            algorithm="ES256",
            headers={"kid": signing_key.key_id},
        )

    def check(**headers: str) -> tuple[int, str | None]:
        base = {
            ":method": "POST",
            ":path": f"/3/device/{TOKEN}",
            "authorization": token(time.time()),
            "apns-topic": TOPIC,
        }
        status, reason, _, _ = fake.check({**base, **headers}, b'{"aps": {}}')
        return status, reason

    assert check() == (200, None)
    assert check(authorization=token(time.time() - 3700)) == (403, "ExpiredProviderToken")
    assert check(authorization="") == (403, "MissingProviderToken")
    assert check(**{":path": "/3/device/not-hex"}) == (400, "BadDeviceToken")
    assert check(**{":method": "GET"}) == (405, "MethodNotAllowed")
    assert check(**{"apns-topic": ""}) == (400, "MissingTopic")
    assert check(**{"apns-priority": "7"}) == (400, "BadPriority")
    assert check(**{"apns-id": "not-a-uuid"}) == (400, "BadMessageId")
    assert check(**{"apns-push-type": "nonsense"}) == (400, "InvalidPushType")
    assert check(**{"apns-collapse-id": "c" * 65}) == (400, "BadCollapseId")


async def test_a_slow_answer_arrives_late(
    apns_fake: FakeAPNs, pool_for: Callable[..., APNsKeyConnectionPool], signing_key: SigningKey
) -> None:
    apns_fake.script(TOKEN, Outcome.ok(delay=0.5))
    pool = pool_for(signing_key)
    sending = asyncio.ensure_future(pool.send_notification(NotificationRequest(TOKEN, {"aps": {}})))
    done, _ = await asyncio.wait({sending}, timeout=0.1)
    assert not done  # still waiting: a client needs its own timeout (aioapns has none)
    assert (await sending).status == "200"
    pool.close()


def test_the_fake_manages_channels_as_apple_documents(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    fake = FakeAPNs(tls=fake_host_tls(tmp_path).server, broadcast_disabled={"com.example.off"})
    fake.add_key(signing_key.key_id, signing_key.team_id, signing_key.public_key)
    bearer = "bearer " + jwt.encode(
        {"iss": signing_key.team_id, "iat": int(time.time())}, signing_key.pem,
        algorithm="ES256", headers={"kid": signing_key.key_id},
    )  # fmt: skip

    def manage(method: str, body: object = None, **headers: str) -> tuple[int, str | None]:
        base = {":method": method, ":path": f"/1/apps/{TOPIC}/channels", "authorization": bearer}
        data = b"" if body is None else json.dumps(body).encode()
        answer = fake.manage({**base, **headers}, data)
        return answer.status, answer.reason

    good = {"message-storage-policy": 1, "push-type": "LiveActivity"}
    assert manage("POST", good) == (201, None)
    [channel] = fake.channels_of(TOPIC)
    assert manage("GET", **{"apns-channel-id": channel}) == (200, None)
    assert manage("POST", {**good, "message-storage-policy": 2}) == (400, "BadRequestParams")
    assert manage("POST", {**good, "colour": "red"}) == (400, "BadRequestParams")
    assert manage("POST", {"message-storage-policy": 0}) == (400, "MissingPushType")
    assert manage("POST", {**good, "push-type": "alert"}) == (400, "InvalidPushType")
    assert manage("POST", [1]) == (400, "BadRequestPayload")
    assert manage("GET") == (400, "MissingChannelId")
    assert manage("GET", **{"apns-channel-id": "%%%"}) == (400, "BadChannelId")
    assert manage("GET", **{"apns-channel-id": "dHN0LXNyY2gtY2hubA=="}) == (
        400, "ChannelNotRegistered",
    )  # fmt: skip
    assert manage("PUT") == (405, "MethodNotAllowed")
    assert manage("GET", **{":path": f"/1/apps/{TOPIC}/nothing"}) == (404, "BadPath")
    assert manage("POST", good, authorization="") == (403, "MissingProviderToken")
    assert manage("POST", good, **{":path": "/1/apps/com.example.off/channels"}) == (
        400, "FeatureNotEnabled",
    )  # fmt: skip
    suffixed = f"/1/apps/{TOPIC}.push-type.liveactivity/channels"
    assert manage("POST", good, **{":path": suffixed}) == (400, "TopicDisallowed")
    assert manage("POST", good, **{"apns-request-id": "42"}) == (400, "BadMessageId")
    fake.max_channels = 1
    assert manage("POST", good) == (400, "CannotCreateChannelConfig")
    assert manage("DELETE", **{"apns-channel-id": channel}) == (204, None)
    assert manage("DELETE", **{"apns-channel-id": channel}) == (400, "ChannelNotRegistered")
    assert fake.channels == {}


def test_the_fake_checks_broadcasts_as_apple_documents(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    fake = FakeAPNs(tls=fake_host_tls(tmp_path).server)
    fake.add_key(signing_key.key_id, signing_key.team_id, signing_key.public_key)
    fake.channels["c3RvcmVk"] = Channel("c3RvcmVk", TOPIC, storage_policy=1)
    fake.channels["bm9uZQ=="] = Channel("bm9uZQ==", TOPIC, storage_policy=0)
    bearer = "bearer " + jwt.encode(
        {"iss": signing_key.team_id, "iat": int(time.time())}, signing_key.pem,
        algorithm="ES256", headers={"kid": signing_key.key_id},
    )  # fmt: skip

    def check(body: bytes = b'{"aps": {"event": "update"}}', /, **headers: str) -> object:
        base = {
            ":method": "POST", ":path": f"/4/broadcasts/apps/{TOPIC}", "authorization": bearer,
            "apns-channel-id": "c3RvcmVk", "apns-push-type": "liveactivity",
            "apns-priority": "10", "apns-expiration": str(int(time.time()) + 60),
        }  # fmt: skip
        answer, _, _ = fake.check_broadcast({**base, **headers}, body)
        return answer.status, answer.reason

    assert check() == (200, None)
    assert check(**{"apns-push-type": "LiveActivity"}) == (200, None)  # Apple spells it both ways
    assert check(**{"apns-channel-id": "bm9uZQ==", "apns-expiration": "0"}) == (200, None)
    # A channel that stores nothing refuses any expiration but 0.
    assert check(**{"apns-channel-id": "bm9uZQ=="}) == (400, "BadExpirationDate")
    assert check(**{"apns-expiration": "soon"}) == (400, "BadExpirationDate")
    assert check(**{"apns-channel-id": ""}) == (400, "MissingChannelId")
    assert check(**{"apns-channel-id": "x" * 300}) == (400, "BadChannelId")
    assert check(**{"apns-channel-id": "dW5rbm93bg=="}) == (400, "ChannelNotRegistered")
    assert check(**{"apns-push-type": "alert"}) == (400, "InvalidPushType")
    assert check(**{"apns-priority": "7"}) == (400, "BadPriority")
    assert check(**{"apns-request-id": "not-a-uuid"}) == (400, "BadMessageId")
    assert check(**{":path": f"/4/broadcasts/apps/{TOPIC}.push-type.liveactivity"}) == (
        400, "TopicDisallowed",
    )  # fmt: skip
    assert check(authorization="bearer nonsense") == (403, "InvalidProviderToken")
    assert check(**{":method": "GET"}) == (405, "MethodNotAllowed")
    assert check(**{":path": "/4/broadcasts/com.example.app"}) == (404, "BadPath")
    assert check(b"") == (400, "PayloadEmpty")
    assert check(b"{not json") == (400, "BadRequestPayload")
    # Broadcasts may carry 5 KB, not the 4 KB of a device push.
    five_kb = json.dumps({"aps": {"event": "update"}, "pad": "x" * 5050}).encode()
    assert 4096 < len(five_kb) <= 5120
    assert check(five_kb) == (200, None)
    assert check(b'{"pad": "' + b"x" * 5120 + b'"}') == (413, "PayloadTooLarge")
