"""Retries, idempotency and errors, against a real Brik Cloud: a dropped connection, a refused
request, every kind of error answer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import brik
import httpx
import pytest

from controlplane.app import create_app
from controlplane.settings import Settings
from tests.sdk.conftest import QUOTA, BrikServer, api_get
from tests.support.processes import free_port
from tests.support.proxy import dropping_proxy
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_tenant

IOS_TOKEN = "c3" * 32
PUSH_REQUEST = b"POST /v1/pushes "


def test_a_send_whose_answer_is_lost_is_retried_and_delivered_once(
    brik_server: BrikServer, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="brik")
    with (
        dropping_proxy(brik_server.url, PUSH_REQUEST) as proxy,
        brik.Client(keys["test_secret"], base_url=proxy.url) as client,
    ):
        client.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_1")
        push = client.pushes.send(to={"user_ids": ["u_1"]}, alert={"title": "Exactly once"})
        assert (proxy.dropped, proxy.seen) == (1, 2)  # the first answer was lost, then a retry
    [retry] = [record.getMessage() for record in caplog.records if record.name == "brik"]
    assert "POST /v1/pushes failed" in retry
    assert "retry 1 of 2" in retry
    pushes = api_get(brik_server, keys["test_secret"], "/v1/pushes")["data"]
    assert [p["id"] for p in pushes] == [push.id]  # type: ignore[union-attr,index]
    detail = api_get(brik_server, keys["test_secret"], f"/v1/pushes/{push.id}")
    assert detail["recipients"] == 1


async def test_the_async_client_retries_the_same_way(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    with dropping_proxy(brik_server.url, PUSH_REQUEST, drops=2) as proxy:
        async with brik.AsyncClient(keys["test_secret"], base_url=proxy.url) as client:
            await client.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_2")
            push = await client.pushes.send(to={"user_ids": ["u_2"]}, data={"n": 1})
            assert (proxy.dropped, proxy.seen) == (2, 3)
            assert [p.id for p in (await client.pushes.list()).data] == [push.id]
            updates = [update async for update in client.pushes.stream(push.id)]
    assert updates[-1].deliveries == {"delivered": 1}


def test_when_every_attempt_fails_the_error_says_so(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    with (
        dropping_proxy(brik_server.url, PUSH_REQUEST, drops=10) as proxy,
        brik.Client(keys["test_secret"], base_url=proxy.url, max_retries=2) as client,
    ):
        client.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_3")
        with pytest.raises(brik.APIConnectionError) as raised:
            client.pushes.send(to={"user_ids": ["u_3"]}, alert={"title": "Lost"})
        assert proxy.seen == 3
    assert "after 3 attempt(s)" in str(raised.value)
    # The server did accept it (only the answers were lost): one push, never three.
    assert len(api_get(brik_server, keys["test_secret"], "/v1/pushes")["data"]) == 1  # type: ignore[arg-type]

    with brik.Client(keys["test_secret"], base_url=f"http://127.0.0.1:{free_port()}",
                     max_retries=1) as nowhere, pytest.raises(brik.APIConnectionError):  # fmt: skip
        nowhere.devices.list()


def test_each_error_answer_is_its_own_exception_with_the_request_id(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    with brik.Client(keys["test_secret"], base_url=brik_server.url) as client:
        with pytest.raises(brik.InvalidRequestError) as invalid:
            client.devices.register(token=IOS_TOKEN, platform="windows")  # type: ignore[arg-type]
        assert (invalid.value.status, invalid.value.param) == (400, "platform")
        assert invalid.value.request_id is not None
        assert invalid.value.request_id.startswith("req_")
        assert invalid.value.request_id in str(invalid.value)

        with pytest.raises(brik.NotFoundError) as missing:
            client.pushes.retrieve("psh_" + "0" * 24)
        assert missing.value.code == "resource_missing"

        client.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_4")
        client.pushes.send(to={"user_ids": ["u_4"]}, alert={"title": "A"}, idempotency_key="k-1")
        with pytest.raises(brik.IdempotencyError) as reused:
            client.pushes.send(to={"user_ids": ["u_4"]}, alert={"title": "B"},
                               idempotency_key="k-1")  # fmt: skip
        assert reused.value.status == 422

    with brik.Client(keys["test_publishable"], base_url=brik_server.url) as publishable:
        with pytest.raises(brik.PermissionError) as denied:
            publishable.pushes.send(to={"user_ids": ["u_4"]}, alert={"title": "No"})
        assert denied.value.status == 403
    with (
        brik.Client("bk_sk_test_" + "x" * 40, base_url=brik_server.url) as stranger,
        pytest.raises(brik.AuthenticationError),
    ):
        stranger.devices.list()
    for error in (brik.InvalidRequestError, brik.PermissionError, brik.QuotaExceededError,
                  brik.RateLimitError, brik.APIConnectionError):  # fmt: skip
        assert issubclass(error, brik.BrikError)


def test_a_used_up_quota_is_raised_at_once_not_retried(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    with (
        dropping_proxy(brik_server.url, PUSH_REQUEST, drops=0) as proxy,
        brik.Client(keys["test_secret"], base_url=proxy.url) as client,
    ):
        for n in range(QUOTA + 1):
            client.devices.register(token=f"{n:064x}", platform="ios", tags=["all"])
        with pytest.raises(brik.QuotaExceededError) as exceeded:
            client.pushes.send(to={"tags": ["all"]}, alert={"title": "Too many"})
        assert proxy.seen == 1
    assert exceeded.value.status == 429
    assert f"{QUOTA:,}" in exceeded.value.message


@pytest.mark.database
async def test_rate_limits_are_waited_out_or_raised_with_retry_after(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(plan_free_requests_per_second=1.0, rate_limit_burst_seconds=1.0)
    acme = await make_tenant("Acme")
    async with serving(create_app(settings)) as url:
        async with brik.AsyncClient(acme.secret_key, base_url=url, max_retries=0) as impatient:
            await impatient.devices.list()
            with pytest.raises(brik.RateLimitError) as limited:
                await impatient.devices.list()
        assert limited.value.retry_after is not None
        assert limited.value.retry_after >= 1
        with dropping_proxy(url, b"GET /v1/devices", drops=0) as proxy:
            async with brik.AsyncClient(acme.secret_key, base_url=proxy.url) as patient:
                page = await patient.devices.list()
        assert page.data == []
        assert proxy.seen == 2  # refused once, then waited out


def test_configuration_errors_say_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIK_API_KEY", raising=False)
    with pytest.raises(brik.ConfigurationError, match="BRIK_API_KEY"):
        brik.init()
    with pytest.raises(brik.ConfigurationError, match="not a Brik project API key"):
        brik.Client("sk_live_stripe_key")
    brik._default = None
    with pytest.raises(brik.ConfigurationError, match=r"brik\.init\(\)"):
        brik.pushes.retrieve("push_x")
    with brik.Client("bk_sk_live_" + "y" * 40) as live:
        assert live.mode == "live"
    monkeypatch.setenv("BRIK_API_KEY", "bk_pk_test_" + "z" * 40)
    monkeypatch.setenv("BRIK_API_URL", "http://brik.internal:8000/")
    client = brik.init()
    try:
        assert (client.mode, client.base_url) == ("test", "http://brik.internal:8000")
        assert brik.default_client() is client
    finally:
        client.close()
        brik._default = None


def test_a_custom_http_client_is_used_and_left_open(
    brik_server: BrikServer, keys: dict[str, str]
) -> None:
    seen: list[str] = []
    with httpx.Client(
        base_url=brik_server.url,
        headers={"Authorization": f"Bearer {keys['test_secret']}"},
        event_hooks={"request": [lambda request: seen.append(request.url.path)]},
    ) as http:
        client = brik.Client(keys["test_secret"], base_url=brik_server.url, http_client=http)
        client.devices.list()
        client.close()
        assert not http.is_closed
    assert seen == ["/v1/devices"]


@pytest.mark.database
async def test_a_stream_the_server_closes_before_the_end_is_reopened(
    make_settings: Callable[..., Settings], database: None
) -> None:
    # The server closes every stream after a second (BRIK_EVENT_STREAM_MAX_SECONDS) without
    # `end`; the push goes out three seconds after it is sent.
    settings = make_settings(event_stream_max_seconds=1.0, event_stream_poll_seconds=0.2)
    acme = await make_tenant("Acme", roles=())
    async with (
        serving(create_app(settings)) as url,
        running_worker(settings),
        brik.AsyncClient(acme.secret_key, base_url=url) as client,
    ):
        await client.devices.register(token=IOS_TOKEN, platform="ios", user_id="u_6")
        push = await client.pushes.send(
            to={"user_ids": ["u_6"]}, alert={"title": "Later"},
            send_at=datetime.now(UTC) + timedelta(seconds=3),
        )  # fmt: skip
        updates = [update async for update in client.pushes.stream(push.id)]
    assert updates[0].status == "scheduled"
    assert (updates[-1].status, updates[-1].deliveries) == ("completed", {"delivered": 1})
