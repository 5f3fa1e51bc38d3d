"""``brik.activities`` against a real Brik Cloud (sandbox delivery): Live Activities by id
started, reported, updated, ended and read back, blocking and async; an ended activity raised
as ``ConflictError``; idempotent by default; ids that cannot leave their path."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import brik
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.sdk.conftest import BrikServer, api_get
from tests.sdk.test_resources import TRAVERSALS
from tests.support.proxy import dropping_proxy
from tests.support.servers import serving

pytestmark = pytest.mark.usefixtures("environment")

IPHONE = "a1" * 32
PUSH_TO_START = "b2" * 32
ACTIVITY_TOKEN = "c3" * 32
PIXEL = "fcm-token-" + "p" * 40
ORDER = {"status": "preparing", "eta": 30}


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    yield
    if brik._default is not None:
        brik._default.close()
        brik._default = None


@pytest.fixture
def app(brik_server: BrikServer, keys: dict[str, str]) -> Iterator[brik.Client]:
    """What the mobile app holds: the project's publishable key."""
    with brik.Client(keys["test_publishable"], base_url=brik_server.url) as client:
        yield client


def delivered(push_id: str | None) -> dict[str, int]:
    assert push_id is not None
    return list(brik.pushes.stream(push_id))[-1].deliveries


def test_start_report_update_end_and_read_back(
    brik_server: BrikServer, keys: dict[str, str], app: brik.Client
) -> None:
    brik.init()
    iphone = app.devices.register(token=IPHONE, platform="ios", user_id="ann",
                                  push_to_start_token=PUSH_TO_START)  # fmt: skip
    app.devices.register(token=PIXEL, platform="android", user_id="ann")
    started = brik.activities.start(
        to={"user_ids": ["ann"]}, activity_type="OrderTracking",
        attributes={"order": "A-1042"}, content_state=ORDER,
    )  # fmt: skip
    assert isinstance(started, brik.ActivitySent)
    assert started.id.startswith("act_")
    assert (started.status, started.started_by, started.user_id) == ("starting", "server", "ann")
    assert (started.recipients, started.warnings) == (2, [])
    assert (started.attributes, started.content_state) == ({"order": "A-1042"}, ORDER)
    assert delivered(started.push_id) == {"delivered": 2}
    stored = api_get(brik_server, keys["test_secret"], f"/v1/pushes/{started.push_id}")
    assert stored["content"]["live_activity"]["event"] == "start"  # type: ignore[index]
    assert stored["content"]["priority"] == "high"  # type: ignore[index]

    token = app.activities.report_token(started.id, device_id=iphone.id, token=ACTIVITY_TOKEN)
    assert isinstance(token, brik.ActivityToken)
    assert (token.device_id, token.platform, token.status) == (iphone.id, "ios", "active")
    assert token.token == f"…{ACTIVITY_TOKEN[-4:]}"

    updated = brik.activities.update(started.id, content_state={"status": "on its way", "eta": 12})
    assert (updated.status, updated.recipients) == ("active", 2)
    assert updated.timestamp > started.timestamp
    assert delivered(updated.push_id) == {"delivered": 2}
    dismissal = datetime.now(UTC) + timedelta(hours=1)
    ended = brik.activities.end(started.id, content_state={"status": "delivered", "eta": 0},
                                dismissal_date=dismissal)  # fmt: skip
    assert (ended.status, ended.end_reason) == ("ended", "ended")
    assert ended.dismissal_date is not None
    assert abs(ended.dismissal_date - dismissal) < timedelta(seconds=1)
    assert ended.timestamp > updated.timestamp
    assert delivered(ended.push_id) == {"delivered": 2}

    detail = brik.activities.retrieve(started.id)
    assert isinstance(detail, brik.ActivityDetail)
    assert (detail.status, detail.content_state) == ("ended", {"status": "delivered", "eta": 0})
    assert {(t.platform, t.token) for t in detail.tokens} == {
        ("ios", f"…{ACTIVITY_TOKEN[-4:]}"), ("android", None),
    }  # fmt: skip
    assert len(detail.last_deliveries) == 6
    assert detail.last_deliveries[0].push_id == ended.push_id  # newest first
    entry = brik.state.get(f"activity:{started.id}")
    assert entry is not None
    assert entry.value == {"status": "delivered", "eta": 0}

    other = brik.activities.start(to={"device_ids": [iphone.id]}, activity_type="Timer",
                                  content_state={"left": 60})  # fmt: skip
    assert [a.id for a in brik.activities.list(status="ended").data] == [started.id]
    assert [a.id for a in brik.activities.list(activity_type="Timer").data] == [other.id]
    assert {a.id for a in brik.activities.iterate(user_id="ann", page_size=1)} == {
        started.id, other.id,
    }  # fmt: skip


