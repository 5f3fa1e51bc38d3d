"""Webhook deliveries against a local receiver over real HTTP: the API, a real worker, real
sockets. Signed so the docs' snippet verifies them, in order per object across a retry, retried
after 500s and timeouts, disabled after sustained failure, told to Slack and Discord in their
formats — and nothing lost when a worker is killed mid-send.

The receiver is on 127.0.0.1, so these tests set ``webhook_allow_private_networks`` (the address
policy itself is tested in ``test_webhook_transport.py``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.app import create_app
from controlplane.core.connections import queue_client
from controlplane.crypto import KeyRing
from controlplane.models import (
    AuditEvent,
    KeyMode,
    Notification,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from controlplane.settings import Settings
from controlplane.webhook_events import outbox
from tests.support.mail import RecordingSender
from tests.support.processes import brik_cloud_command, settings_environment
from tests.support.servers import running_worker, serving
from tests.support.tenants import Tenant, make_tenant
from tests.support.webhook_receiver import Reply, WebhookReceiver
from workers.tasks.webhooks import deliver_webhook, reconcile_webhooks
from workers.webhook_transport import WebhookSender

pytestmark = pytest.mark.database

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
FAST = {
    "webhook_allow_private_networks": True,
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_max_seconds": 0.2,
    "webhook_timeout_seconds": 1.0,
    "webhook_lease_seconds": 2.0,
}
IOS_OK, IOS_DEAD, IOS_REFUSED = "ab" * 32, "0" * 61 + "410", "0" * 61 + "403"


def documented_verifier() -> Callable[[bytes, str, str], bool]:
    """The verification snippet docs/webhooks.md shows, run as a reader would paste it."""
    section = DOCS.read_text().split("## Verifying the signature", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet[1], namespace)  # our own documentation, run as a reader would
    verify: Callable[[bytes, str, str], bool] = namespace["verify_brik_signature"]
    return verify


def worker_process(settings: Settings) -> subprocess.Popen[bytes]:
    """``brik-cloud worker`` on ``settings``, in a process group of its own (to SIGKILL)."""
    return subprocess.Popen(
        [*brik_cloud_command(), "worker"],
        env=settings_environment(settings, BRIK_LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    hooks = WebhookReceiver()
    async with serving(hooks.app) as url:
        yield hooks, url


@pytest.fixture
async def acme(database: None) -> Tenant:
    return await make_tenant("Acme")


def auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.secret_key}"}


async def create_endpoint(api: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    created = await api.post("/v1/webhook_endpoints", json=body, headers=auth(tenant))
    assert created.status_code == 201, created.text
    endpoint: dict[str, Any] = created.json()
    return endpoint


async def register(api: httpx.AsyncClient, tenant: Tenant, token: str, user_id: str) -> None:
    body = {"token": token, "platform": "ios", "user_id": user_id}
    registered = await api.post("/v1/devices", headers=auth(tenant), json=body)
    assert registered.status_code == 200, registered.text


async def settled(endpoint_id: str, count: int, within: float = 20.0) -> list[WebhookDelivery]:
    """The endpoint's deliveries once ``count`` of them are succeeded or failed."""
    deadline = time.monotonic() + within
    while True:
        rows = await WebhookDelivery.filter(
            endpoint_id=endpoint_id,
            status__in=[WebhookDeliveryStatus.SUCCEEDED, WebhookDeliveryStatus.FAILED],
        ).order_by("created_at")
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"only {len(rows)} of {count} deliveries settled"
        await asyncio.sleep(0.05)


