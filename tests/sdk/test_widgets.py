"""``brik.widgets.reload`` against a real Brik Cloud: the widget's data stored as public state
and a widget push sent (sandbox), typed, retried once, blocking and async."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import brik
import pytest

from tests.sdk.conftest import BrikServer, api_get

pytestmark = pytest.mark.usefixtures("environment")

PHONE, WIDGET_TOKEN = "a1" * 32, "c3" * 32
OLD_PHONE = "d4" * 32  # an app on iOS before 26: no widget push token
ANDROID = "fcm-token-" + "w" * 40


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    yield
    if brik._default is not None:
        brik._default.close()
        brik._default = None


def test_reload_stores_the_data_and_pushes_to_the_widget_tokens(
    brik_server: BrikServer, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    brik.init()
    phone = brik.devices.register(token=PHONE, platform="ios", user_id="u_1",
                                  widget_push_token=WIDGET_TOKEN)  # fmt: skip
    assert (phone.has_widget_push_token, phone.has_live_activity_token) == (True, False)
    brik.devices.register(token=OLD_PHONE, platform="ios", user_id="u_1")
    brik.devices.register(token=ANDROID, platform="android", user_id="u_1")

    with caplog.at_level(logging.WARNING, logger="brik"):
        reload = brik.widgets.reload(
            "OrderWidget", to={"user_ids": ["u_1"]}, data={"eta_minutes": 12}
        )

    assert isinstance(reload, brik.WidgetReload)
    assert isinstance(reload, brik.Push)  # a push like any other
    assert (reload.widget_kind, reload.recipients) == ("OrderWidget", 2)
    assert reload.state is not None
    assert (reload.state.key, reload.state.value) == ("widget:OrderWidget", {"eta_minutes": 12})
    assert (reload.state.public, reload.state.version) == (True, 1)
    assert [w.code for w in reload.warnings] == ["no_widget_push_token"]
    assert "no_widget_push_token" in caplog.text  # logged, as a send's warnings are
    detail = list(brik.pushes.stream(reload.id))[-1]
    assert (detail.kind, detail.deliveries) == ("widget", {"delivered": 2})
    # The app's widget reads it with the publishable key; nobody writes it through state.
    with brik.Client(keys["test_publishable"], base_url=brik_server.url) as app:
        entry = app.state.get("widget:OrderWidget")
        assert entry is not None
        assert entry.value == {"eta_minutes": 12}
        with pytest.raises(brik.PermissionError):
            app.widgets.reload("OrderWidget", to={"user_ids": ["u_1"]})
    with pytest.raises(brik.InvalidRequestError) as reserved:
        brik.state.set("widget:OrderWidget", {"eta_minutes": 0})
    assert reserved.value.code == "reserved_key"

    # Without data: the same entry, another push.
    again = brik.widgets.reload("OrderWidget", to={"device_ids": [phone.id]})
    assert (again.state, again.recipients) == (None, 1)
    stored = api_get(brik_server, keys["test_secret"], "/v1/state/widget:OrderWidget")
    assert stored["version"] == 1


def test_a_reload_retried_with_its_key_is_answered_once(keys: dict[str, str]) -> None:
    brik.init()
    brik.devices.register(token=PHONE, platform="ios", user_id="u_2",
                          widget_push_token=WIDGET_TOKEN)  # fmt: skip
    first = brik.widgets.reload("Score", to={"user_ids": ["u_2"]}, data={"home": 1},
                                idempotency_key="score-1")  # fmt: skip
    second = brik.widgets.reload("Score", to={"user_ids": ["u_2"]}, data={"home": 1},
                                 idempotency_key="score-1")  # fmt: skip
    assert first == second
    assert [push.id for push in brik.pushes.list().data] == [first.id]
    assert second.state is not None
    assert second.state.version == 1


def test_a_kind_no_widget_has_is_refused_before_anything_is_sent(keys: dict[str, str]) -> None:
    brik.init()
    for kind in ("../pushes", ".hidden", "a b", "", "w" * 129):
        with pytest.raises(brik.InvalidRequestError) as refused:
            brik.widgets.reload(kind, to={"tags": ["all"]})
        assert (refused.value.param, refused.value.body) == ("kind", None)
    assert brik.pushes.list().data == []


async def test_the_async_client_reloads_too(brik_server: BrikServer, keys: dict[str, str]) -> None:
    async with brik.AsyncClient(keys["test_secret"], base_url=brik_server.url) as client:
        phone = await client.devices.register(token=PHONE, platform="ios", tags=["fans"],
                                              widget_push_token=WIDGET_TOKEN)  # fmt: skip
        assert phone.has_widget_push_token
        reload = await client.widgets.reload("Score", to={"tags": ["fans"]}, data={"home": 2})
        assert (reload.widget_kind, reload.recipients, reload.warnings) == ("Score", 1, [])
        assert reload.state is not None
        assert reload.state.value == {"home": 2}
        entry = await client.state.get("widget:Score")
        assert entry is not None
        assert entry.etag == reload.state.etag
        final = [detail async for detail in client.pushes.stream(reload.id)][-1]
        assert final.deliveries == {"delivered": 1}