def test_tags_and_a_broadcast_channel(keys: dict[str, str], app: brik.Client) -> None:
    brik.init()
    app.devices.register(token=IPHONE, platform="ios", tags=["fans"],
                         push_to_start_token=PUSH_TO_START)  # fmt: skip
    match = brik.activities.start(to={"tags": ["fans"]}, activity_type="Match",
                                  content_state={"score": "0-0"}, broadcast=True)  # fmt: skip
    assert match.channel_id is not None
    assert (match.recipients, delivered(match.push_id)) == (1, {"delivered": 1})
    goal = brik.activities.update(match.id, content_state={"score": "1-0"})
    assert (goal.recipients, delivered(goal.push_id)) == (1, {"delivered": 1})  # the channel
    kept = brik.activities.start(activity_type="Match", content_state={"score": "0-0"},
                                 broadcast=True, broadcast_keeps_latest=True)  # fmt: skip
    assert (kept.channel_id is not None, kept.recipients) == (True, 0)  # `to` is optional
    with pytest.raises(brik.InvalidRequestError) as refused:
        brik.activities.start(activity_type="Match", content_state={})
    assert refused.value.param == "to"


def test_an_app_registers_its_own_activity_and_an_ended_one_is_a_conflict(
    keys: dict[str, str], app: brik.Client
) -> None:
    brik.init()
    iphone = app.devices.register(token=IPHONE, platform="ios", user_id="bob")
    registered = app.activities.register(
        device_id=iphone.id, token=ACTIVITY_TOKEN, activity_type="Match",
        attributes={"home": "Lyon"}, content_state={"score": "0-0"},
    )  # fmt: skip
    assert isinstance(registered, brik.Activity)
    assert (registered.status, registered.started_by, registered.user_id) == ("active", "app",
                                                                             "bob")  # fmt: skip
    with pytest.raises(brik.PermissionError):
        app.activities.update(registered.id, content_state={"score": "1-0"})  # secret keys only
    brik.activities.end(registered.id)
    calls: list[Callable[[], object]] = [
        lambda: brik.activities.update(registered.id, content_state={"score": "1-0"}),
        lambda: brik.activities.end(registered.id),
        lambda: app.activities.report_token(registered.id, device_id=iphone.id, token="d4" * 32),
    ]
    for call in calls:
        with pytest.raises(brik.ConflictError) as ended:
            call()
        assert (ended.value.status, ended.value.code) == (409, "activity_ended")
        assert "Start a new one" in ended.value.message
        assert not isinstance(ended.value, brik.IdempotencyError)
    with pytest.raises(brik.NotFoundError):
        brik.activities.retrieve("act_" + "0" * 24)


def test_changes_are_idempotent_by_default_and_with_your_key(
    brik_server: BrikServer, keys: dict[str, str], app: brik.Client
) -> None:
    iphone = app.devices.register(token=IPHONE, platform="ios", user_id="cy")
    activity = app.activities.register(
        device_id=iphone.id, token=ACTIVITY_TOKEN, activity_type="Timer",
        content_state={"left": 60},
    )  # fmt: skip
    path = f"POST /v1/activities/{activity.id}/update ".encode()
    with (
        dropping_proxy(brik_server.url, path) as proxy,
        brik.Client(keys["test_secret"], base_url=proxy.url) as client,
    ):
        update = client.activities.update(activity.id, content_state={"left": 50})
        assert (proxy.dropped, proxy.seen) == (1, 2)  # the answer was lost, then a retry
        once = client.activities.update(activity.id, content_state={"left": 40},
                                        idempotency_key="timer-40")  # fmt: skip
        again = client.activities.update(activity.id, content_state={"left": 40},
                                         idempotency_key="timer-40")  # fmt: skip
    assert (again.push_id, again.timestamp) == (once.push_id, once.timestamp)
    pushes: Any = api_get(brik_server, keys["test_secret"], "/v1/pushes")["data"]
    assert {p["id"] for p in pushes} == {update.push_id, once.push_id}
    assert len(pushes) == 2


