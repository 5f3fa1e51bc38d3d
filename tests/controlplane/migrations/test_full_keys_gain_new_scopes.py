"""After an upgrade, a secret key that held every scope keeps working for what came since
(analytics, webhooks, realtime); a key narrowed on purpose gains nothing."""

from __future__ import annotations

from tortoise.context import TortoiseContext
from tortoise.migrations.api import migrate as tortoise_migrate

from controlplane import db
from controlplane.auth.api_keys import issue_api_key
from controlplane.models import ApiKey, KeyKind, KeyMode, Organization, Project
from tests.support.databases import (
    DEFAULT_TEST_DATABASE_URL,
    configured_server_url,
    create_postgres_database,
    drop_postgres_database,
)

FULL_BEFORE = sorted({
    "devices:read", "devices:write", "pushes:read", "pushes:write", "credentials:read",
    "credentials:write", "usage:read", "state:read", "state:write",
})  # fmt: skip
NEW = {"analytics:read", "analytics:write", "webhooks:read", "webhooks:write", "realtime:write"}


async def _upgrade_with_keys(url: str) -> dict[str, list[str]]:
    """Migrate to just before the change, make keys as they were then, finish migrating."""
    async with TortoiseContext():
        await tortoise_migrate(config=db.tortoise_config(url), target="brik.0014_webhooks")
    async with TortoiseContext() as ctx:
        await ctx.init(config=db.tortoise_config(url))
        organization = await Organization.create(name="Upgraded Co")
        project = await Project.create(organization=organization, name="App")
        made = {}
        for name, kind, scopes in (
            ("full", KeyKind.SECRET, FULL_BEFORE),
            ("narrow", KeyKind.SECRET, ["pushes:write"]),
            ("publishable", KeyKind.PUBLISHABLE, ["devices:write", "state:read"]),
        ):
            key, _ = await issue_api_key(project, name=name, kind=kind, mode=KeyMode.LIVE,
                                         pepper="p" * 40, scopes=scopes)  # fmt: skip
            made[name] = key.id
    await db.migrate(url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=db.tortoise_config(url))
        return {name: sorted((await ApiKey.get(id=key_id)).scopes) for name, key_id in made.items()}


def _check(scopes: dict[str, list[str]]) -> None:
    assert set(scopes["full"]) == set(FULL_BEFORE) | NEW
    assert scopes["narrow"] == ["pushes:write"]
    assert scopes["publishable"] == ["devices:write", "state:read"]


async def test_an_upgraded_postgres_database() -> None:
    # Not marked `database`: it makes its own PostgreSQL database, in the SQLite run too (which
    # runs the same statements on an empty table: tests/controlplane/test_db.py).
    server = configured_server_url()
    if server.startswith("sqlite"):
        server = DEFAULT_TEST_DATABASE_URL
    url = await create_postgres_database(server)
    try:
        _check(await _upgrade_with_keys(url))
    finally:
        await drop_postgres_database(server, url)
