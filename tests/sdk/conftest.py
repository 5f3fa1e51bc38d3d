"""A real Brik Cloud for the SDK tests: ``brik-cloud serve`` and ``brik-cloud worker`` as
subprocesses on the test database and Redis, test-mode keys delivering to the sandbox, and keys
from what ``brik-cloud bootstrap`` makes — what a tenant's code would talk to."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from controlplane import db
from controlplane.bootstrap import bootstrap
from tests.support.databases import empty_all_tables
from tests.support.processes import (
    free_port,
    running_command,
    server_environment,
)

ADMIN_EMAIL = "sdk-tests@example.com"
QUOTA = 40  # pushes a month per mode on the test server's free plan
STATE_QUOTA = 200_000  # bytes of state per mode on the test server's free plan


@dataclass
class BrikServer:
    url: str
    env: dict[str, str]

    def bootstrap(self, org: str) -> dict[str, str]:
        """An organization with a project and its four keys (test/live, secret/publishable),
        made here by the function ``brik-cloud bootstrap`` runs (the command itself is tested
        in tests/controlplane/test_cli.py; a process per test cost seconds of CPU each)."""

        async def made() -> dict[str, str]:
            async with db.database(self.env["BRIK_DATABASE_URL"]):
                result = await bootstrap(
                    pepper=self.env["BRIK_SECRET_KEY"], admin_email=ADMIN_EMAIL,
                    org_name=org, project_name=f"{org} app",
                )  # fmt: skip
            return {name: key for name, key in result.keys.items() if key is not None}

        return asyncio.run(made())

    def reserve_org(self) -> dict[str, str]:
        return self.bootstrap(f"SDK org {secrets.token_hex(4)}")


@pytest.fixture(scope="module")
async def brik_server(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BrikServer]:
    port = free_port()
    env = server_environment(
        database_url,
        redis_url,
        f"brik-sdk-test:{port}",
        BRIK_WORKER_POLL_DELAY="0.01",
        BRIK_PLAN_FREE_PUSHES_PER_MONTH=str(QUOTA),
        BRIK_PLAN_FREE_STATE_BYTES=str(STATE_QUOTA),
        BRIK_PLAN_FREE_REQUESTS_PER_SECOND="100000",
        BRIK_ANALYTICS_LOAD_EVERY_SECONDS="1",
        # Webhook tests receive on 127.0.0.1 (tests/sdk/test_webhooks.py).
        BRIK_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        # Realtime streams end after 2 s, so tests/sdk/test_realtime.py sees the SDK reconnect.
        BRIK_REALTIME_MAX_SECONDS="2",
        BRIK_EXPORT_DIR=str(tmp_path_factory.mktemp("exports")),
    )
    url = f"http://127.0.0.1:{port}"
    serve = ("serve", "--host", "127.0.0.1", "--port", str(port))
    with (
        running_command(*serve, env=env, ready_url=f"{url}/readyz"),
        running_command("worker", env=env, ready_url=f"{url}/readyz"),
    ):
        yield BrikServer(url=url, env=env)
    async with db.database(database_url):
        await empty_all_tables()


@pytest.fixture
def keys(brik_server: BrikServer) -> dict[str, str]:
    """A fresh organization's keys for one test (its own quota and data)."""
    return brik_server.reserve_org()


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, brik_server: BrikServer, keys: dict[str, str]
) -> None:
    """BRIK_API_KEY and BRIK_API_URL set as a tenant's deployment would."""
    monkeypatch.setenv("BRIK_API_KEY", keys["test_secret"])
    monkeypatch.setenv("BRIK_API_URL", brik_server.url)


def api_get(server: BrikServer, key: str, path: str) -> dict[str, object]:
    """Read the API directly (not through the SDK), to check what the SDK did."""
    response = httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    body: dict[str, object] = response.json()
    return body