async def test_a_push_tells_its_endpoint_signed_and_in_order_across_a_retry(
    pipeline: Callable[..., Any], receiver: tuple[WebhookReceiver, str], acme: Tenant
) -> None:
    hooks, url = receiver
    api = await pipeline(**FAST)
    endpoint = await create_endpoint(api, acme, url=f"{url}/brik", events=["*"])
    assert endpoint["secret"].startswith("whsec_")
    for token in (IOS_OK, IOS_DEAD, IOS_REFUSED):
        await register(api, acme, token, "u_1")
    hooks.answer(500)  # whichever event comes first is retried
    push = {"to": {"user_ids": ["u_1"]}, "kind": "alert", "alert": {"title": "Hi"}}
    sent = await api.post("/v1/pushes", headers=auth(acme), json=push)
    assert sent.status_code == 202, sent.text
    push_id = sent.json()["id"]

    await settled(endpoint["id"], 4)
    done = hooks.succeeded()
    types = [request.event_type for request in done]
    assert sorted(types) == sorted(
        ["delivery.failed", "device.invalidated", "credential.failing", "push.completed"]
    )
    # The push's own events in order, the completion never before the failure's retry.
    failure = next(r for r in done if r.event_type == "delivery.failed")
    completion = [r for r in hooks.received if r.event_type == "push.completed"]
    assert completion[0].arrived > failure.arrived
    assert hooks.received[0].answered == 500
    assert hooks.received[0].event_id in {r.event_id for r in done}  # …and was sent again

    verify = documented_verifier()
    for request in hooks.received:
        assert verify(request.body, request.headers["brik-signature"], endpoint["secret"])
        assert not verify(request.body, request.headers["brik-signature"], "whsec_wrong")
        assert not verify(request.body + b" ", request.headers["brik-signature"],
                          endpoint["secret"])  # fmt: skip
        assert request.json["id"] == request.event_id
        assert request.json["livemode"] is False
    completed = completion[-1].json["data"]["object"]
    assert completed["id"] == push_id
    assert completed["deliveries"] == {"delivered": 1, "failed": 1, "invalid_token": 1}
    failed = failure.json["data"]["object"]
    assert (failed["push_id"], failed["status"]) == (push_id, "failed")
    assert "InvalidProviderToken" in failed["reason"]
    credential = next(r for r in done if r.event_type == "credential.failing")
    assert credential.json["data"]["object"]["provider"] == "sandbox"
    dead = next(r for r in done if r.event_type == "device.invalidated")
    assert dead.json["data"]["object"]["token_last_four"] == "0410"

    log = await api.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries",
                        headers=auth(acme))  # fmt: skip
    assert {d["status"] for d in log.json()["data"]} == {"succeeded"}
    # Each delivery counts the attempts the endpoint saw (the 500 among them; on a slow
    # machine an answer may also miss the 1 s timeout and be tried again, counted as such).
    seen = Counter(request.event_id for request in hooks.received)
    assert {d["event_id"]: d["attempts"] for d in log.json()["data"]} == seen
    retried = next(d for d in log.json()["data"] if d["event_id"] == hooks.received[0].event_id)
    assert retried["attempts"] >= 2
    assert retried["response_status"] == 200
    assert retried["latency_ms"] is not None


async def test_retried_after_500s_and_a_timeout_with_the_same_event(
    pipeline: Callable[..., Any], receiver: tuple[WebhookReceiver, str], acme: Tenant
) -> None:
    hooks, url = receiver
    api = await pipeline(**FAST)
    endpoint = await create_endpoint(api, acme, url=f"{url}/hooks", events=["push.completed"])
    hooks.answer(500, 503, Reply(delay=1.5), Reply(201, body=b"thanks"))
    test = await api.post(f"/v1/webhook_endpoints/{endpoint['id']}/test", headers=auth(acme))
    assert test.status_code == 202, test.text
    assert (test.json()["event_type"], test.json()["status"]) == ("webhook.test", "queued")

    (row,) = await settled(endpoint["id"], 1)
    assert (row.status, row.attempts, row.response_status) == ("succeeded", 4, 201)
    assert row.response_excerpt == "thanks"
    attempts = [request.headers["brik-delivery-attempt"] for request in hooks.received]
    assert attempts == ["1", "2", "3", "4"]
    assert len({request.event_id for request in hooks.received}) == 1

    detail = await api.get(
        f"/v1/webhook_endpoints/{endpoint['id']}/deliveries/{row.id}", headers=auth(acme)
    )
    assert detail.json()["event"]["type"] == "webhook.test"
    resent = await api.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/deliveries/{row.id}/resend", headers=auth(acme)
    )
    assert (resent.status_code, resent.json()["trigger"]) == (202, "resend")
    await settled(endpoint["id"], 2)
    assert hooks.received[-1].event_id == hooks.received[0].event_id


