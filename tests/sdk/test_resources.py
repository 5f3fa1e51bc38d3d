"""The SDK's resources against a real Brik Cloud (sandbox delivery), blocking and async."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import brik
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.sdk.conftest import BrikServer, api_get
from tests.support.apple import new_signing_key
from tests.support.servers import serving
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.usefixtures("environment")

IOS_TOKEN = "a1" * 32
ANDROID_TOKEN = "fcm-token-" + "b" * 40


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    yield
    if brik._default is not None:
        brik._default.close()
        brik._default = None


def test_the_five_minute_tour_delivers_through_the_sandbox(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    client = brik.init()
    assert (client.mode, client.base_url) == ("test", brik_server.url)
    device = brik.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_42",
                                   tags=["beta"])  # fmt: skip
    assert (device.platform, device.user_id, device.tags, device.created) == (
        "ios", "u_42", ["beta"], True,
    )  # fmt: skip
    assert device.token.endswith(IOS_TOKEN[-4:])
    assert IOS_TOKEN not in device.token
    again = brik.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_42")
    assert (again.id, again.created) == (device.id, False)

    push = brik.pushes.send(to={"user_ids": ["u_42"]}, alert={"title": "Order shipped"})
    assert (push.status, push.recipients) == ("queued", 1)
    updates = list(brik.pushes.stream(push.id))
    assert updates, "the stream said nothing"
    final = updates[-1]
    assert final.final
    assert final.status == "completed"
    assert final.deliveries == {"delivered": 1}
    assert brik.pushes.retrieve(push.id).deliveries == {"delivered": 1}
    [delivery] = brik.pushes.deliveries(push.id).data
    assert (delivery.device_id, delivery.provider, delivery.status) == (device.id, "sandbox",
                                                                          "delivered")  # fmt: skip
    stored = api_get(brik_server, keys["test_secret"], f"/v1/pushes/{push.id}")
    assert stored["content"] == {"kind": "alert", "alert": {"title": "Order shipped"}}


def test_notification_options_and_raw_overrides_travel_with_the_push(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    brik.init()
    brik.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_opt")
    alert = {"body_loc_key": "ETA", "body_loc_args": ["5"], "thread_id": "order-42",
             "channel_id": "orders", "color": "#FF8800"}  # fmt: skip
    push = brik.pushes.send(
        to={"user_ids": ["u_opt"]}, alert=alert,
        apns={"headers": {"apns-priority": 5}, "payload": {"aps": {"category": "ORDER"}}},
        android={"notification": {"sticky": True}},
    )  # fmt: skip
    stored = api_get(brik_server, keys["test_secret"], f"/v1/pushes/{push.id}")["content"]
    assert stored["alert"] == alert  # type: ignore[index]
    assert stored["apns"]["headers"] == {"apns-priority": 5}  # type: ignore[index]
    assert stored["android"] == {"notification": {"sticky": True}}  # type: ignore[index]
    with pytest.raises(brik.BrikError) as refused:
        brik.pushes.send(to={"user_ids": ["u_opt"]}, alert={"body": "x", "color": "orange"})
    assert refused.value.param == "alert.color"


def test_widgets_and_live_activities_go_out_as_their_kinds(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    brik.init()
    device = brik.devices.register(
        token=IOS_TOKEN, platform="ios", user_id="u_7",
        live_activity_token="1a" * 32, push_to_start_token="2b" * 32,
    )  # fmt: skip
    assert device.has_live_activity_token
    assert device.has_push_to_start_token
    to: brik.Target = {"device_ids": [device.id]}
    widget = brik.widgets.update(to=to, data={"eta_minutes": 12})
    started = brik.live_activities.start(
        to=to, attributes_type="OrderTracking", attributes={"order": "A-1"},
        content_state={"stage": "packed"},
    )  # fmt: skip
    updated = brik.live_activities.update(to=to, content_state={"stage": "shipped"})
    ended = brik.live_activities.end(to=to, content_state={"stage": "delivered"})
    stored = {
        push.id: api_get(brik_server, keys["test_secret"], f"/v1/pushes/{push.id}")
        for push in (widget, started, updated, ended)
    }
    assert stored[widget.id]["kind"] == "background"
    assert stored[widget.id]["content"]["data"] == {"eta_minutes": 12}  # type: ignore[index]
    events = [stored[p.id]["content"]["live_activity"]["event"]  # type: ignore[index]
              for p in (started, updated, ended)]  # fmt: skip
    assert events == ["start", "update", "end"]
    start = stored[started.id]["content"]["live_activity"]  # type: ignore[index]
    assert start["attributes_type"] == "OrderTracking"  # type: ignore[index]
    for push in (widget, started, updated, ended):
        assert list(brik.pushes.stream(push.id))[-1].deliveries == {"delivered": 1}


def test_an_idempotency_key_given_twice_sends_once(keys: dict[str, str]) -> None:
    brik.init()
    brik.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_1")
    first = brik.pushes.send(to={"user_ids": ["u_1"]}, alert={"title": "Once"},
                             idempotency_key="order-1234-shipped")  # fmt: skip
    second = brik.pushes.send(to={"user_ids": ["u_1"]}, alert={"title": "Once"},
                              idempotency_key="order-1234-shipped")  # fmt: skip
    assert first.id == second.id
    assert [push.id for push in brik.pushes.list().data] == [first.id]


def test_a_batch_delivers_each_message_and_a_retried_batch_sends_nothing_twice(
    keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    client = brik.init()
    brik.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_1")
    messages: list[brik.BatchMessage] = [
        {"to": {"user_ids": ["u_1"]}, "alert": {"title": "Your order shipped"}},
        {"device_token": {"platform": "android", "token": ANDROID_TOKEN},
         "data": {"refresh": "feed"}, "idempotency_key": "feed-1"},
        {"to": {"user_ids": ["u_1"]}, "data": {"blob": "x" * 5000}},
        {"to": {"user_ids": ["nobody"]}, "alert": {"title": "Hello?"}},
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="brik"):
        batch = brik.pushes.send_batch(messages)
    assert (batch.accepted, batch.refused) == (3, 1)
    shipped, feed, too_big, nobody = batch.results
    assert too_big.error is not None
    assert (too_big.accepted, too_big.error.code) == (False, "payload_too_large")
    assert nobody.push is not None
    assert "no_recipients" in caplog.text  # logged, as send() logs it
    for result in (shipped, feed):
        assert result.push is not None
        final = list(brik.pushes.stream(result.push.id))[-1]
        assert final.deliveries == {"delivered": 1}
    assert [d.platform for d in brik.devices.list().data].count("android") == 1
    # The SDK gave each message a key, so the same call sent again (as its retries are) is
    # answered from the first: nothing goes twice.
    call = brik.resources._batch(messages[:2])
    first = brik.types.PushBatch.from_json(client.pushes._transport.request(call))
    again = brik.types.PushBatch.from_json(client.pushes._transport.request(call))
    assert [r.replayed for r in again.results] == [True, True]
    assert [r.push for r in again.results] == [r.push for r in first.results]
    assert brik.pushes.send_batch(messages[1:2]).results[0].replayed  # its own key
    with pytest.raises(ValueError, match="alert or data"):
        brik.pushes.send_batch([{"to": {"user_ids": ["u_1"]}}])


def test_two_clients_in_one_process_each_see_their_own_project(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    other_keys = brik_server.reserve_org()
    with (
        brik.Client(keys["test_secret"], base_url=brik_server.url) as mine,
        brik.Client(other_keys["test_secret"], base_url=brik_server.url) as theirs,
    ):
        device = mine.devices.register(token=IOS_TOKEN, platform="ios")
        theirs.devices.register(token=ANDROID_TOKEN, platform="android")
        assert [d.id for d in mine.devices.list().data] == [device.id]
        assert [d.platform for d in theirs.devices.list().data] == ["android"]
        with pytest.raises(brik.NotFoundError):
            theirs.devices.retrieve(device.id)


def test_pages_and_deletion(keys: dict[str, str]) -> None:
    brik.init()
    ids = [brik.devices.register(token=f"{n:064x}", platform="ios", tags=["page"]).id
           for n in range(3)]  # fmt: skip
    first = brik.devices.list(tag="page", limit=2)
    assert (len(first.data), first.has_more) == (2, True)
    rest = brik.devices.list(tag="page", limit=2, starting_after=first.data[-1].id)
    assert (len(rest.data), rest.has_more) == (1, False)
    assert {d.id for d in first.data + rest.data} == set(ids)
    assert [d.id for d in brik.devices.iterate(tag="page", page_size=2)] == [
        d.id for d in first.data + rest.data
    ]
    deleted = brik.devices.delete(ids[0])
    assert (deleted.object, deleted.id) == ("device", ids[0])
    with pytest.raises(brik.NotFoundError):
        brik.devices.retrieve(ids[0])


async def test_the_async_client_does_the_same(brik_server: BrikServer, keys: dict[str, str]) -> (
    None
):  # fmt: skip
    async with brik.AsyncClient() as client:
        assert client.mode == "test"
        device = await client.devices.register(token=ANDROID_TOKEN, platform="android",
                                               user_id="u_9")  # fmt: skip
        push = await client.pushes.send(to={"user_ids": ["u_9"]}, data={"refresh": "feed"})
        updates = [update async for update in client.pushes.stream(push.id)]
        assert updates[-1].status == "completed"
        assert updates[-1].deliveries == {"delivered": 1}
        assert updates[-1].kind == "background"
        widget = await client.widgets.update(to={"device_ids": [device.id]}, data={"n": 1})
        started = await client.live_activities.start(
            to={"device_ids": [device.id]}, attributes_type="Score", attributes={},
            content_state={"home": 0},
        )  # fmt: skip
        assert (await client.pushes.retrieve(widget.id)).kind == "background"
        assert (await client.pushes.retrieve(started.id)).kind == "liveactivity"
        page = await client.pushes.list(limit=10)
        assert {p.id for p in page.data} == {push.id, widget.id, started.id}
        every = [p.id async for p in client.pushes.iterate(page_size=2)]
        assert every == [p.id for p in page.data]
        assert [d.id async for d in client.devices.iterate(page_size=1)] == [device.id]
        with pytest.raises(brik.NotFoundError):
            await client.devices.retrieve("dev_" + "0" * 24)
        batch = await client.pushes.send_batch([{"to": {"user_ids": ["u_9"]}, "data": {"n": 2}}])
        assert batch.results[0].push is not None
        assert batch.results[0].push.recipients == 1


def test_a_send_that_reaches_nobody_says_why_in_the_log(
    keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    brik.init()
    brik.devices.register(token=IOS_TOKEN, platform="ios", tags=["fans"])
    with caplog.at_level(logging.WARNING, logger="brik"):
        push = brik.pushes.send(to={"tags": ["no-such-tag"]}, alert={"title": "Hello?"})
        update = brik.live_activities.update(to={"tags": ["fans"]}, content_state={"n": 1})
    assert push.recipients == 0
    assert [w.code for w in push.warnings] == ["no_recipients"]
    assert [w.code for w in update.warnings] == ["no_recipients", "no_live_activity_token"]
    logged = [r for r in caplog.records if r.name == "brik" and r.levelno == logging.WARNING]
    assert len(logged) == 3
    assert push.id in logged[0].getMessage()
    assert "no_recipients" in logged[0].getMessage()
    assert "matches no device" in logged[0].getMessage()
    assert "Live Activity token" in logged[2].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="brik"):
        reached = brik.pushes.send(to={"tags": ["fans"]}, alert={"title": "Hi"})
    assert (reached.recipients, reached.warnings) == (1, [])
    assert not [r for r in caplog.records if r.name == "brik"]


async def test_a_send_with_nothing_to_say_is_refused_before_it_leaves(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    client = brik.init()
    brik.devices.register(token=IOS_TOKEN, platform="ios", tags=["fans"])
    for empty in ({}, {"data": {}}, {"alert": {}}):
        with pytest.raises(ValueError, match="alert or data"):
            brik.pushes.send(to={"tags": ["fans"]}, **empty)  # type: ignore[arg-type]
    async with brik.AsyncClient() as async_client:
        with pytest.raises(ValueError, match="alert or data"):
            await async_client.pushes.send(to={"tags": ["fans"]})
    assert api_get(brik_server, keys["test_secret"], "/v1/pushes")["data"] == []
    assert client.pushes.send(to={"tags": ["fans"]}, data={"refresh": 1}).recipients == 1


def test_an_app_unregisters_its_own_device_and_cannot_delete_by_id(keys: dict[str, str]) -> None:
    app = brik.Client(api_key=keys["test_publishable"])
    try:
        device = app.devices.register(token=IOS_TOKEN, platform="ios")
        with pytest.raises(brik.PermissionError) as refused:
            app.devices.delete(device.id)  # secret keys only
        assert refused.value.code == "secret_key_required"
        gone = app.devices.unregister(token=IOS_TOKEN, platform="ios")
        assert (gone.object, gone.id) == ("device", device.id)
        with pytest.raises(brik.NotFoundError):
            app.devices.unregister(token=IOS_TOKEN, platform="ios")
    finally:
        app.close()


TRAVERSALS = ["../credentials/apns", "../../v1/api_key", "..", ".", "", "dev_x?status=all",
              "dev_x#y", "dev_x/../../credentials/apns", "psh_%2e%2e"]  # fmt: skip


def test_an_id_that_cannot_be_one_is_refused_before_it_leaves_its_resource(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    auth = {"Authorization": f"Bearer {keys['test_secret']}"}
    signing = new_signing_key()
    uploaded = httpx.put(f"{brik_server.url}/v1/credentials/apns", headers=auth, json={
        "key": signing.pem, "key_id": signing.key_id, "team_id": signing.team_id,
        "topic": "com.example.app", "environment": "production",
    })  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    sent: list[str] = []
    with httpx.Client(
        base_url=brik_server.url, headers=auth,
        event_hooks={"request": [lambda request: sent.append(request.url.path)]},
    ) as http, brik.Client(keys["test_secret"], base_url=brik_server.url,
                           http_client=http) as client:  # fmt: skip
        calls: list[tuple[str, Callable[[str], object]]] = [
            ("device_id", client.devices.retrieve), ("device_id", client.devices.delete),
            ("push_id", client.pushes.retrieve), ("push_id", client.pushes.cancel),
            ("push_id", client.pushes.deliveries),
            ("push_id", lambda push_id: list(client.pushes.stream(push_id))),
        ]  # fmt: skip
        for param, call in calls:
            for bad in TRAVERSALS:
                with pytest.raises(brik.InvalidRequestError) as refused:
                    call(bad)
                assert refused.value.param == param, bad
        with pytest.raises(brik.InvalidRequestError, match="device id"):
            client.devices.delete("psh_" + "a" * 24)  # a push's id is not a device's
    assert sent == []
    credentials = api_get(brik_server, keys["test_secret"], "/v1/credentials")["data"]
    assert [c["provider"] for c in credentials] == ["apns"]  # type: ignore[attr-defined]


async def test_the_async_client_refuses_such_ids_too(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async with httpx.AsyncClient(
        base_url=brik_server.url, headers={"Authorization": f"Bearer {keys['test_secret']}"},
        event_hooks={"request": [record]},
    ) as http, brik.AsyncClient(keys["test_secret"], base_url=brik_server.url,
                                http_client=http) as client:  # fmt: skip

        async def stream(push_id: str) -> object:
            return [update async for update in client.pushes.stream(push_id)]

        calls: list[Callable[[str], Awaitable[object]]] = [
            client.devices.retrieve, client.devices.delete, client.pushes.retrieve,
            client.pushes.cancel, client.pushes.deliveries, stream,
        ]  # fmt: skip
        for call in calls:
            for bad in TRAVERSALS:
                with pytest.raises(brik.InvalidRequestError):
                    await call(bad)
    assert sent == []


async def test_an_answer_of_the_wrong_shape_is_a_brik_error() -> None:
    """A proxy, an older server or a path that reached something else: an APIError saying so,
    never a KeyError from deep inside the SDK."""

    async def anything(request: Request) -> JSONResponse:
        return JSONResponse({"object": "api_key", "data": [{"id": 1}], "kind": None})

    methods = ["GET", "POST", "DELETE"]
    stand_in = Starlette(routes=[Route("/{path:path}", anything, methods=methods)])
    async with serving(stand_in) as url, brik.AsyncClient("bk_sk_test_" + "x" * 40,
                                                          base_url=url) as client:  # fmt: skip
        push_id, device_id = "psh_" + "a" * 24, "dev_" + "a" * 24
        calls: list[Awaitable[Any]] = [
            client.pushes.retrieve(push_id), client.pushes.cancel(push_id),
            client.pushes.deliveries(push_id), client.pushes.list(),
            client.pushes.send(to={"tags": ["a"]}, alert={"title": "x"}),
            client.devices.retrieve(device_id), client.devices.delete(device_id),
            client.devices.list(), client.devices.register(token="a1" * 32, platform="ios"),
        ]  # fmt: skip
        for call in calls:
            with pytest.raises(brik.APIError, match="unexpected") as raised:
                await call
            assert raised.value.body == {"object": "api_key", "data": [{"id": 1}], "kind": None}


def test_webhook_endpoints_are_created_listed_changed_rotated_and_deleted(
    brik_server: BrikServer,
) -> None:
    brik.init()
    created = brik.webhooks.create(url="https://hooks.example.com/brik",
                                   events=["push.completed", "billing.*"],
                                   description="orders")  # fmt: skip
    assert isinstance(created, brik.WebhookEndpoint)
    assert created.secret is not None
    assert created.secret.startswith("whsec_")
    assert (created.mode, created.type, created.enabled) == ("test", "webhook", True)
    read = brik.webhooks.retrieve(created.id)
    assert (read.secret, read.events) == (None, ["billing.*", "push.completed"])
    assert [e.id for e in brik.webhooks.list().data] == [created.id]
    changed = brik.webhooks.update(created.id, events=["*"], description=None, enabled=False)
    assert (changed.events, changed.description, changed.enabled) == (["*"], None, False)
    rotated = brik.webhooks.rotate_secret(created.id, overlap_hours=1)
    assert rotated.secret not in (None, created.secret)
    assert rotated.previous_secret_expires_at is not None
    with pytest.raises(brik.InvalidRequestError) as refused:
        brik.webhooks.create(url="https://hooks.example.com/", events=["push.sent"])
    assert refused.value.param == "events"
    with pytest.raises(brik.InvalidRequestError) as not_an_id:
        brik.webhooks.retrieve("../credentials")
    assert not_an_id.value.param == "webhook_endpoint_id"
    assert brik.webhooks.delete(created.id).id == created.id
    with pytest.raises(brik.NotFoundError):
        brik.webhooks.retrieve(created.id)


async def test_a_webhook_test_event_is_received_and_verified_with_the_sdk(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    hooks = WebhookReceiver()
    async with (
        serving(hooks.app) as url,
        brik.AsyncClient(keys["test_secret"], base_url=brik_server.url) as client,
    ):
        endpoint = await client.webhooks.create(url=f"{url}/in", events=["push.completed"])
        assert endpoint.secret is not None
        sent = await client.webhooks.send_test(endpoint.id)
        assert (sent.event_type, sent.status) == ("webhook.test", "queued")
        (request,) = await hooks.wait_for(1, within=60)
        event = client.webhooks.verify_signature(
            request.body, request.headers["brik-signature"], endpoint.secret
        )
        assert (event.id, event.type, event.data["id"]) == (sent.event_id, "webhook.test",
                                                           endpoint.id)  # fmt: skip
        deadline = time.monotonic() + 20
        while (log := await client.webhooks.deliveries(endpoint.id)).data[0].status != "succeeded":
            assert time.monotonic() < deadline
        detail = await client.webhooks.delivery(endpoint.id, log.data[0].id)
        assert detail.event is not None
        assert (detail.response_status, detail.event["id"]) == (200, event.id)
        again = await client.webhooks.resend(endpoint.id, detail.id)
        assert (again.trigger, again.event_id) == ("resend", event.id)
        await hooks.wait_for(2, within=60)
