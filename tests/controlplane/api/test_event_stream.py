"""``GET /v1/pushes/{id}/events`` over real HTTP: bounded, riding out Redis, ending cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.app import create_app
from controlplane.models import Delivery, Push
from controlplane.settings import Settings
from tests.support.redis_server import RestartableRedis
from tests.support.servers import running_worker, serving
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

Event = tuple[str, str]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# redis-py's own report of a pipeline it dropped when Redis went away in the middle of arq's
# WATCH (arq's start_jobs, in the test's in-process worker): garbage-collected later, reported
# through asyncio's exception handler. Its ResourceWarning twin is ignored in pyproject.toml.
REDIS_PY_DROPPED_PIPELINE = "Unclosed Pipeline client"


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [
        f"{r.name}: {r.getMessage()}" for r in caplog.records
        if r.levelno >= logging.ERROR
        and not (r.name == "asyncio" and r.getMessage().startswith(REDIS_PY_DROPPED_PIPELINE))
    ]  # fmt: skip
    assert not errors, errors


async def scheduled_push(client: httpx.AsyncClient, tenant: Tenant, in_seconds: float) -> str:
    """A push to one (sandbox) device, due ``in_seconds`` from now."""
    device = await client.post(
        "/v1/devices", json={"token": "ab" * 32, "platform": "ios", "tags": ["all"]},
        headers=bearer(tenant.secret_key),
    )  # fmt: skip
    assert device.status_code == 200, device.text
    send_at = (datetime.now(UTC) + timedelta(seconds=in_seconds)).isoformat()
    push = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]},
                            "send_at": send_at}, headers=bearer(tenant.secret_key),
    )  # fmt: skip
    assert push.status_code == 202, push.text
    assert push.json()["status"] == "scheduled"
    return str(push.json()["id"])


class Stream:
    """One open event stream, read event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: list[Event] = []
        self._lines = response.aiter_lines()

    async def next_event(self, within: float = 30) -> Event | None:
        """The next event, or None when the server closed the stream."""
        event = ""

        async def read() -> Event | None:
            nonlocal event
            async for line in self._lines:
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    self.events.append((event, line[6:]))
                    return self.events[-1]
            return None

        return await asyncio.wait_for(read(), within)

    async def rest(self, within: float = 30) -> list[Event]:
        """Every event until the server closes the stream."""
        while await self.next_event(within) is not None:
            pass
        return self.events


@contextlib.asynccontextmanager
async def opened(client: httpx.AsyncClient, key: str, push_id: str) -> AsyncIterator[Stream]:
    async with client.stream(
        "GET", f"/v1/pushes/{push_id}/events", headers=bearer(key), timeout=60
    ) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        first = await stream.next_event()
        assert first is not None
        assert first[0] == "push"
        yield stream


async def test_streams_are_capped_per_project_and_per_process(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(event_streams_per_project=2, event_streams_per_process=3)
    acme, globex = await make_tenant("Acme", roles=()), await make_tenant("Globex", roles=())
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
        contextlib.AsyncExitStack() as streams,
    ):
        acme_push = await scheduled_push(client, acme, 3600)
        globex_push = await scheduled_push(client, globex, 3600)
        first = await streams.enter_async_context(opened(client, acme.secret_key, acme_push))
        await streams.enter_async_context(opened(client, acme.secret_key, acme_push))

        refused = await client.get(f"/v1/pushes/{acme_push}/events",
                                   headers=bearer(acme.secret_key))  # fmt: skip
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert "2 per project" in refused.json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) > 0

        # Another project still has room, until the process is full.
        await streams.enter_async_context(opened(client, globex.secret_key, globex_push))
        full = await client.get(f"/v1/pushes/{globex_push}/events",
                                headers=bearer(globex.secret_key))  # fmt: skip
        assert full.status_code == 429
        assert "3 per process" in full.json()["error"]["message"]

        # A stream whose client went away gives its place back.
        await first.response.aclose()
        for _ in range(100):
            async with client.stream("GET", f"/v1/pushes/{globex_push}/events",
                                     headers=bearer(globex.secret_key)) as again:  # fmt: skip
                if again.status_code != 429:
                    break
            await asyncio.sleep(0.05)
        assert again.status_code == 200


