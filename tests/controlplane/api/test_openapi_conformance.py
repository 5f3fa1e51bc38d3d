"""Schemathesis against a real ``brik-cloud serve``: generated requests, valid and hostile,
to every operation of ``/v1/openapi.json``, with schemathesis' conformance checks — no answer
is a 500; every status is one the document declares, in the shape (and content type, and
headers) it declares; a request the schema allows is accepted ("positive data accepted") and
one it forbids is refused ("negative data rejected").

A schema cannot say everything: a cursor must name an object that exists, an expiry must lie
in the future, a PEM must hold a real key. Those refusals are named one by one below
(:data:`STATE_DEPENDENT`), each with why no schema can carry it; each is in the document's
descriptions too. Only those, only on their operation, naming their parameter, are excused.

The server runs as its own process on the test database (schemathesis calls are blocking, so
they cannot share the event loop of an in-process server). Requests carry an owner's
personal access token; the ids of the bootstrap organization and project are swapped into
non-DELETE paths so generated bodies and queries reach the handlers instead of stopping at 404.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import AwareDatetime, TypeAdapter
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, ignored_auth, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation as Location
from schemathesis.core.transport import Response

from controlplane.api.openapi import build_document
from controlplane.api.pagination import ListQuery
from controlplane.api.routing import Auth, Operation
from controlplane.api.v1 import OPERATIONS
from tests.support.databases import configured_server_url, empty_all_tables_sync
from tests.support.processes import (
    brik_cloud_command,
    free_port,
    running_command,
    server_environment,
)

pytestmark = pytest.mark.database

PASSWORD = "schemathesis admin password"
# Requests generated per operation and mode (the same ones every run: derandomised), within
# the suite's CI budget — this file is its largest. The SQLite run (tests/test_sqlite_dialect.py)
# checks the dialect, not the generator, and shares the CI machine with the main run: fewer.
EXAMPLES = 6 if configured_server_url().startswith("sqlite") else 15


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
        # A realtime stream lasts until its client leaves; schemathesis reads an answer to its
        # end, so here each one closes (cleanly, as documented) after half a second.
        BRIK_REALTIME_MAX_SECONDS="0.5",
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
SCHEMA.config.generation.update(
    # Strings the server can store: the document says once, for every string of every body,
    # that a NUL or a lone UTF-16 surrogate is a 400 (test_bodies.py tests that refusal).
    allow_x00=False,
    codec="utf-8",
    # Credentials are this test's own (below), not generated.
    with_security_parameters=False,
)
OPERATIONS_UNDER_TEST = [result.ok() for result in SCHEMA.get_all_operations()]
DECLARED: dict[tuple[str, str], Operation] = {(op.method, op.path): op for op in OPERATIONS}


def _in_the_past(case: Any) -> bool:
    value = case.body.get("expires_at") if isinstance(case.body, dict) else None
    moment = TypeAdapter(AwareDatetime).validate_python(value) if value is not None else None
    return moment is not None and moment <= datetime.now(UTC)


@dataclass(frozen=True)
class Refusal:
    """A 400 the schema cannot foresee: its code and param, and when it is the right answer."""

    code: str
    param: str | None
    why: str
    applies: Callable[[Any], bool] = lambda _case: True


_PAST_EXPIRY = Refusal(
    "parameter_invalid", "expires_at",
    "'in the future' is relative to the clock: the schema bounds the years, not the moment",
    _in_the_past,
)  # fmt: skip
_NO_BILLING = Refusal(
    "billing_disabled", None, "this server runs without Stripe: a configuration, not a shape"
)
_CURSOR = Refusal(
    "resource_missing", "starting_after",
    "a cursor must name an object in the list; generated ids name none",
)  # fmt: skip


def _from_not_before_to(case: Any) -> bool:
    query = case.query or {}
    if query.get("from") is None or query.get("to") is None:
        return False
    moment = TypeAdapter(AwareDatetime)
    return bool(moment.validate_python(query["from"]) >= moment.validate_python(query["to"]))


_RANGE = Refusal(
    "parameter_invalid", "from",
    "from must come before to: a relation between two parameters, which no schema of either "
    "can state", _from_not_before_to,
)  # fmt: skip


def _one_bound(case: Any) -> bool:
    query = case.query or {}
    return (query.get("from") is None) != (query.get("to") is None)


_ONE_SIDED = [
    Refusal(
        "parameter_invalid",
        bound,
        "with one bound given, the other defaults to now or the period: whether the window "
        "ends before it starts depends on the clock, not the shape",
        _one_bound,
    )
    for bound in ("from", "to")
]
_PRIVATE_URL = Refusal(
    "url_not_allowed", "url",
    "whether a host is a loopback, private or link-local address is a matter of address ranges "
    "(and of the operator's BRIK_WEBHOOK_ALLOW_PRIVATE_NETWORKS), not of a pattern",
)  # fmt: skip
_BRACKETED = Refusal(
    "url_invalid", "url",
    "an IPv6 address in brackets must be one (its groups, one ::): more than a pattern says",
    lambda case: "[" in str((case.body or {}).get("url", "")),
)  # fmt: skip
STATE_DEPENDENT: dict[str, list[Refusal]] = {
    "logout": [Refusal("session_required", None,
                       "signing out ends a session; these calls carry a personal access token")],
    "accept_invitation": [Refusal("invitation_unusable", "token",
                                  "a token is good only once an invitation was sent with it")],
    "change_password": [Refusal("incorrect_password", "current_password",
                                "the right current password is a secret, not a shape"),
                        Refusal("parameter_missing", "current_password",
                                "needed only when the account has a password (an account "
                                "that signs in with OIDC only has none)",
                                lambda case: (case.body or {}).get("current_password") is None)],
    "create_invitation": [Refusal("already_member", "email", "depends on who is a member")],
    "create_api_key": [_PAST_EXPIRY],
    "create_access_token": [_PAST_EXPIRY],
    "update_api_key": [Refusal("scope_not_allowed", "scopes",
                               "the scopes allowed depend on the stored key's kind")],
    "upload_apns_credential": [Refusal("parameter_invalid", "key",
                                       "the PEM frame is in the schema; a P-256 key inside it "
                                       "is a property of the bytes no pattern can check")],
    "upload_fcm_credential": [Refusal("parameter_invalid", "service_account.private_key",
                                      "likewise: an RSA key inside the PEM frame")],
    "send_push": [Refusal("payload_too_large", None,
                          "4 KB is the size of the push as APNs and FCM receive it, after "
                          "conversion, not of any one field")],
    "retrieve_analytics_summary": [_RANGE, *_ONE_SIDED],
    "list_analytics_events": [_RANGE],
    "export_analytics_events": [_RANGE],
    "create_webhook_endpoint": [_PRIVATE_URL, _BRACKETED,
                                Refusal("too_many_webhook_endpoints", None,
                                        "a project holds 20 endpoints per mode: depends on how "
                                        "many it has already")],
    "update_webhook_endpoint": [_PRIVATE_URL, _BRACKETED],
    "create_checkout_session": [_NO_BILLING],
    "create_portal_session": [_NO_BILLING],
}  # fmt: skip


def excused(case: Any, response: Response) -> bool:
    """Whether ``response`` is one of the refusals above, for this operation and request."""
    operation = DECLARED[(case.method.upper(), case.operation.path)]
    refusals = list(STATE_DEPENDENT.get(operation.operation_id, []))
    if operation.query is not None and issubclass(operation.query, ListQuery):
        refusals.append(_CURSOR)
    if response.status_code != 400:
        return False
    error = json.loads(response.content)["error"]
    return any(
        (error["code"], error["param"]) == (refusal.code, refusal.param) and refusal.applies(case)
        for refusal in refusals
    )


def positive_data_accepted(ctx: CheckContext, response: Response, case: Any) -> bool | None:
    """Schemathesis' "positive data acceptance", excusing :data:`STATE_DEPENDENT` only."""
    if case.meta is not None and case.meta.generation.mode.is_positive and excused(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


# Where the generated requests must also get through, not only be refused for good reasons: a
# schema that let nothing valid be generated would pass every check above.
MUST_SUCCEED = {
    "register_device",
    "send_push",
    "send_push_batch",
    "create_api_key",
    "create_project",
    "put_state",
    "list_state",
    "reload_widgets",
    "start_activity",
    "list_activities",
    "ingest_events",
    "retrieve_analytics_summary",
    "create_webhook_endpoint",
    "subscribe_channel",
    "publish_message",
    "create_realtime_token",
}


@pytest.mark.parametrize("operation", OPERATIONS_UNDER_TEST, ids=lambda op: op.label)
def test_every_operation_answers_as_documented(operation: Any, live_server: dict[str, Any]) -> None:
    statuses: list[int] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            exchanges(operation, mode, live_server, statuses)()
        except Unsatisfiable:
            # Nothing to make invalid: the operation takes no parameters and no body.
            assert mode is GenerationMode.NEGATIVE, operation.label
    if DECLARED[(operation.method.upper(), operation.path)].operation_id in MUST_SUCCEED:
        assert any(200 <= status < 300 for status in statuses), statuses


def exchanges(
    operation: Any, mode: GenerationMode, server: dict[str, Any], statuses: list[int]
) -> Any:
    """A hypothesis test sending ``mode`` requests for ``operation`` and checking the answers."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
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
            return  # nothing the server reads was made invalid
        if case.method != "DELETE" and case.path_parameters and Location.PATH not in negative:
            for name, value in server["ids"].items():
                if name in case.path_parameters:
                    case.path_parameters[name] = value
        uses_key = DECLARED[(case.method.upper(), operation.path)].auth is Auth.API_KEY
        headers = server["api_key_headers"] if uses_key else server["headers"]
        response = case.call(base_url=server["base_url"], headers=headers)
        if mode is GenerationMode.POSITIVE:
            statuses.append(response.status_code)
        # "Ignored auth" is not run: it cannot strip credentials passed this way, so it reports
        # every success; missing/invalid/revoked credentials are tested one by one in
        # test_auth.py, test_user.py, test_api_keys.py and test_isolation.py.
        case.validate_response(
            response,
            excluded_checks=[positive_data_acceptance, ignored_auth],
            additional_checks=[positive_data_accepted],
        )

    return exchange