async def test_a_rotated_secret_signs_beside_the_new_one_for_the_overlap(
    pipeline: Callable[..., Any], receiver: tuple[WebhookReceiver, str], acme: Tenant
) -> None:
    hooks, url = receiver
    api = await pipeline(**FAST)
    endpoint = await create_endpoint(api, acme, url=f"{url}/hooks", events=["*"])
    old = endpoint["secret"]
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    rotated = await api.post(f"{path}/rotate_secret", json={"overlap_hours": 2},
                             headers=auth(acme))  # fmt: skip
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert "secret" not in (await api.get(path, headers=auth(acme))).json()
    await api.post(f"{path}/test", headers=auth(acme))
    (overlapping,) = await hooks.wait_for(1)
    header = overlapping.headers["brik-signature"]
    assert len(re.findall(r"v1=", header)) == 2
    verify = documented_verifier()
    assert verify(overlapping.body, header, new)
    assert verify(overlapping.body, header, old)

    again = await api.post(f"{path}/rotate_secret", json={"overlap_hours": 0}, headers=auth(acme))
    newest = again.json()["secret"]
    await api.post(f"{path}/test", headers=auth(acme))
    (_, alone) = await hooks.wait_for(2)
    assert len(re.findall(r"v1=", alone.headers["brik-signature"])) == 1
    assert verify(alone.body, alone.headers["brik-signature"], newest)
    assert not verify(alone.body, alone.headers["brik-signature"], new)


async def test_an_endpoint_failing_every_attempt_is_disabled_and_the_owners_told(
    pipeline: Callable[..., Any], receiver: tuple[WebhookReceiver, str], acme: Tenant
) -> None:
    hooks, url = receiver
    RecordingSender.sent.clear()
    api = await pipeline(**FAST, webhook_disable_after_failures=3,
                         webhook_disable_after_seconds=0,
                         mail_sender="tests.support.mail:RecordingSender")  # fmt: skip
    endpoint = await create_endpoint(api, acme, url=f"{url}/down", events=["*"])
    hooks.answer(*[500] * 10)
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    await api.post(f"{path}/test", headers=auth(acme))
    await api.post(f"{path}/test", headers=auth(acme))

    rows = await settled(endpoint["id"], 2)
    assert {row.status for row in rows} == {WebhookDeliveryStatus.FAILED}
    assert any("endpoint was disabled" in (row.error or "") for row in rows)
    stored = await WebhookEndpoint.get(id=endpoint["id"])
    assert not stored.enabled
    assert stored.disabled_reason is not None
    assert "3 in a row" in stored.disabled_reason
    assert "HTTP 500" in stored.disabled_reason
    audit = await AuditEvent.get(action="webhook_endpoint.disabled")
    assert (audit.target_id, audit.actor_type) == (endpoint["id"], "webhooks")
    # The third failure disabled it; the other event's attempt may have been on the wire then.
    # (Fewer may have arrived: on a loaded machine an attempt can time out, a failure, before
    # the receiver has read it.)
    assert len(hooks.received) <= 4
    seen = len(hooks.received)
    await asyncio.sleep(0.5)  # longer than any retry's wait here
    assert len(hooks.received) == seen  # nothing is sent to a disabled endpoint
    deadline = time.monotonic() + 10
    while not RecordingSender.sent:
        assert time.monotonic() < deadline, "no email was sent"
        await asyncio.sleep(0.05)
    (email,) = RecordingSender.sent
    assert email.to == acme.owner.user.email
    assert endpoint["id"] in email.body
    assert await Notification.filter(kind="webhook.endpoint_disabled", status="sent").exists()

    shown = (await api.get(path, headers=auth(acme))).json()
    assert (shown["enabled"], shown["health"]["consecutive_failures"]) == (False, 3)
    refused = await api.post(f"{path}/test", headers=auth(acme))
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        400, "webhook_endpoint_disabled",
    )  # fmt: skip
    enabled = await api.patch(path, json={"enabled": True}, headers=auth(acme))
    assert enabled.json()["enabled"] is True
    assert enabled.json()["health"]["consecutive_failures"] == 0
    assert enabled.json()["disabled_reason"] is None


