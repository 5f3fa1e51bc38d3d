"""Fixtures: real PostgreSQL (or SQLite) and Redis, apps served over real HTTP.

- ``BRIK_TEST_DATABASE_URL``: a PostgreSQL server URL (a fresh database is created on it per
  session and dropped after) or a ``sqlite://`` URL for the dialect run. Default: the local
  server on 127.0.0.1:5432.
- ``BRIK_TEST_REDIS_URL``: a Redis database the tests may flush between tests. Default: a
  private ``redis-server`` started on a free port for this test session and stopped after, so
  the developer's own Redis is never touched and two runs on one machine never collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from starlette.applications import Starlette

from controlplane import db
from controlplane.app import create_app
from controlplane.embedded_redis import EmbeddedRedis
from controlplane.settings import Settings
from tests.support.databases import (
    configured_server_url,
    create_postgres_database,
    drop_postgres_database,
    empty_all_tables,
)
from tests.support.servers import serving
from tests.support.stripe import localstripe_process
from workers.fakes.stripe import FakeStripe

TEST_SECRET_KEY = "test-secret-key-" + "x" * 32


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A migrated, empty database for this test session."""
    configured = configured_server_url()
    if configured.startswith("sqlite"):
        url = f"sqlite://{tmp_path_factory.mktemp('sqlite') / 'brik-test.sqlite3'}"
        await db.migrate(url)
        yield url
        return
    url = await create_postgres_database(configured)
    try:
        await db.migrate(url)
        yield url
    finally:
        await drop_postgres_database(configured, url)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("BRIK_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
async def clean_redis(redis_url: str) -> AsyncIterator[None]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def make_settings(database_url: str, redis_url: str, clean_redis: None) -> Callable[..., Settings]:
    """Settings for the test servers; keyword arguments override fields."""
    queue = f"brik-test:{secrets.token_hex(4)}"

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "secret_key": TEST_SECRET_KEY,
            "encryption_keys": [Fernet.generate_key().decode()],
            "queue_name": queue,
            "worker_poll_delay": 0.01,
            # Tests fire requests far faster than any plan allows; the rate-limit tests set
            # their own limits.
            "plan_free_requests_per_second": 100_000.0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[None]:
    """The ORM connected for the test body; every table emptied afterwards."""
    async with db.database(database_url):
        try:
            yield
        finally:
            await empty_all_tables()


@pytest.fixture
async def app(settings: Settings, database: None) -> Starlette:
    return create_app(settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` served by uvicorn on a real socket."""
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with localstripe_process() as url:
        yield url


@pytest.fixture
async def fake_stripe(localstripe_url: str) -> AsyncIterator[FakeStripe]:
    fake = FakeStripe(upstream=localstripe_url)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


# The longest test files (by --durations), handed out first: pytest-xdist gives out whole files
# in collection order, and a long one picked up last keeps the run waiting on one worker while
# the others idle. The SQLite run's test goes last: it holds a worker while it waits for its
# child, so it should only wait once there is nothing else to do.
LONGEST_FIRST = (
    "tests/controlplane/api/test_openapi_conformance.py",
    "tests/controlplane/test_cli.py",
    "tests/image/test_entrypoint.py",
    "tests/controlplane/test_billing.py",
    "tests/controlplane/test_dev.py",
    "tests/loadtests/test_http_api.py",
    "tests/dashboard/test_roles.py",
    "tests/loadtests/test_pipeline.py",
    "tests/workers/test_import.py",
    "tests/workers/test_faults.py",
)
LAST = "tests/test_sqlite_dialect.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first, the SQLite run last; each file's own order kept."""

    def place(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        if path == LAST:
            return len(LONGEST_FIRST) + 1
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=place)  # stable: the rest keep their order


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the SQLite dialect run now, beside the rest, if it is one of the tests to run.

    Not in an xdist worker: every worker collects every test, and the controller starts the
    run once for them (below)."""
    from tests import test_sqlite_dialect

    if hasattr(session.config, "workerinput"):
        return
    if any(item.nodeid == test_sqlite_dialect.TEST_ID for item in session.items):
        test_sqlite_dialect.start()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker where the SQLite dialect run writes its result."""
    from tests import test_sqlite_dialect

    folder = test_sqlite_dialect.planned_folder()
    node.workerinput[test_sqlite_dialect.WORKERINPUT_KEY] = str(folder)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: Sequence[str]) -> None:
    """xdist controller: a worker collected the tests to run; start the SQLite dialect run
    once if it is one of them."""
    from tests import test_sqlite_dialect

    if test_sqlite_dialect.TEST_ID in ids:
        test_sqlite_dialect.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import test_sqlite_dialect

    test_sqlite_dialect.stop()