def test_devices_left_out_are_warned_about_and_logged(
    keys: dict[str, str], app: brik.Client, caplog: pytest.LogCaptureFixture
) -> None:
    brik.init()
    iphone = app.devices.register(token=IPHONE, platform="ios", user_id="dee")  # no push-to-start
    with caplog.at_level(logging.WARNING, logger="brik"):
        nobody = brik.activities.start(to={"user_ids": ["dee"]}, activity_type="OrderTracking",
                                       content_state=ORDER)  # fmt: skip
    assert nobody.recipients == 0
    assert [w.code for w in nobody.warnings] == ["no_recipients", "no_push_to_start_token"]
    logged = [r.getMessage() for r in caplog.records if r.name == "brik"]
    assert len(logged) == 2
    assert nobody.id in logged[1]
    assert "no_push_to_start_token" in logged[1]
    assert "push-to-start token" in logged[1]

    app.devices.register(token=IPHONE, platform="ios", user_id="dee",
                         push_to_start_token=PUSH_TO_START)  # fmt: skip
    started = brik.activities.start(to={"device_ids": [iphone.id]},
                                    activity_type="OrderTracking", content_state=ORDER)  # fmt: skip
    assert delivered(started.push_id) == {"delivered": 1}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="brik"):
        pending = brik.activities.update(started.id, content_state={"eta": 5})
    assert [w.code for w in pending.warnings] == ["no_recipients", "token_pending"]
    assert "token_pending" in caplog.records[-1].getMessage()


async def test_the_async_client_does_the_same(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    async with (
        brik.AsyncClient(keys["test_secret"], base_url=brik_server.url) as server,
        brik.AsyncClient(keys["test_publishable"], base_url=brik_server.url) as app,
    ):
        pixel = await app.devices.register(token=PIXEL, platform="android", user_id="eve")
        started = await server.activities.start(to={"user_ids": ["eve"]},
                                                activity_type="OrderTracking",
                                                content_state=ORDER, priority=5)  # fmt: skip
        assert (started.status, started.recipients) == ("active", 1)  # Android needs no token
        token = await app.activities.report_token(started.id, device_id=pixel.id)
        assert (token.platform, token.token, token.status) == ("android", None, "active")
        updated = await server.activities.update(started.id, content_state={"eta": 9},
                                                 priority=10)  # fmt: skip
        assert updated.timestamp > started.timestamp
        ended = await server.activities.end(started.id)
        assert (ended.status, ended.content_state) == ("ended", {"eta": 9})
        with pytest.raises(brik.ConflictError):
            await server.activities.update(started.id, content_state={"eta": 1})
        detail = await server.activities.retrieve(started.id)
        assert [t.device_id for t in detail.tokens] == [pixel.id]
        registered = await app.activities.register(device_id=pixel.id, activity_type="Timer",
                                                   content_state={"left": 1})  # fmt: skip
        assert [a.id async for a in server.activities.iterate(page_size=1)] == [
            a.id for a in (await server.activities.list()).data
        ]
        listed = {a.id for a in (await server.activities.list()).data}
        assert listed == {started.id, registered.id}
    stored: list[Any] = [
        api_get(brik_server, keys["test_secret"], f"/v1/pushes/{push_id}")
        for push_id in (started.push_id, updated.push_id)
    ]
    priorities = [push["content"]["priority"] for push in stored]
    assert priorities == ["normal", "high"]


def test_an_activity_id_that_cannot_be_one_is_refused_before_it_leaves(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    sent: list[str] = []
    with httpx.Client(
        base_url=brik_server.url, headers={"Authorization": f"Bearer {keys['test_secret']}"},
        event_hooks={"request": [lambda request: sent.append(request.url.path)]},
    ) as http, brik.Client(keys["test_secret"], base_url=brik_server.url,
                           http_client=http) as client:  # fmt: skip
        activities = client.activities
        calls: list[Callable[[str], object]] = [
            activities.retrieve, activities.end,
            lambda activity_id: activities.update(activity_id, content_state={}),
            lambda activity_id: activities.report_token(activity_id, device_id="dev_x"),
        ]  # fmt: skip
        for call in calls:
            for bad in [*TRAVERSALS, "dev_" + "a" * 24, "act_x/../../credentials"]:
                with pytest.raises(brik.InvalidRequestError) as refused:
                    call(bad)
                assert (refused.value.param, refused.value.code) == ("activity_id", "invalid_id")
    assert sent == []


async def test_an_answer_of_the_wrong_shape_is_a_brik_error() -> None:
    async def anything(request: Request) -> JSONResponse:
        return JSONResponse({"object": "api_key", "data": [{"id": 1}]})

    stand_in = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])
    async with serving(stand_in) as url, brik.AsyncClient("bk_sk_test_" + "x" * 40,
                                                          base_url=url) as client:  # fmt: skip
        activity_id = "act_" + "a" * 24
        activities = client.activities
        calls: list[Awaitable[Any]] = [
            activities.start(to={"user_ids": ["a"]}, activity_type="T", content_state={}),
            activities.register(device_id="dev_a", activity_type="T", content_state={}),
            activities.report_token(activity_id, device_id="dev_a"),
            activities.update(activity_id, content_state={}), activities.end(activity_id),
            activities.retrieve(activity_id), activities.list(),
        ]  # fmt: skip
        for call in calls:
            with pytest.raises(brik.APIError, match="unexpected"):
                await call