@pytest.mark.faults
async def test_a_stream_rides_out_a_redis_restart_and_reports_the_final_status(
    make_settings: Callable[..., Settings],
    database: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RestartableRedis(tmp_path / "redis") as redis_server:
        # Re-reading the database only once a minute: what the streams hear in time, they hear
        # from a worker's notice, through Redis once it is back.
        settings = make_settings(redis_url=redis_server.url, event_stream_poll_seconds=60.0)
        acme = await make_tenant("Acme", roles=())
        async with (
            serving(create_app(settings)) as url,
            running_worker(settings),
            httpx.AsyncClient(base_url=url) as client,
        ):
            push_id = await scheduled_push(client, acme, 4)
            started = time.monotonic()
            async with opened(client, acme.secret_key, push_id) as before:
                redis_server.save()  # the deferred job survives the restart
                redis_server.kill()
                await asyncio.sleep(1)  # the stream keeps going while Redis is away …
                # … and one opened meanwhile is a stream too, not a broken body.
                async with opened(client, acme.secret_key, push_id) as during:
                    redis_server.start()
                    events_during = await during.rest()
                events_before = await before.rest()
            assert time.monotonic() - started < 30
            for events in (events_before, events_during):
                assert events[-1] == ("end", "{}")
                final = json.loads(events[-2][1])
                assert (final["status"], final["deliveries"]) == ("completed", {"delivered": 1})
            # The process's subscriber is back on Redis: notices wake streams again.
            redis = Redis.from_url(redis_server.url)
            try:
                for _ in range(100):  # it reconnects with backoff, up to every 5 s
                    if await redis.execute_command("PUBSUB", "NUMPAT") == 1:
                        break
                    await asyncio.sleep(0.1)
                assert await redis.execute_command("PUBSUB", "NUMPAT") == 1
            finally:
                await redis.aclose()
    no_errors_logged(caplog)


async def test_a_stream_whose_push_is_deleted_ends_cleanly(
    make_settings: Callable[..., Settings], database: None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(event_stream_poll_seconds=0.2)
    acme = await make_tenant("Acme", roles=())
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        push_id = await scheduled_push(client, acme, 3600)
        async with opened(client, acme.secret_key, push_id) as stream:
            # What deleting its project does to the push, in its last step.
            await Delivery.filter(push_id=push_id).delete()
            await Push.filter(id=push_id).delete()
            events = await stream.rest(within=10)
    assert events[-1] == ("end", json.dumps({"reason": "deleted"}))
    no_errors_logged(caplog)


async def test_a_stream_ends_after_its_maximum_duration(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(event_stream_max_seconds=1.0, event_stream_poll_seconds=0.2)
    acme = await make_tenant("Acme", roles=())
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        push_id = await scheduled_push(client, acme, 3600)
        async with opened(client, acme.secret_key, push_id) as stream:
            events = await stream.rest(within=10)
    # Closed without `end`: the client reconnects and hears the push as it is then.
    assert [name for name, _ in events] == ["push"]
    assert json.loads(events[0][1])["status"] == "scheduled"


async def test_a_stopping_server_ends_its_streams_instead_of_waiting_for_them(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(event_stream_max_seconds=10.0)
    acme = await make_tenant("Acme", roles=())
    async with contextlib.AsyncExitStack() as outlives_the_server:
        async with serving(create_app(settings)) as url:
            client = await outlives_the_server.enter_async_context(httpx.AsyncClient(base_url=url))
            push_id = await scheduled_push(client, acme, 3600)
            stream = await outlives_the_server.enter_async_context(
                opened(client, acme.secret_key, push_id)
            )
            stopping = time.monotonic()
        # uvicorn waits for open responses before it stops: the stream was ended, not awaited.
        assert time.monotonic() - stopping < 5
        events = await stream.rest(within=5)
    assert [name for name, _ in events] == ["push"]  # no `end`: the client reconnects
