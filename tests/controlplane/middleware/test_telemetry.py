from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest

pytestmark = pytest.mark.database


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/nope")
    assert re.fullmatch(r"req_[0-9a-f]{24}", first.headers["request-id"])
    assert second.headers["request-id"] != first.headers["request-id"]


async def test_a_plain_client_request_id_is_kept_and_a_hostile_one_replaced(
    client: httpx.AsyncClient,
) -> None:
    kept = await client.get("/healthz", headers={"Request-Id": "mobile-7f3a.42"})
    assert kept.headers["request-id"] == "mobile-7f3a.42"
    hostile = await client.get("/healthz", headers={"Request-Id": 'x" onload=alert(1)'})
    assert hostile.headers["request-id"].startswith("req_")


async def test_one_structured_log_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="brik.http")
    response = await client.get("/healthz")
    lines = [r for r in caplog.records if r.name == "brik.http"]
    assert len(lines) == 1
    line = lines[0]
    assert line.__dict__["request_id"] == response.headers["request-id"]
    assert line.__dict__["route"] == "/healthz"
    assert line.__dict__["status"] == 200
    assert line.__dict__["duration_ms"] >= 0


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/healthz")
    for n in range(3):
        await client.get(f"/random/path/{n}")
    text = (await client.get("/metrics")).text
    assert 'brik_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    # Unknown paths share one label value: a scanner cannot blow up the series count.
    assert 'brik_http_requests_total{method="GET",route="<unmatched>",status="404"} 3.0' in text
    assert "/random/path" not in text
    assert (
        'brik_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"' in text
    )
    assert "process_cpu_seconds_total" in text


async def test_unusual_methods_share_one_label(client: httpx.AsyncClient) -> None:
    await client.request("PROPFIND", "/healthz")
    text = (await client.get("/metrics")).text
    assert 'method="OTHER",route="/healthz",status="405"' in text
    assert "PROPFIND" not in text


async def test_a_client_that_hangs_up_mid_request_is_not_an_error(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = client.base_url
    assert url.port is not None
    _, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"POST /v1/auth/login HTTP/1.1\r\nHost: brik\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"email": "a@b.example", "pass'
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body when the client goes away
    writer.close()
    await writer.wait_closed()
    for _ in range(100):
        lines = [r for r in caplog.records if r.name == "brik.http" and r.msg == "request"]
        if lines:
            break
        await asyncio.sleep(0.05)
    assert [r.__dict__["status"] for r in lines] == [499]  # nginx's "client closed request"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert (await client.get("/healthz")).status_code == 200
    text = (await client.get("/metrics")).text
    assert 'route="/v1/auth/login",status="499"' in text
