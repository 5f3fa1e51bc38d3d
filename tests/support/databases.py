"""Real test databases: a fresh PostgreSQL database per test session, or a SQLite file."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise
from tortoise.connection import get_connection

DEFAULT_TEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _asyncpg_dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def configured_server_url() -> str:
    """``BRIK_TEST_DATABASE_URL`` or the local PostgreSQL server."""
    return os.environ.get("BRIK_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


async def create_postgres_database(server_url: str) -> str:
    """Create ``brik_test_<random>`` on the server named by ``server_url``; returns its URL."""
    name = f"brik_test_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        # A test database outlives no crash: commits need not wait for the WAL to reach disk.
        await connection.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await connection.close()
    return _with_database(server_url, name)


async def drop_postgres_database(server_url: str, database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def empty_all_tables() -> None:
    """Delete every row the tests wrote, keeping the schema and the migration history."""
    assert Tortoise.apps is not None
    tables = sorted(
        model._meta.db_table for app in Tortoise.apps.values() for model in app.values()
    )
    connection = get_connection("default")
    await connection.execute_script(
        _emptying_script(tables, postgres=connection.capabilities.dialect == "postgres")
    )


def _emptying_script(tables: list[str], *, postgres: bool) -> str:
    """Every table emptied in one transaction (one commit, one sync to disk): DELETE, not
    TRUNCATE — a test leaves a handful of rows, and TRUNCATE of every table cost 0.2 s per test
    on PostgreSQL (new files for each table and its indexes), DELETE 2 ms. On PostgreSQL with
    the foreign-key triggers off (the test role is a superuser); SQLite checks foreign keys at
    the commit."""
    deletes = "".join(f'DELETE FROM "{table}";' for table in tables)
    if postgres:
        return "BEGIN; SET LOCAL session_replication_role = replica;" + deletes + "COMMIT;"
    return "BEGIN; PRAGMA defer_foreign_keys = ON;" + deletes + "COMMIT;"


@asynccontextmanager
async def commits_failing(table: str, column: str, value: str) -> AsyncIterator[None]:
    """While inside, a transaction that writes ``value`` into ``table.column`` fails when it
    commits — not at the write, so the code that wrote it carries on and returns — as a
    deferred constraint (or a lost connection) makes a commit fail.

    PostgreSQL only (mark the test ``postgres_only``): a deferred constraint trigger, which
    SQLite has no equivalent of.
    """
    connection = get_connection("default")
    assert connection.capabilities.dialect == "postgres", "a deferred trigger needs PostgreSQL"
    assert "'" not in value
    name = f"brik_test_fails_at_commit_{secrets.token_hex(4)}"
    await connection.execute_script(f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the commit fails (a test made it): %', TG_TABLE_NAME; END $$;
        CREATE CONSTRAINT TRIGGER {name} AFTER INSERT OR UPDATE ON "{table}"
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN (NEW."{column}" = '{value}') EXECUTE FUNCTION {name}();
    """)  # fmt: skip
    try:
        yield
    finally:
        await connection.execute_script(
            f'DROP TRIGGER {name} ON "{table}"; DROP FUNCTION {name}();'
        )


def dump_database(database_url: str) -> str:
    """Everything the database holds, as text: ``pg_dump`` for PostgreSQL, iterdump for SQLite."""
    import sqlite3
    import subprocess

    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.split("://", 1)[1])
        try:
            return "\n".join(connection.iterdump())
        finally:
            connection.close()
    return subprocess.run(
        ["pg_dump", "--data-only", "--no-owner", _asyncpg_dsn(database_url)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def empty_all_tables_sync(database_url: str) -> None:
    """:func:`empty_all_tables` for synchronous tests, on a connection of its own."""
    import asyncio
    import sqlite3

    from controlplane.db import MODELS_MODULE

    models = __import__(MODELS_MODULE, fromlist=["__all__"])
    tables = sorted(
        {
            getattr(models, name)._meta.db_table
            for name in models.__all__
            if hasattr(getattr(models, name), "_meta")
        }
    )
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.split("://", 1)[1])
        try:
            for table in tables:
                connection.execute(f'DELETE FROM "{table}"')
            connection.commit()
        finally:
            connection.close()
        return

    async def truncate() -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(database_url))
        try:
            await connection.execute(_emptying_script(tables, postgres=True))
        finally:
            await connection.close()

    asyncio.run(truncate())
