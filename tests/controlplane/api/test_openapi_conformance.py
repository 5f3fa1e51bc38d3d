"""Schemathesis against a real ``brik-cloud serve``: generated requests, valid and hostile,
to every operation of ``/v1/openapi.json``; no answer may be a 500, and every answer must be
one the document declares, in the shape it declares.

The server runs as its own process on the test database (schemathesis calls are blocking, so
they cannot share the event loop of an in-process server). Requests carry an owner's
personal access token; the ids of the bootstrap organization and project are swapped into
non-DELETE paths so generated bodies and queries reach the handlers instead of stopping at 404.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import ignored_auth, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation as Location

from controlplane.api.openapi import build_document
from controlplane.api.routing import Auth
from controlplane.api.v1 import OPERATIONS
from tests.support.databases import empty_all_tables_sync
from tests.support.processes import (
    brik_cloud_command,
    free_port,
    running_command,
    server_environment,
)

pytestmark = pytest.mark.database

PASSWORD = "schemathesis admin password"


@pytest.fixture(scope="module")
def live_server(database_url: str, redis_url: str) -> Iterator[dict[str, Any]]:
    port = free_port()
    env = server_environment(
        database_url,
        redis_url,
        f"brik-schemathesis:{port}",
        BRIK_LOG_LEVEL="WARNING",
        # Generated requests come far faster than a plan allows; 429 is documented, but a
        # rate-limited run would test little else.
        BRIK_PLAN_FREE_REQUESTS_PER_SECOND="100000",
    )
    boot = subprocess.run(
        [
            *brik_cloud_command(),
            "bootstrap",
            "--json",
            "--admin-email",
            "fuzz@example.com",
            "--admin-password",
            PASSWORD,
            "--org",
            "Fuzz org",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ids = json.loads(boot.stdout)
    base = f"http://127.0.0.1:{port}"
    args = ("serve", "--host", "127.0.0.1", "--port", str(port))
    try:
        with (
            running_command(*args, env=env, ready_url=f"{base}/readyz"),
            httpx.Client(base_url=base) as browser,
        ):
            login = browser.post(
                "/v1/auth/login", json={"email": "fuzz@example.com", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            token = browser.post("/v1/user/access_tokens", json={"name": "fuzz"}).json()["token"]
            yield {
                "base_url": base,
                "headers": {"Authorization": f"Bearer {token}"},
                "api_key_headers": {"Authorization": f"Bearer {ids['keys']['test_secret']}"},
                "ids": {"organization_id": ids["org_id"], "project_id": ids["project_id"]},
            }
    finally:
        empty_all_tables_sync(database_url)


# The document the server serves is built from the same declarations (test_openapi.py
# checks that it covers every route); building it here gives pytest one test per operation.
SCHEMA = schemathesis.openapi.from_dict(build_document(OPERATIONS, "test"))
OPERATIONS_UNDER_TEST = [result.ok() for result in SCHEMA.get_all_operations()]
AUTH = {(op.method, op.path): op.auth for op in OPERATIONS}


@pytest.mark.parametrize("operation", OPERATIONS_UNDER_TEST, ids=lambda op: op.label)
def test_every_operation_answers_as_documented(operation: Any, live_server: dict[str, Any]) -> None:
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            exchanges(operation, mode, live_server)()
        except Unsatisfiable:
            # Nothing to make invalid: the operation takes no parameters and no body.
            assert mode is GenerationMode.NEGATIVE, operation.label


def exchanges(operation: Any, mode: GenerationMode, server: dict[str, Any]) -> Any:
    """A hypothesis test sending ``mode`` requests for ``operation`` and checking the answers."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def exchange(case: Any) -> None:
        negative = {
            location
            for location in (Location.PATH, Location.QUERY, Location.BODY)
            if case.meta is not None and case.meta.is_negative_at(location)
        }
        if mode is GenerationMode.NEGATIVE and not negative:
            # Only the security scheme (a garbage session cookie beside our valid bearer
            # token) was made invalid; the token rightly wins. Nothing to learn.
            return
        if case.method != "DELETE" and case.path_parameters and Location.PATH not in negative:
            for name, value in server["ids"].items():
                if name in case.path_parameters:
                    case.path_parameters[name] = value
        uses_key = AUTH[(case.method, operation.path)] is Auth.API_KEY
        headers = server["api_key_headers"] if uses_key else server["headers"]
        response = case.call(base_url=server["base_url"], headers=headers)
        # Not checked here:
        # - "schema-valid request rejected": a body can be well-formed and still wrong for
        #   the data (an expiry in the past, a scope the key kind may not hold, a cursor
        #   naming nothing); those are 400s by design;
        # - "ignored auth": it cannot strip credentials passed this way, so it reports
        #   every success; missing/invalid/revoked credentials are tested one by one in
        #   test_auth.py, test_user.py, test_api_keys.py and test_isolation.py.
        case.validate_response(response, excluded_checks=[positive_data_acceptance, ignored_auth])

    return exchange
