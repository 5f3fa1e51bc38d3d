"""Tortoise ORM set-up: one config builder, connect/close, migrations.

Tortoise 1.x keeps its state in a context that is per asyncio task by default. Requests are
served in tasks other than the one that ran the lifespan, so we initialise with the global
fallback enabled: every task of the process sees the same connections. The API and the
in-process worker of ``brik-cloud dev`` share one database context; whoever opened it closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # no stubs; only its exception classes
from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.context import TortoiseContext
from tortoise.exceptions import BaseORMException
from tortoise.migrations.api import migrate as tortoise_migrate
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.migrations.writer import MigrationWriter

APP_LABEL = "brik"
MODELS_MODULE = "controlplane.models"
MIGRATIONS_MODULE = "controlplane.migrations"
POOL_MAX_SIZE = 10  # connections per process unless the URL says ?maxsize=
REACH_TIMEOUT_SECONDS = 10.0


class DatabaseUnreachable(RuntimeError):
    """The database a URL names does not answer: refused, unknown, wrong credentials, no file.

    Its message is one line naming the database (password hidden) and the reason, for a
    command to print instead of a driver's traceback.
    """


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": connection_config(database_url)},
        "apps": {
            APP_LABEL: {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def _keep_session(_connection: object) -> None:
    """Return a pooled connection as it is, without asyncpg's reset query.

    asyncpg always ends an open transaction on release; its default reset then also runs
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` — a round trip on every
    query outside a transaction. Brik takes advisory locks only for a transaction (released
    when it ends), and never keeps cursors, listens or changes session settings, so there is
    nothing to reset (measured in loadtests/).
    """


def connection_config(database_url: str) -> dict[str, Any]:
    """Tortoise's connection settings for ``database_url``: pool tuned for PostgreSQL."""
    config = expand_db_url(normalise_database_url(database_url))
    if config["engine"] == "tortoise.backends.asyncpg":
        credentials = config["credentials"]
        credentials.setdefault("maxsize", POOL_MAX_SIZE)
        credentials["reset"] = _keep_session
    return config


def normalise_database_url(url: str) -> str:
    """Accept the ``postgresql://`` spelling most tools print as well as Tortoise's ``postgres://``."""
    for alias in ("postgresql+asyncpg://", "postgresql://"):
        if url.startswith(alias):
            return "postgres://" + url[len(alias) :]
    return url


def display_url(database_url: str) -> str:
    """``database_url`` with its password hidden: how messages and logs name a database."""
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


async def check_reachable(database_url: str) -> None:
    """Connect to ``database_url`` and run ``SELECT 1``, else :class:`DatabaseUnreachable`.

    Commands call this first, so that an unreachable database is one line naming it, while
    a failure later on (a bug) still shows its traceback.
    """
    config = connection_config(database_url)
    try:
        if config["engine"] == "tortoise.backends.sqlite":
            # The standard library's driver: aiosqlite leaves its thread behind when the open
            # fails, and the file is local, so there is nothing to wait for.
            with contextlib.closing(sqlite3.connect(config["credentials"]["file_path"])) as file:
                file.execute("SELECT 1")
            return
        async with asyncio.timeout(REACH_TIMEOUT_SECONDS), TortoiseContext() as context:
            await context.init(config=tortoise_config(database_url))
            await context.connections.get("default").execute_query("SELECT 1")
    except (OSError, sqlite3.Error, BaseORMException, asyncpg.PostgresError) as exc:
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        reason = " ".join(str(cause).split()) or type(cause).__name__
        if isinstance(cause, TimeoutError):
            reason = f"no answer within {REACH_TIMEOUT_SECONDS:g} s"
        raise DatabaseUnreachable(
            f"Cannot reach the database {display_url(database_url)}: {reason}"
        ) from None


@asynccontextmanager
async def database(database_url: str) -> AsyncIterator[None]:
    """Connect Tortoise for the whole process, unless someone in this process already has."""
    if Tortoise.is_inited():
        yield
        return
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)
    try:
        yield
    finally:
        await Tortoise.close_connections()


async def migrate(database_url: str) -> None:
    """Apply every committed migration that the database has not seen yet."""
    async with TortoiseContext():
        await tortoise_migrate(config=tortoise_config(database_url))


async def _model_changes(database_url: str) -> list[MigrationWriter]:
    """What ``makemigrations`` would write now: one writer per app whose models changed."""
    config = tortoise_config(database_url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        assert ctx.apps is not None
        return await MigrationAutodetector(ctx.apps, config["apps"]).changes()


async def pending_model_changes(database_url: str) -> list[str]:
    """Names of the migrations ``makemigrations`` would write now; empty when models match."""
    return [f"{writer.app_label}.{writer.name}" for writer in await _model_changes(database_url)]


async def make_migrations(database_url: str, name: str | None = None) -> list[str]:
    """Write migration files for model changes (a maintainer's command); returns their paths."""
    paths = []
    for writer in await _model_changes(database_url):
        if name:
            number = writer.name.split("_", 1)[0]
            writer.name = f"{number}_{name}"
        paths.append(str(writer.write()))
    return paths
