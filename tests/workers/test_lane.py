"""The lane: small pushes due now are taken many at a time, and none is lost or sent twice when
a worker dies, fails or stops with entries in hand."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from tortoise import connections
from tortoise.transactions import in_transaction

from controlplane import project_deletion
from controlplane.app import create_app
from controlplane.core.connections import queue_client
from controlplane.core.queue import LANE_GROUP, lane_stream
from controlplane.crypto import KeyRing
from controlplane.models import (
    Delivery,
    DeliveryStatus,
    KeyMode,
    ProviderCredential,
    Push,
    PushStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from controlplane.settings import Settings
from tests.support.apple import SigningKey, apns_credential
from tests.support.queue import lane_entries
from tests.support.redis_server import RestartableRedis
from tests.support.servers import running_worker, serving, worker_context
from tests.support.tenants import live_key_headers, make_tenant
from workers.fakes.apns import FakeAPNs
from workers.lane import ALONE_FAILING_IS_AN_OUTAGE, Lane
from workers.tasks.deliver import deliver_pushes

pytestmark = pytest.mark.database

PUSHES = 20


@pytest.fixture
def live_settings(make_settings: Callable[..., Settings], apns_fake: FakeAPNs) -> Settings:
    return make_settings(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
    )  # fmt: skip


@pytest.fixture
async def small_pushes(
    live_settings: Settings, signing_key: SigningKey, database: None
) -> list[str]:
    """PUSHES live pushes, each to one iOS device of its own, accepted with no worker running."""
    acme = await make_tenant("Acme")
    auth = await live_key_headers(acme)
    pushes = []
    async with serving(create_app(live_settings)) as url, httpx.AsyncClient(base_url=url) as api:
        await api.put("/v1/credentials/apns", json=apns_credential(signing_key), headers=auth)
        for n in range(PUSHES):
            token = {"token": f"{n + 1:064x}", "platform": "ios"}
            device = await api.post("/v1/devices", json=token, headers=auth)
            accepted = await api.post("/v1/pushes", json={
                "kind": "alert", "alert": {"title": f"Order {n} shipped"},
                "to": {"device_ids": [device.json()["id"]]}}, headers=auth)  # fmt: skip
            assert accepted.status_code == 202, accepted.text
            pushes.append(accepted.json()["id"])
    return pushes


@pytest.fixture
async def redis(live_settings: Settings) -> AsyncIterator[Redis]:
    client = queue_client(live_settings.redis_url, live_settings.queue_name)
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.fixture
async def worker_ctx(live_settings: Settings) -> AsyncIterator[dict[str, Any]]:
    async with worker_context(live_settings) as ctx:
        yield ctx


async def all_completed(push_ids: list[str]) -> None:
    deadline = time.monotonic() + 60
    while await Push.filter(id__in=push_ids, status=PushStatus.COMPLETED).count() < len(push_ids):
        assert time.monotonic() < deadline, "the pushes never all completed"
        await asyncio.sleep(0.05)


async def lane_is_drained(redis: Redis, queue_name: str) -> None:
    """Nothing left in the lane and nothing held unacknowledged by any worker (a run
    acknowledges its entries just after completing their pushes: give it a moment)."""
    deadline = time.monotonic() + 10
    while await lane_entries(redis, queue_name):
        assert time.monotonic() < deadline, "entries were left in the lane"
        await asyncio.sleep(0.05)
    pending = await redis.xpending(lane_stream(queue_name), LANE_GROUP)
    assert pending["pending"] == 0


async def run_until_drained(lane: Lane, redis: Redis, pushes: list[str], queue_name: str) -> None:
    """Run ``lane`` until every push is completed and the lane drained, then stop it."""
    lane.start()
    try:
        await all_completed(pushes)
        await lane_is_drained(redis, queue_name)
    finally:
        await lane.stop()


def each_device_once(apns_fake: FakeAPNs) -> None:
    per_device = apns_fake.deliveries_per_device()
    assert len(per_device) == PUSHES
    assert set(per_device.values()) == {1}


async def test_a_worker_delivers_small_pushes_from_the_lane_once_each(
    small_pushes: list[str], live_settings: Settings, redis: Redis, apns_fake: FakeAPNs
) -> None:
    assert len(await lane_entries(redis, live_settings.queue_name)) == PUSHES  # no arq job
    assert await redis.zcard(live_settings.queue_name) == 0
    async with running_worker(live_settings):
        await all_completed(small_pushes)
        await lane_is_drained(redis, live_settings.queue_name)
    each_device_once(apns_fake)
    titles = {push.payload["aps"]["alert"]["title"] for push in apns_fake.received}
    assert titles == {f"Order {n} shipped" for n in range(PUSHES)}


async def test_pushes_of_one_project_read_together_tell_its_endpoint_once_each(
    small_pushes: list[str], worker_ctx: dict[str, Any], live_settings: Settings,
) -> None:  # fmt: skip
    keyring: KeyRing = worker_ctx["keyring"]
    project_id = (await Push.get(id=small_pushes[0])).project_id  # type: ignore[attr-defined]
    for events in (["push.completed"], ["device.invalidated"]):  # the second wants none of it
        await WebhookEndpoint.create(
            project_id=project_id, mode=KeyMode.LIVE, url_display="https://acme.example/hooks",
            url_encrypted=keyring.encrypt(b"https://acme.example/hooks"), events=events,
            secret_encrypted=keyring.encrypt(b"whsec_x"),
        )  # fmt: skip
    entries = await lane_entries(worker_ctx["redis"], live_settings.queue_name)
    assert await deliver_pushes(worker_ctx, entries) == {"delivered": PUSHES}
    told = await WebhookEvent.filter(project_id=project_id, type="push.completed").values_list(
        "id", flat=True
    )
    assert len(told) == PUSHES  # one event per push…
    assert await WebhookDelivery.filter(event_id__in=list(told)).count() == PUSHES  # …sent once
    # …each about its own push (completed together, counted together).
    events = await WebhookEvent.filter(id__in=list(told)).values_list("ordering_key", "data")
    assert sorted(key for key, _ in events) == sorted(small_pushes)
    for key, data in events:
        assert (data["id"], data["deliveries"], data["status"]) == (key, {"delivered": 1},
                                                                     "completed")  # fmt: skip


@pytest.mark.faults
async def test_entries_a_dead_worker_held_and_a_failed_run_left_are_taken_over(
    small_pushes: list[str],
    live_settings: Settings,
    redis: Redis,
    worker_ctx: dict[str, Any],
    apns_fake: FakeAPNs,
) -> None:
    stream = lane_stream(live_settings.queue_name)
    await redis.xgroup_create(stream, LANE_GROUP, id="0")
    # A worker took the first half and was killed before acknowledging any of it.
    taken = await redis.xreadgroup(LANE_GROUP, "dead-worker", {stream: ">"}, count=PUSHES // 2)
    assert len(taken[0][1]) == PUSHES // 2
    failures = 0

    async def deliver_failing_once(work: Sequence[tuple[str, Sequence[str]]]) -> object:
        nonlocal failures
        if failures == 0:  # the database went away mid-run, say
            failures += 1
            raise ConnectionError("database unreachable")
        return await deliver_pushes(worker_ctx, work)

    lane = Lane(
        redis, live_settings.queue_name, "live-worker", deliver_failing_once,
        take_over_idle_seconds=0.3, take_over_every_seconds=0.2,
    )  # fmt: skip
    await run_until_drained(lane, redis, small_pushes, live_settings.queue_name)
    assert failures == 1
    each_device_once(apns_fake)


async def test_a_stopping_worker_hands_back_what_it_had_not_delivered(
    small_pushes: list[str], live_settings: Settings, redis: Redis, apns_fake: FakeAPNs
) -> None:
    started = asyncio.Event()

    async def deliver_slowly(work: Sequence[tuple[str, Sequence[str]]]) -> object:
        started.set()
        await asyncio.Event().wait()  # still at it when told to stop
        return None

    lane = Lane(redis, live_settings.queue_name, "stopping-worker", deliver_slowly,
                take_over_idle_seconds=3600)  # fmt: skip
    lane.start()
    await asyncio.wait_for(started.wait(), 10)
    await lane.stop()
    # Back in the lane as new entries, held by nobody: the next worker takes them at once,
    # not after an hour's wait for the stopped one's entries to count as abandoned.
    back = await lane_entries(redis, live_settings.queue_name)
    assert sorted(push for push, _ in back) == sorted(small_pushes)
    pending = await redis.xpending(lane_stream(live_settings.queue_name), LANE_GROUP)
    assert pending["pending"] == 0
    consumers = await redis.xinfo_consumers(lane_stream(live_settings.queue_name), LANE_GROUP)
    assert [c["name"] for c in consumers] == []  # the stopped worker left the group
    async with running_worker(live_settings):
        await all_completed(small_pushes)
        await lane_is_drained(redis, live_settings.queue_name)
    each_device_once(apns_fake)


async def test_many_pushes_go_out_together_in_one_run_and_again_is_nothing(
    small_pushes: list[str], worker_ctx: dict[str, Any], live_settings: Settings,
    apns_fake: FakeAPNs,
) -> None:  # fmt: skip
    entries = await lane_entries(worker_ctx["redis"], live_settings.queue_name)
    counts = await deliver_pushes(worker_ctx, entries)
    assert counts == {"delivered": PUSHES}
    await all_completed(small_pushes)
    each_device_once(apns_fake)
    assert await deliver_pushes(worker_ctx, entries) == {}  # read twice: nothing sent twice


@pytest.mark.faults
async def test_a_worker_reading_the_lane_rides_out_redis_restarting_empty(
    live_settings: Settings, signing_key: SigningKey, apns_fake: FakeAPNs, tmp_path: Path,
    database: None,
) -> None:  # fmt: skip
    with RestartableRedis(tmp_path / "redis") as server:
        settings = live_settings.model_copy(update={"redis_url": server.url})
        acme = await make_tenant("Acme")
        auth = await live_key_headers(acme)
        app = create_app(settings)
        async with serving(app) as url, httpx.AsyncClient(base_url=url) as api:
            await api.put("/v1/credentials/apns", json=apns_credential(signing_key), headers=auth)
            devices = []
            for n in range(PUSHES):
                token = {"token": f"{n + 1:064x}", "platform": "ios"}
                devices.append((await api.post("/v1/devices", json=token, headers=auth)).json())

            async def send(device: dict[str, Any]) -> str:
                body = {"kind": "alert", "alert": {"title": "Shipped"},
                        "to": {"device_ids": [device["id"]]}}  # fmt: skip
                accepted = await api.post("/v1/pushes", json=body, headers=auth)
                assert accepted.status_code == 202, accepted.text
                return str(accepted.json()["id"])

            async with running_worker(settings):
                first = [await send(device) for device in devices[: PUSHES // 2]]
                await all_completed(first)
                # Redis goes away under the worker's blocking read and comes back empty: no
                # stream, no consumer group. The worker makes them again and carries on.
                server.kill()
                await asyncio.sleep(1)
                server.start()
                second = [await send(device) for device in devices[PUSHES // 2 :]]
                await all_completed(second)
    each_device_once(apns_fake)


async def bravo_push_with_unopenable_credential(settings: Settings, signing_key: SigningKey) -> str:
    """Another tenant's push, whose APNs credential was encrypted under a key since dropped."""
    bravo = await make_tenant("Bravo")
    auth = await live_key_headers(bravo)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as api:
        await api.put("/v1/credentials/apns", json=apns_credential(signing_key), headers=auth)
        device = await api.post("/v1/devices", json={"token": f"{999:064x}", "platform": "ios"},
                                headers=auth)  # fmt: skip
        accepted = await api.post("/v1/pushes", json={
            "kind": "alert", "alert": {"title": "Bravo"},
            "to": {"device_ids": [device.json()["id"]]}}, headers=auth)  # fmt: skip
        assert accepted.status_code == 202, accepted.text
    dropped_key = KeyRing([Fernet.generate_key().decode()])
    await ProviderCredential.filter(project_id=bravo.project.id).update(
        secret_encrypted=dropped_key.encrypt(b"{}")
    )
    return str(accepted.json()["id"])


