"""Requests each provider spells go through the real clients to the fakes and arrive as Apple and
Google expect."""

from __future__ import annotations

import time
import uuid
from typing import Any

from controlplane.payloads import PushContent
from controlplane.settings import Settings
from tests.support.apple import TOPIC, SigningKey
from tests.support.google import new_service_account
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM
from workers.providers.apns import ApnsProvider
from workers.providers.base import OutcomeKind, Recipient
from workers.providers.fcm import FcmProvider

TOKEN = "ab" * 32


def live_activity(event: str, **extra: Any) -> PushContent:
    return PushContent.model_validate(
        {"kind": "liveactivity", "live_activity": {"event": event, "content_state": {"eta": 5},
                                                   **extra}}
    )  # fmt: skip


async def test_live_activity_start_update_end_reach_apns_as_apple_documents(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    apns = ApnsProvider(key=signing_key.pem, key_id=signing_key.key_id,
                        team_id=signing_key.team_id, topic=TOPIC, sandbox=True,
                        settings=apns_settings)  # fmt: skip
    contents = [
        live_activity("start", attributes_type="OrderTracking", attributes={"order": 42}),
        live_activity("update"),
        live_activity("end", dismissal_date="2030-01-01T00:00:00Z"),
    ]
    pushes = [
        apns.request(c, Recipient(token=TOKEN, platform="ios", message_id=str(uuid.uuid4())))
        for c in contents
    ]
    outcomes = await apns.send(pushes)
    await apns.close()
    assert [o.kind for o in outcomes] == [OutcomeKind.DELIVERED] * 3
    received = apns_fake.accepted()
    assert [r.payload["aps"]["event"] for r in received] == ["start", "update", "end"]
    for push in received:
        assert push.headers["apns-push-type"] == "liveactivity"
        assert push.headers["apns-topic"] == f"{TOPIC}.push-type.liveactivity"
        assert push.headers["apns-priority"] == "10"
        assert push.payload["aps"]["content-state"] == {"eta": 5}
    assert received[0].payload["aps"]["attributes-type"] == "OrderTracking"
    assert received[2].payload["aps"]["dismissal-date"] == 1893456000


async def test_a_widget_update_and_an_alert_reach_fcm_as_google_documents(
    fcm_fake: FakeFCM,
) -> None:
    info, public_key = new_service_account("https://oauth2.googleapis.com/token")
    fcm_fake.add_account(info["client_email"], info["project_id"], info["private_key_id"],
                         public_key)  # fmt: skip
    fcm = FcmProvider(service_account=info, settings=Settings(
        fcm_base_url=fcm_fake.base_url, fcm_token_url=fcm_fake.token_url))  # fmt: skip
    widget = PushContent.model_validate({"kind": "background", "data": {"temp": 21}, "ttl": 600})
    alert = PushContent.model_validate(
        {"kind": "alert", "alert": {"title": "Hi", "badge": 2}, "collapse_id": "greeting"}
    )
    try:
        outcomes = await fcm.send([
            fcm.request(widget, Recipient(token="token-" + "w" * 30, platform="android",
                                          message_id="w", expires_at=int(time.time()) + 600)),
            fcm.request(alert, Recipient(token="token-" + "a" * 30, platform="android",
                                         message_id="a", collapse_id="greeting")),
        ])  # fmt: skip
    finally:
        await fcm.close()
    assert [o.kind for o in outcomes] == [OutcomeKind.DELIVERED] * 2
    by_token = {m.token: m.message for m in fcm_fake.accepted()}  # sent concurrently
    widget_message, alert_message = by_token["token-" + "w" * 30], by_token["token-" + "a" * 30]
    assert widget_message["data"] == {"temp": "21"}
    assert widget_message["android"] in (
        {"priority": "NORMAL", "ttl": "600s"},
        {"priority": "NORMAL", "ttl": "599s"},  # a second ticked between spelling and now
    )
    assert alert_message["android"]["notification"] == {"notification_count": 2, "tag": "greeting"}
    assert alert_message["android"]["collapse_key"] == "greeting"
