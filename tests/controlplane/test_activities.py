"""Changes of a Live Activity against what else writes the same rows: no deadlock, no 500.

An update or end of an activity (``controlplane/activities.py``) supersedes the deliveries of
its older pushes still queued, inside the request's transaction. Whatever else wants those rows
at the same moment — a worker claiming the older push, the tenant deleting a device the activity
is on, the project being deleted — must wait its turn, not meet the update in a deadlock
(PostgreSQL kills one side: a 500 for the API, a failed job for the worker).

Each test forces the dangerous interleaving rather than hoping for it: a connection of the
test's own holds the organization's usage row, so the update stops half way — its older
delivery superseded, the quota not yet given back — while the other side starts and waits;
then the row is let go.

Not marked ``database``: it holds PostgreSQL row locks, which the SQLite dialect run (one
writer at a time) has no counterpart for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest

from controlplane.app import create_app
from controlplane.models import Activity, ActivityToken, Delivery, DeliveryStatus, Device, Project
from controlplane.settings import Settings
from tests.controlplane.api.test_activities import app_started, bearer, iphone, publishable
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_tenant


class Pause:
    """A connection of the test's own, holding every usage row until :meth:`release`."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self._transaction = connection.transaction()

    async def hold(self) -> None:
        await self._transaction.start()
        await self.connection.execute("SELECT 1 FROM usage_periods FOR UPDATE")

    async def waiting(self, count: int) -> None:
        """Until ``count`` other sessions wait for a lock (a safety deadline, not a timing)."""
        deadline = time.monotonic() + 30
        while True:
            # Within a transaction PostgreSQL answers from a snapshot of the statistics.
            await self.connection.execute("SELECT pg_stat_clear_snapshot()")
            waiting = await self.connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"{waiting} sessions waiting, not {count}"
            await asyncio.sleep(0.02)

    async def release(self) -> None:
        await self._transaction.rollback()


@contextlib.asynccontextmanager
async def pause(database_url: str) -> AsyncIterator[Pause]:
    connection = await asyncpg.connect("postgresql://" + database_url.split("://", 1)[1])
    try:
        paused = Pause(connection)
        await paused.hold()
        yield paused
    finally:
        await connection.close()


async def an_updated_activity(client: httpx.AsyncClient) -> tuple[str, str, str, str, str]:
    """A tenant with an app-registered activity updated once (that update still queued):
    (secret key, owner token, device id, activity id, the queued push's id)."""
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    phone = await iphone(client, app_key)
    activity = await app_started(client, app_key, phone)
    first = await client.post(f"/v1/activities/{activity['id']}/update",
                              headers=bearer(acme.secret_key),
                              json={"content_state": {"eta": 20}})  # fmt: skip
    assert first.status_code == 200, first.text
    return acme.secret_key, acme.owner.token, phone, activity["id"], first.json()["push_id"]


async def test_deleting_a_device_while_its_activity_is_updated_answers_both(
    client: httpx.AsyncClient, database_url: str, database: None
) -> None:
    secret, _, phone, activity_id, older = await an_updated_activity(client)
    async with pause(database_url) as paused:
        update = asyncio.create_task(client.post(
            f"/v1/activities/{activity_id}/update", headers=bearer(secret),
            json={"content_state": {"eta": 10}},
        ))  # fmt: skip
        await paused.waiting(1)
        delete = asyncio.create_task(client.delete(f"/v1/devices/{phone}", headers=bearer(secret)))
        await paused.waiting(2)
        await paused.release()
        updated, deleted = await update, await delete
    assert updated.status_code == 200, updated.text
    assert deleted.status_code == 200, deleted.text
    assert not await Device.exists(id=phone)
    assert not await ActivityToken.exists(activity_id=activity_id)
    assert (await Activity.get(id=activity_id)).content_state == {"eta": 10}
    assert await Delivery.filter(push_id=older).values_list("status", flat=True) == [
        DeliveryStatus.SUPERSEDED
    ]


async def test_deleting_the_project_while_an_activity_is_updated_answers_both(
    client: httpx.AsyncClient, database_url: str, database: None
) -> None:
    secret, owner, _, activity_id, _ = await an_updated_activity(client)
    project = await Project.get(activities__id=activity_id)
    async with pause(database_url) as paused:
        update = asyncio.create_task(client.post(
            f"/v1/activities/{activity_id}/update", headers=bearer(secret),
            json={"content_state": {"eta": 10}},
        ))  # fmt: skip
        await paused.waiting(1)
        delete = asyncio.create_task(client.delete(
            f"/v1/projects/{project.id}", headers={"Authorization": f"Bearer {owner}"}
        ))  # fmt: skip
        await paused.waiting(2)
        await paused.release()
        updated, deleted = await update, await delete
    assert updated.status_code == 200, updated.text  # accepted before the keys were revoked
    assert deleted.status_code == 200, deleted.text
    assert not await Project.exists(id=project.id)
    assert not await Activity.exists(id=activity_id)


async def test_an_update_racing_a_worker_s_claim_of_the_older_one_never_deadlocks(
    make_settings: Callable[..., Settings], database_url: str, database: None,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    settings = make_settings()
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        secret, _, _, activity_id, older = await an_updated_activity(client)
        with caplog.at_level(logging.ERROR, logger="arq"):
            async with pause(database_url) as paused:
                update = asyncio.create_task(client.post(
                    f"/v1/activities/{activity_id}/update", headers=bearer(secret),
                    json={"content_state": {"eta": 10}},
                ))  # fmt: skip
                await paused.waiting(1)
                async with running_worker(settings):  # takes the older push's job
                    await paused.waiting(2)
                    await paused.release()
                    updated = await update
                    newer = updated.json()["push_id"]
                    deadline = time.monotonic() + 30
                    while await Delivery.filter(push_id=newer, status="queued").exists():
                        assert time.monotonic() < deadline, "the newer update was never sent"
                        await asyncio.sleep(0.05)
    assert updated.status_code == 200, updated.text
    failed = [r.getMessage() for r in caplog.records if r.name.startswith("arq")]
    assert failed == []  # no job died in a deadlock
    assert await Delivery.filter(push_id=older).values_list("status", flat=True) == [
        DeliveryStatus.SUPERSEDED
    ]
    assert await Delivery.filter(push_id=newer).values_list("status", flat=True) == [
        DeliveryStatus.DELIVERED
    ]