async def test_one_tenants_broken_credential_holds_back_no_other_push_of_the_read(
    small_pushes: list[str], live_settings: Settings, worker_ctx: dict[str, Any],
    signing_key: SigningKey, apns_fake: FakeAPNs,
) -> None:  # fmt: skip
    bravo = await bravo_push_with_unopenable_credential(live_settings, signing_key)
    entries = await lane_entries(worker_ctx["redis"], live_settings.queue_name)
    assert len(entries) == PUSHES + 1  # one read of the lane takes them all
    counts = await deliver_pushes(worker_ctx, entries)  # no exception: Bravo's is Bravo's
    assert counts == {"delivered": PUSHES, "failed": 1}
    each_device_once(apns_fake)
    assert await Push.filter(id__in=small_pushes, status=PushStatus.COMPLETED).count() == PUSHES
    (refused,) = await Delivery.filter(push_id=bravo)
    assert refused.status is DeliveryStatus.FAILED
    assert "cannot be decrypted" in str(refused.reason)
    assert (await Push.get(id=bravo)).status is PushStatus.COMPLETED


async def test_a_push_whose_delivery_always_fails_holds_back_no_other_of_its_read(
    small_pushes: list[str], live_settings: Settings, redis: Redis,
    worker_ctx: dict[str, Any], apns_fake: FakeAPNs,
) -> None:  # fmt: skip
    stuck = small_pushes[PUSHES // 2]

    async def deliver_failing_for_one(work: Sequence[tuple[str, Sequence[str]]]) -> object:
        if any(push_id == stuck for push_id, _ in work):
            raise ValueError("this push cannot be delivered")  # a bug met by one push, say
        return await deliver_pushes(worker_ctx, work)

    lane = Lane(
        redis, live_settings.queue_name, "live-worker", deliver_failing_for_one,
        take_over_idle_seconds=600,  # no take-over: the others go out at once or not at all
    )  # fmt: skip
    lane.start()
    try:
        await all_completed([push_id for push_id in small_pushes if push_id != stuck])
        deadline = time.monotonic() + 10
        while len(await lane_entries(redis, live_settings.queue_name)) > 1:
            assert time.monotonic() < deadline, "the delivered pushes were not acknowledged"
            await asyncio.sleep(0.05)
    finally:
        await lane.stop()
    # All twenty were one read; the stuck push alone is left, pending, for a later take-over.
    assert [push_id for push_id, _ in await lane_entries(redis, live_settings.queue_name)] == [
        stuck
    ]
    pending = await redis.xpending(lane_stream(live_settings.queue_name), LANE_GROUP)
    assert pending["pending"] == 1
    assert await Delivery.filter(push_id=stuck, status=DeliveryStatus.QUEUED).count() == 1
    per_device = apns_fake.deliveries_per_device()
    assert len(per_device) == PUSHES - 1
    assert set(per_device.values()) == {1}


async def test_a_read_failing_together_whose_pushes_each_go_out_alone_is_a_warning(
    small_pushes: list[str], live_settings: Settings, redis: Redis,
    worker_ctx: dict[str, Any], apns_fake: FakeAPNs, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    async def deliver_failing_together(work: Sequence[tuple[str, Sequence[str]]]) -> object:
        if len(work) > 1:
            raise ValueError("a statement too large for this database, say")
        return await deliver_pushes(worker_ctx, work)

    lane = Lane(redis, live_settings.queue_name, "live-worker", deliver_failing_together,
                take_over_idle_seconds=600)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="brik.worker"):
        await run_until_drained(lane, redis, small_pushes, live_settings.queue_name)
    each_device_once(apns_fake)
    told = [record for record in caplog.records if "together failed" in record.getMessage()]
    assert told, "the failed read was not logged"
    # Nothing is left waiting: an operator is told, not paged.
    assert {record.levelno for record in told} == {logging.WARNING}
    assert all("and 0 are left" in record.getMessage() for record in told)


@pytest.mark.faults
async def test_an_outage_failing_every_push_is_not_tried_push_by_push_and_is_ridden_out(
    small_pushes: list[str], live_settings: Settings, redis: Redis,
    worker_ctx: dict[str, Any], apns_fake: FakeAPNs,
) -> None:  # fmt: skip
    down = True
    calls = 0

    async def deliver_while_the_database_is_down(
        work: Sequence[tuple[str, Sequence[str]]],
    ) -> object:
        nonlocal calls
        calls += 1
        if down:
            raise ConnectionError("database unreachable")
        return await deliver_pushes(worker_ctx, work)

    lane = Lane(
        redis, live_settings.queue_name, "live-worker", deliver_while_the_database_is_down,
        take_over_idle_seconds=3.0, take_over_every_seconds=0.2,
    )  # fmt: skip
    lane.start()
    try:
        deadline = time.monotonic() + 10
        while calls < 1 + ALONE_FAILING_IS_AN_OUTAGE:
            assert time.monotonic() < deadline, "the lane never tried"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # less than the take-over's idle time
        # The read of twenty, then three alone; not twenty time-outs in a row.
        assert calls == 1 + ALONE_FAILING_IS_AN_OUTAGE
        down = False  # the database is back: the entries are taken over and delivered
        await all_completed(small_pushes)
        await lane_is_drained(redis, live_settings.queue_name)
    finally:
        await lane.stop()
    each_device_once(apns_fake)


@pytest.mark.postgres_only
async def test_a_claim_of_many_pushes_and_a_project_deletion_never_deadlock(
    live_settings: Settings, worker_ctx: dict[str, Any], database: None,
) -> None:  # fmt: skip
    """A claim locks the pushes of a read in id order; a project's deletion cancels its open
    pushes in one UPDATE, which on its own would lock them in heap order (push ids are random):
    with a third session holding the lowest push, each would wait for the other. Both lock in
    id order (controlplane/push_locks.py), so both go through."""
    acme = await make_tenant("Acme")
    auth = {"Authorization": f"Bearer {acme.secret_key}"}  # test mode: the sandbox provider
    conn = connections.get("default")

    async def heap_order() -> list[str]:
        rows = await conn.execute_query_dict(
            "SELECT id FROM pushes WHERE project_id = $1 ORDER BY ctid", [acme.project.id]
        )
        return [row["id"] for row in rows]

    async with serving(create_app(live_settings)) as url, httpx.AsyncClient(base_url=url) as api:
        device = await api.post("/v1/devices", json={"token": f"{7:064x}", "platform": "ios"},
                                headers=auth)  # fmt: skip
        assert device.status_code in (200, 201), device.text
        while True:  # until the lowest id is not the first in heap order
            accepted = await api.post("/v1/pushes", json={
                "kind": "alert", "alert": {"title": "Hi"},
                "to": {"device_ids": [device.json()["id"]]}}, headers=auth)  # fmt: skip
            assert accepted.status_code == 202, accepted.text
            order = await heap_order()
            if len(order) >= 2 and min(order) != order[0]:
                break
    lowest = min(order)
    work = await lane_entries(worker_ctx["redis"], live_settings.queue_name)
    plan = await conn.execute_query_dict(
        "EXPLAIN UPDATE pushes SET status = 'canceled' WHERE id = ANY($1) AND status = ANY($2)",
        [order, ["queued", "sending", "scheduled"]])  # fmt: skip
    assert "Update on pushes" in plan[0]["QUERY PLAN"]

    async def waiting_on_locks() -> int:
        rows = await conn.execute_query_dict(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        return int(rows[0]["n"])

    async def until_waiting_on_locks(sessions: int) -> None:
        deadline = time.monotonic() + 30
        while await waiting_on_locks() < sessions:
            assert time.monotonic() < deadline, f"{sessions} sessions never waited on a lock"
            await asyncio.sleep(0.01)

    release = asyncio.Event()
    held = asyncio.Event()

    async def blocker() -> None:  # any short holder of the lowest push: a claim, a completion
        async with in_transaction() as tx:
            await tx.execute_query(
                "SELECT id FROM pushes WHERE id = $1 FOR NO KEY UPDATE", [lowest]
            )
            held.set()
            await release.wait()

    async def delete_project() -> None:
        async with in_transaction():
            await project_deletion.retire(acme.project.id)

    blocking = asyncio.create_task(blocker())
    await held.wait()
    claim = asyncio.create_task(deliver_pushes(worker_ctx, work))
    await until_waiting_on_locks(1)
    deletion = asyncio.create_task(delete_project())
    await until_waiting_on_locks(2)
    release.set()
    await blocking
    results = await asyncio.gather(claim, deletion, return_exceptions=True)
    assert not any(isinstance(result, BaseException) for result in results), results
    # Each push either went out before the deletion canceled it, or never went.
    statuses = await Push.filter(project_id=acme.project.id).values_list("status", flat=True)
    assert set(statuses) <= {PushStatus.COMPLETED, PushStatus.CANCELED}
