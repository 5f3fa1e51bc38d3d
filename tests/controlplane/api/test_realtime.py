"""``/v1/realtime`` over real HTTP: publish → receive, private channels, resume, activities,
two API processes on one Redis, the plan's connection limit, tenants apart, Redis going away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.models import KeyKind, KeyMode, Plan
from controlplane.realtime import tokens
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.redis_server import RestartableRedis
from tests.support.servers import serving
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def app_key(tenant: Tenant, mode: KeyMode = KeyMode.TEST) -> str:
    _, key = await issue_api_key(tenant.project, name="app", kind=KeyKind.PUBLISHABLE,
                                 mode=mode, pepper=TEST_SECRET_KEY)  # fmt: skip
    return key


async def live_secret(tenant: Tenant) -> str:
    _, key = await issue_api_key(tenant.project, name="live", kind=KeyKind.SECRET,
                                 mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    return key


@dataclass
class Event:
    id: str | None
    event: str
    data: Any


class Stream:
    """An open SSE stream, read in the background event by event (comments kept apart)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self.retry: int | None = None
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("retry: "):
                    self.retry = int(line[7:])
                elif line == "":
                    if "data" in fields:
                        self._events.put_nowait(Event(
                            fields.get("id"), fields.get("event", "message"),
                            json.loads(fields["data"]),
                        ))  # fmt: skip
                    fields = {}
                else:
                    name, _, value = line.partition(": ")
                    fields[name] = value
        except httpx.HTTPError:
            pass
        finally:
            self._events.put_nowait(None)

    async def next(self, within: float = 10) -> Event | None:
        """The next event, or None when the server closed the stream."""
        return await asyncio.wait_for(self._events.get(), within)

    async def silence(self, seconds: float) -> None:
        """Nothing but comments for ``seconds``."""
        with contextlib.suppress(TimeoutError):
            event = await self.next(within=seconds)
            raise AssertionError(f"unexpected {event}")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def subscribed(
    client: httpx.AsyncClient, key: str, channel: str, *, params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:  # fmt: skip
    async with client.stream(
        "GET", f"/v1/realtime/channels/{channel}", params=params,
        headers={**bearer(key), **(headers or {})}, timeout=30,
    ) as response:  # fmt: skip
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        try:
            yield stream
        finally:
            await stream.close()


async def publish(
    client: httpx.AsyncClient, key: str, channel: str, data: Any, event: str | None = None
) -> str:
    body: dict[str, Any] = {"data": data} if event is None else {"data": data, "event": event}
    sent = await client.post(f"/v1/realtime/channels/{channel}/messages", headers=bearer(key),
                             json=body)  # fmt: skip
    assert sent.status_code == 200, sent.text
    assert sent.json()["channel"] == channel
    return str(sent.json()["id"])


async def mint(client: httpx.AsyncClient, key: str, channels: list[str], ttl: int = 600) -> str:
    made = await client.post("/v1/realtime/tokens", headers=bearer(key),
                             json={"channels": channels, "ttl_seconds": ttl})  # fmt: skip
    assert made.status_code == 200, made.text
    assert made.json()["channels"] == channels
    return str(made.json()["token"])


async def test_a_published_message_reaches_an_app_s_stream_with_heartbeats_between(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(realtime_heartbeat_seconds=0.2)
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        async with subscribed(client, phone, "scores") as stream:
            await stream.silence(0.5)
            assert "heartbeat" in stream.comments
            started = time.monotonic()
            sent = await publish(client, acme.secret_key, "scores", {"home": 2, "away": 1},
                                 event="goal")  # fmt: skip
            got = await stream.next()
            assert got == Event(sent, "goal", {"home": 2, "away": 1})
            assert time.monotonic() - started < 2
            plain = await publish(client, acme.secret_key, "scores", ["any", "json", 1.5, None])
            assert await stream.next() == Event(plain, "message", ["any", "json", 1.5, None])
            assert stream.retry is not None
            assert stream.retry > 0
        # One subscription per channel in the process, gone with its last stream.
        metrics = (await client.get("/metrics")).text
        assert "brik_realtime_connections 0.0" in metrics
        assert "brik_realtime_messages_delivered_total 2.0" in metrics


async def test_private_channels_need_a_token_for_them_that_has_not_expired(
    settings: Settings, database: None
) -> None:
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        path = "/v1/realtime/channels/private:room-1"
        refused = await client.get(path, headers=bearer(phone))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "realtime_token_required"
        for name in ("user:ann", "private:room-1"):
            assert (await client.get(f"/v1/realtime/channels/{name}",
                                     headers=bearer(phone))).status_code == 403  # fmt: skip

        other_room = await mint(client, acme.secret_key, ["private:room-2"])
        expired = tokens.mint(
            tokens.Grant(acme.project.id, KeyMode.TEST, ("private:room-1",), int(time.time()) - 1),
            TEST_SECRET_KEY,
        )
        forged = tokens.mint(
            tokens.Grant(acme.project.id, KeyMode.TEST, ("private:*",), int(time.time()) + 600),
            "not the server's secret key at all, but long enough",
        )
        for token, says in ((other_room, "does not cover"), (expired, "expired"),
                            (forged, "signature"), ("bk_rt_garbage.c2ln", "signature"),
                            ("nonsense", "not a subscribe token")):  # fmt: skip
            wrong = await client.get(path, params={"token": token}, headers=bearer(phone))
            assert wrong.status_code == 403, token
            assert wrong.json()["error"]["code"] == "realtime_token_invalid"
            assert says in wrong.json()["error"]["message"]

        token = await mint(client, acme.secret_key, ["private:room-1", "user:ann:*"])
        async with subscribed(client, phone, "private:room-1", params={"token": token}) as room:
            sent = await publish(client, acme.secret_key, "private:room-1", {"hi": "ann"})
            assert await room.next() == Event(sent, "message", {"hi": "ann"})
        # A prefix grant, passed in the header.
        header = {"Brik-Realtime-Token": token}
        async with subscribed(client, phone, "user:ann:inbox", headers=header) as inbox:
            sent = await publish(client, acme.secret_key, "user:ann:inbox", 1)
            assert await inbox.next() == Event(sent, "message", 1)

        # Only servers publish and mint.
        for target, body in ((path + "/messages", {"data": 1}),
                           ("/v1/realtime/tokens", {"channels": ["private:x"]})):  # fmt: skip
            app_try = await client.post(target, headers=bearer(phone), json=body)
            assert app_try.status_code == 403, target
        too_long = await client.post(
            "/v1/realtime/tokens",
            headers=bearer(acme.secret_key),
            json={"channels": ["private:x"], "ttl_seconds": 86401},
        )
        assert too_long.status_code == 400
        assert too_long.json()["error"]["param"] == "ttl_seconds"


async def test_a_reconnecting_client_gets_what_it_missed_from_the_bounded_history(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(realtime_history_messages=3)
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        async with subscribed(client, phone, "feed") as stream:
            first = await publish(client, acme.secret_key, "feed", 1)
            assert (await stream.next()) == Event(first, "message", 1)
        missed = [await publish(client, acme.secret_key, "feed", n) for n in (2, 3)]
        resume = {"Last-Event-ID": first}
        async with subscribed(client, phone, "feed", headers=resume) as stream:
            assert [await stream.next(), await stream.next()] == [
                Event(missed[0], "message", 2), Event(missed[1], "message", 3),
            ]  # fmt: skip
            live = await publish(client, acme.secret_key, "feed", 4)
            assert await stream.next() == Event(live, "message", 4)
            await stream.silence(0.3)  # nothing twice

        # Only the newest 3 are kept: a client away for longer gets those.
        for n in range(5, 10):
            await publish(client, acme.secret_key, "feed", n)
        async with subscribed(client, phone, "feed", params={"last_event_id": first}) as stream:
            assert [(await stream.next() or Event(None, "", None)).data for _ in range(3)] == [
                7, 8, 9,
            ]  # fmt: skip

        # An id from the future (a skewed client, another Redis) loses no live message.
        ahead = {"Last-Event-ID": "9999999999999-0"}
        async with subscribed(client, phone, "feed", headers=ahead) as stream:
            live = await publish(client, acme.secret_key, "feed", 10)
            assert await stream.next() == Event(live, "message", 10)

        bad = await client.get(
            "/v1/realtime/channels/feed", headers={**bearer(phone), "Last-Event-ID": "yesterday"}
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "last_event_id"


async def test_every_activity_update_and_end_is_published_on_its_channel(
    settings: Settings, database: None
) -> None:
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        device = await client.post("/v1/devices", headers=bearer(phone), json={
            "token": "ab" * 32, "platform": "ios", "user_id": "ann",
        })  # fmt: skip
        assert device.status_code == 200, device.text
        registered = await client.post("/v1/activities/register", headers=bearer(phone), json={
            "device_id": device.json()["id"], "token": "cd" * 32,
            "activity_type": "OrderTracking", "attributes": {"order": "A-1"},
            "content_state": {"eta": 30},
        })  # fmt: skip
        assert registered.status_code == 201, registered.text
        activity_id = registered.json()["id"]
        path = f"/v1/activities/{activity_id}"
        async with subscribed(client, phone, f"activity:{activity_id}") as stream:
            updated = await client.post(path + "/update", headers=bearer(acme.secret_key),
                                        json={"content_state": {"eta": 12}})  # fmt: skip
            assert updated.status_code == 200, updated.text
            got = await stream.next()
            assert got is not None
            assert got.event == "activity.updated"
            assert got.data["content_state"] == {"eta": 12}
            assert got.data["status"] == "active"
            assert got.data["timestamp"] == updated.json()["timestamp"]
            ended = await client.post(path + "/end", headers=bearer(acme.secret_key),
                                      json={"content_state": {"eta": 0}})  # fmt: skip
            assert ended.status_code == 200, ended.text
            got = await stream.next()
            assert got is not None
            assert got.event == "activity.ended"
            assert (got.data["content_state"], got.data["status"]) == ({"eta": 0}, "ended")
        # Only Brik publishes there.
        refused = await client.post(
            f"/v1/realtime/channels/activity:{activity_id}/messages",
            headers=bearer(acme.secret_key),
            json={"data": 1},
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "reserved_channel"


async def test_two_api_processes_on_one_redis_both_deliver_what_either_publishes(
    settings: Settings, database: None
) -> None:
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    async with (
        serving(create_app(settings)) as first_url,
        serving(create_app(settings)) as second_url,
        httpx.AsyncClient(base_url=first_url) as first,
        httpx.AsyncClient(base_url=second_url) as second,
        subscribed(first, phone, "news") as on_first,
        subscribed(first, phone, "news") as also_on_first,
        subscribed(second, phone, "news") as on_second,
    ):
        for publisher in (first, second):
            sent = await publish(
                publisher, acme.secret_key, "news", {"via": str(publisher.base_url)}
            )
            for stream in (on_first, also_on_first, on_second):
                got = await stream.next()
                assert got is not None
                assert got.id == sent
        # Two streams of one channel on a process are one Redis subscription.
        metrics = (await first.get("/metrics")).text
        assert "brik_realtime_channels 1.0" in metrics
        assert "brik_realtime_connections 2.0" in metrics


async def test_the_plan_s_connection_limit_holds_under_racing_connects_on_two_processes(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(plan_free_realtime_connections=3, plan_pro_realtime_connections=5)
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    async with (
        serving(create_app(settings)) as first_url,
        serving(create_app(settings)) as second_url,
        httpx.AsyncClient(base_url=first_url) as first,
        httpx.AsyncClient(base_url=second_url) as second,
        contextlib.AsyncExitStack() as stack,
    ):

        async def connect(client: httpx.AsyncClient) -> httpx.Response:
            request = client.build_request("GET", "/v1/realtime/channels/lobby",
                                           headers=bearer(phone))  # fmt: skip
            response = await client.send(request, stream=True)
            stack.push_async_callback(response.aclose)
            return response

        answers = await asyncio.gather(*(connect(c) for c in (first, second) * 5))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] * 3 + [429] * 7
        refused = next(answer for answer in answers if answer.status_code == 429)
        body = json.loads(await refused.aread())
        assert body["error"]["code"] == "too_many_connections"
        assert body["error"]["type"] == "rate_limit_error"
        assert int(refused.headers["Retry-After"]) > 0
        assert "3 per project" in body["error"]["message"]

        # A stream that ends gives its place back, on whichever process held it.
        await next(answer for answer in answers if answer.status_code == 200).aclose()
        for _ in range(100):
            again = await connect(second)
            if again.status_code == 200:
                break
            await again.aclose()
            await asyncio.sleep(0.05)
        assert again.status_code == 200
        assert (await connect(first)).status_code == 429

        # The limit is the plan's.
        acme.organization.plan = Plan.PRO
        await acme.organization.save()
        more = [await connect(first) for _ in range(3)]
        assert [answer.status_code for answer in more] == [200, 200, 429]


async def test_channels_are_per_project_and_per_mode(settings: Settings, database: None) -> None:
    acme, globex = await make_tenant("Acme", roles=()), await make_tenant("Globex", roles=())
    acme_phone, globex_phone = await app_key(acme), await app_key(globex)
    acme_live_phone, acme_live = await app_key(acme, KeyMode.LIVE), await live_secret(acme)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        async with (
            subscribed(client, acme_phone, "shared") as acme_test,
            subscribed(client, acme_live_phone, "shared") as acme_live_stream,
            subscribed(client, globex_phone, "shared") as globex_stream,
        ):
            for key, stream in ((acme.secret_key, acme_test), (acme_live, acme_live_stream),
                                (globex.secret_key, globex_stream)):  # fmt: skip
                sent = await publish(client, key, "shared", {"from": key[:12]})
                got = await stream.next()
                assert got is not None
                assert got.id == sent
            for stream in (acme_test, acme_live_stream, globex_stream):
                await stream.silence(0.3)  # each heard its own publisher only

        # A token opens its own project and mode only.
        token = await mint(client, acme.secret_key, ["private:*"])
        for key in (globex_phone, acme_live_phone):
            foreign = await client.get(
                "/v1/realtime/channels/private:room", params={"token": token}, headers=bearer(key)
            )
            assert foreign.status_code == 403
            assert "another project or mode" in foreign.json()["error"]["message"]


async def test_bad_names_and_bodies_are_refused_with_the_reason(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(realtime_max_message_bytes=1024)
    acme = await make_tenant("Acme", roles=())
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        headers = bearer(acme.secret_key)
        for name in ("-dash-first", "x" * 101, "sp%20ace", "%C3%A9t%C3%A9"):
            for method, path in (("GET", ""), ("POST", "/messages")):
                answer = await client.request(
                    method, f"/v1/realtime/channels/{name}{path}", headers=headers,
                    json={"data": 1} if method == "POST" else None,
                )  # fmt: skip
                assert answer.status_code == 400, (name, method)
                assert answer.json()["error"]["param"] == "channel"
        big = await client.post("/v1/realtime/channels/x/messages", headers=headers,
                                json={"data": "é" * 600})  # fmt: skip
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "message_too_large"
        for body in ({"data": 1, "event": "has space"}, {}, {"data": 1, "extra": 2}):
            refused = await client.post("/v1/realtime/channels/x/messages", headers=headers,
                                        json=body)  # fmt: skip
            assert refused.status_code == 400, body


async def test_redis_going_away_ends_streams_cleanly_refuses_with_503_and_recovers(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path
) -> None:
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    with RestartableRedis(tmp_path / "redis") as redis_server:
        settings = make_settings(redis_url=redis_server.url)
        async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
            async with subscribed(client, phone, "news") as stream:
                sent = await publish(client, acme.secret_key, "news", 1)
                assert (await stream.next()) == Event(sent, "message", 1)
                redis_server.kill()
                assert await stream.next(within=20) is None  # closed, not hung, no error event

            down = await client.post(
                "/v1/realtime/channels/news/messages",
                headers=bearer(acme.secret_key),
                json={"data": 2},
            )
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "dependency_unavailable"
            assert down.json()["error"]["param"] == "redis"
            refused = await client.get("/v1/realtime/channels/news", headers=bearer(phone))
            assert refused.status_code == 503
            assert refused.json()["error"]["param"] == "redis"

            redis_server.start()
            for _ in range(100):  # the API's own client reconnects on its next command
                back = await client.post(
                    "/v1/realtime/channels/news/messages",
                    headers=bearer(acme.secret_key),
                    json={"data": 3},
                )
                if back.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert back.status_code == 200, back.text
            async with subscribed(client, phone, "news") as stream:
                sent = await publish(client, acme.secret_key, "news", 4)
                assert (await stream.next()) == Event(sent, "message", 4)


async def test_an_activity_update_goes_through_while_its_realtime_publish_fails(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    with RestartableRedis(tmp_path / "redis") as redis_server:
        settings = make_settings(redis_url=redis_server.url)
        async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
            device = await client.post("/v1/devices", headers=bearer(phone), json={
                "token": "ab" * 32, "platform": "ios", "user_id": "ann",
            })  # fmt: skip
            registered = await client.post(
                "/v1/activities/register",
                headers=bearer(phone),
                json={
                    "device_id": device.json()["id"],
                    "token": "cd" * 32,
                    "activity_type": "Order",
                    "attributes": {},
                    "content_state": {"eta": 3},
                },
            )
            assert registered.status_code == 201, registered.text
            redis_server.kill()
            updated = await client.post(
                f"/v1/activities/{registered.json()['id']}/update",
                headers=bearer(acme.secret_key),
                json={"content_state": {"eta": 2}},
            )
            assert updated.status_code == 200, updated.text
            assert updated.json()["content_state"] == {"eta": 2}
    assert any("was not published on its realtime channel" in r.getMessage()
               for r in caplog.records)  # fmt: skip


async def test_a_stopping_server_ends_its_realtime_streams_and_gives_their_places_back(
    settings: Settings, database: None
) -> None:
    acme = await make_tenant("Acme", roles=())
    phone = await app_key(acme)
    async with contextlib.AsyncExitStack() as outlives_the_server:
        async with serving(create_app(settings)) as url:
            client = await outlives_the_server.enter_async_context(httpx.AsyncClient(base_url=url))
            stream = await outlives_the_server.enter_async_context(
                subscribed(client, phone, "news")
            )
            stopping = time.monotonic()
        # uvicorn waits for open responses before it stops: the stream was ended, not awaited.
        assert time.monotonic() - stopping < 5
        assert await stream.next(within=5) is None
    redis = Redis.from_url(settings.redis_url)
    try:  # nothing of the stopped process is counted against the project any more
        assert not await redis.exists(f"brik:realtime-connections:{acme.project.id}")
    finally:
        await redis.aclose()


async def test_revoking_a_key_ends_its_open_streams_even_on_a_busy_channel(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(realtime_heartbeat_seconds=0.3)
    acme = await make_tenant("Acme")
    revoked_row, revoked = await issue_api_key(acme.project, name="old app",
                                               kind=KeyKind.PUBLISHABLE, mode=KeyMode.TEST,
                                               pepper=TEST_SECRET_KEY)  # fmt: skip
    kept = await app_key(acme)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        async with (
            subscribed(client, revoked, "scores") as doomed,
            subscribed(client, kept, "scores") as fine,
        ):
            sent = await publish(client, acme.secret_key, "scores", {"n": 0})
            assert (await doomed.next()).id == sent  # type: ignore[union-attr]
            assert (await fine.next()).id == sent  # type: ignore[union-attr]
            gone = await client.delete(
                f"/v1/projects/{acme.project.id}/api_keys/{revoked_row.id}",
                headers=acme.owner.headers,
            )
            assert gone.status_code == 200, gone.text
            # Messages keep coming faster than a heartbeat: the key is checked all the same.
            ended_after = None
            for n in range(1, 40):
                await publish(client, acme.secret_key, "scores", {"n": n})
                if ended_after is None and await _ended(doomed):
                    ended_after = n
                assert await fine.next() is not None
                await asyncio.sleep(0.05)
            assert ended_after is not None, "the revoked key's stream went on"
        refused = await client.get("/v1/realtime/channels/scores", headers=bearer(revoked))
        assert refused.status_code == 401


async def _ended(stream: Stream) -> bool:
    """Whether the server has closed ``stream`` (its messages read meanwhile are dropped)."""
    while True:
        try:
            event = await stream.next(within=0.01)
        except TimeoutError:
            return False
        if event is None:
            return True