async def test_slack_and_discord_get_messages_people_read(
    pipeline: Callable[..., Any], receiver: tuple[WebhookReceiver, str], acme: Tenant
) -> None:
    hooks, url = receiver
    api = await pipeline(**FAST)
    slack = await create_endpoint(api, acme, type="slack", url=f"{url}/services/T0/B0/secret1",
                                  events=["device.invalidated"])  # fmt: skip
    discord = await create_endpoint(api, acme, type="discord", url=f"{url}/api/webhooks/1/secret2",
                                    events=["device.*"])  # fmt: skip
    assert slack["url"].endswith("/services/T0/…ret1")
    assert "secret2" not in discord["url"]
    await register(api, acme, IOS_DEAD, "<!channel> @everyone & co")
    await api.post("/v1/pushes", headers=auth(acme),
                   json={"to": {"user_ids": ["<!channel> @everyone & co"]},
                         "kind": "alert", "alert": {"title": "Hi"}})  # fmt: skip

    (to_slack,) = await hooks.wait_for(1, path="/services/T0/B0/secret1")
    (to_discord,) = await hooks.wait_for(1, path="/api/webhooks/1/secret2")
    message = to_slack.json
    assert set(message) == {"text", "blocks"}
    assert [block["type"] for block in message["blocks"]] == ["header", "section", "context"]
    assert message["blocks"][0]["text"]["text"] == "Device invalidated"
    section = message["blocks"][1]["text"]["text"]
    assert "&lt;!channel&gt; @everyone &amp; co" in section
    assert "<!channel>" not in to_slack.body.decode()
    assert "Unregistered" in section
    assert "device.invalidated" in message["blocks"][2]["elements"][0]["text"]

    posted = to_discord.json
    assert set(posted) == {"content", "embeds", "allowed_mentions"}
    assert posted["allowed_mentions"] == {"parse": []}
    (embed,) = posted["embeds"]
    assert embed["title"] == "Device invalidated"
    assert "Unregistered" in embed["description"]
    assert isinstance(embed["color"], int)
    assert "Acme app" in embed["footer"]["text"]
    assert to_discord.headers["brik-signature"].startswith("t=")


async def test_a_name_resolving_to_a_private_address_is_refused_at_send_time(
    make_settings: Callable[..., Settings], receiver: tuple[WebhookReceiver, str], acme: Tenant
) -> None:
    hooks, url = receiver
    # The API of an install that once allowed private networks stored the endpoint; the worker
    # of one that does not refuses it when it connects (a name checked at connection time).
    api_settings = make_settings(**FAST)
    worker_settings = api_settings.model_copy(update={"webhook_allow_private_networks": False})
    port = url.rsplit(":", 1)[1]
    async with serving(create_app(api_settings)) as base, httpx.AsyncClient(base_url=base) as api:
        endpoint = await create_endpoint(api, acme, url=f"http://localhost:{port}/", events=["*"])
        await api.post(f"/v1/webhook_endpoints/{endpoint['id']}/test", headers=auth(acme))
        async with running_worker(worker_settings):
            (row,) = await settled(endpoint["id"], 1)
    assert (row.status, row.attempts, row.response_status) == ("failed", 1, None)  # not retried
    assert row.error is not None
    assert row.error.startswith("refused: localhost resolves to ")
    assert "loopback" in row.error
    assert hooks.received == []


