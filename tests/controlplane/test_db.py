from __future__ import annotations

from pathlib import Path

import pytest
from tortoise import Tortoise
from tortoise.connection import get_connection

from controlplane import db
from tests.support.databases import (
    DEFAULT_TEST_DATABASE_URL,
    configured_server_url,
    create_postgres_database,
    drop_postgres_database,
)


@pytest.mark.database
async def test_committed_migrations_match_the_models(database_url: str) -> None:
    # makemigrations would write nothing: no model change is missing a migration.
    assert await db.pending_model_changes(database_url) == []


@pytest.mark.database
async def test_migrated_database_has_every_model_table(database: None) -> None:
    assert Tortoise.apps is not None
    expected = {m._meta.db_table for app in Tortoise.apps.values() for m in app.values()}
    connection = get_connection("default")
    if connection.capabilities.dialect == "postgres":
        _, rows = await connection.execute_query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        tables = {row["tablename"] for row in rows}
    else:
        _, rows = await connection.execute_query(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
        tables = {row["name"] for row in rows}
    assert expected <= tables


@pytest.mark.database
async def test_migrate_is_idempotent(database_url: str) -> None:
    await db.migrate(database_url)  # second time: nothing to apply, no error
    assert await db.pending_model_changes(database_url) == []


# The two below make a database of their own, each dialect's whatever the run's is: not
# marked `database`, so the SQLite run does not repeat them.
async def test_a_fresh_sqlite_file_migrates(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'fresh.sqlite3'}"
    await db.migrate(url)
    assert (tmp_path / "fresh.sqlite3").stat().st_size > 0


def test_postgresql_spelling_is_accepted() -> None:
    assert db.normalise_database_url("postgresql://u@h:5432/d") == "postgres://u@h:5432/d"
    assert db.normalise_database_url("sqlite://x.db") == "sqlite://x.db"


async def test_a_fresh_postgres_database_migrates() -> None:
    # PostgreSQL even in the SQLite run: the migrations must serve both dialects.
    server = configured_server_url()
    if server.startswith("sqlite"):
        server = DEFAULT_TEST_DATABASE_URL
    url = await create_postgres_database(server)
    try:
        await db.migrate(url)
        assert await db.pending_model_changes(url) == []
    finally:
        await drop_postgres_database(server, url)