@pytest.mark.faults
async def test_a_worker_killed_mid_send_loses_nothing(
    make_settings: Callable[..., Settings], receiver: tuple[WebhookReceiver, str], acme: Tenant
) -> None:
    hooks, url = receiver
    settings = make_settings(**{**FAST, "webhook_timeout_seconds": 3.0,
                                "webhook_lease_seconds": 4.0})  # fmt: skip
    hooks.hold()  # the first request is kept waiting: the worker is killed while it waits
    async with serving(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as api:
        endpoint = await create_endpoint(api, acme, url=f"{url}/hooks", events=["*"])
        path = f"/v1/webhook_endpoints/{endpoint['id']}"
        victim = worker_process(settings)
        try:
            await api.post(f"{path}/test", headers=auth(acme))
            (in_flight,) = await hooks.wait_for(1, within=30)
            os.killpg(victim.pid, signal.SIGKILL)  # mid-send: no answer read, nothing recorded
            victim.wait(timeout=10)
        finally:
            if victim.poll() is None:
                os.killpg(victim.pid, signal.SIGKILL)
        hooks.release()
        # While no worker runs, more events are committed: they wait in the outbox.
        for _ in range(3):
            assert (await api.post(f"{path}/test", headers=auth(acme))).status_code == 202
        assert await WebhookDelivery.filter(status=WebhookDeliveryStatus.SENDING).count() == 1
        async with running_worker(settings):
            rows = await settled(endpoint["id"], 4, within=30)
    assert {row.status for row in rows} == {WebhookDeliveryStatus.SUCCEEDED}
    received = {request.event_id for request in hooks.succeeded()}
    assert len(received) == 4  # every event, the one in flight at the kill included
    again = [r for r in hooks.received if r.event_id == in_flight.event_id]
    assert [r.headers["brik-delivery-attempt"] for r in again] == ["1", "2"]  # at least once


@pytest.fixture
async def worker_ctx(make_settings: Callable[..., Settings]) -> AsyncIterator[dict[str, Any]]:
    """What the worker hands its webhook jobs, without a worker: to call them directly."""
    settings = make_settings(**FAST)
    redis = queue_client(settings.redis_url, settings.queue_name)
    sender = WebhookSender(settings)
    yield {
        "settings": settings, "redis": redis, "webhook_sender": sender,
        "keyring": KeyRing([key.get_secret_value() for key in settings.encryption_keys]),
    }  # fmt: skip
    await sender.close()
    await redis.aclose(close_connection_pool=True)


async def test_duplicated_jobs_send_an_attempt_once_and_a_line_left_waiting_moves_on(
    worker_ctx: dict[str, Any], receiver: tuple[WebhookReceiver, str], acme: Tenant
) -> None:
    hooks, url = receiver
    keyring: KeyRing = worker_ctx["keyring"]
    endpoint = await WebhookEndpoint.create(
        project=acme.project, mode=KeyMode.TEST, url_encrypted=keyring.encrypt(url.encode()),
        url_display=url, events=["*"], secret_encrypted=keyring.encrypt(b"whsec_x"),
    )  # fmt: skip
    box = await outbox(acme.project.id, KeyMode.TEST)
    await box.emit_many("device.invalidated", [({"n": 1}, "dev_1"), ({"n": 2}, "dev_1")])
    first, second = await WebhookDelivery.filter(endpoint=endpoint).order_by("event_id")
    assert (first.status, second.status) == ("queued", "waiting")

    outcomes = await asyncio.gather(*(deliver_webhook(worker_ctx, first.id) for _ in range(4)))
    assert sorted(outcomes).count("succeeded") == 1  # the others found it taken or settled
    assert len(hooks.received) == 1
    await second.refresh_from_db()
    assert second.status == "queued"  # its turn came when the first was settled

    # A line whose head was written while the one ahead was being settled waits behind
    # nobody (here: the one ahead settled without handing over); the reconciler queues it.
    await box.emit_many("device.invalidated", [({"n": 3}, "dev_2"), ({"n": 4}, "dev_2")])
    ahead, orphan = await WebhookDelivery.filter(ordering_key="dev_2").order_by("event_id")
    await WebhookDelivery.filter(id=ahead.id).update(status=WebhookDeliveryStatus.SUCCEEDED)
    await WebhookDelivery.filter(id=second.id).update(status=WebhookDeliveryStatus.SUCCEEDED)
    assert await reconcile_webhooks(worker_ctx) == 1
    await orphan.refresh_from_db()
    assert orphan.status == "queued"
    # One queued past the reconciler's grace (its job lost) is handed over again.
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert await reconcile_webhooks(worker_ctx, now=later) == 1
