"""``/v1/webhook_endpoints``: the secret shown once and kept encrypted, URLs checked against the
address policy, endpoints per mode, scopes, the delivery log and resending (no worker here:
what the API commits is checked; sending is tests/workers/test_webhooks.py's)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.crypto import KeyRing
from controlplane.models import (
    AuditEvent,
    KeyKind,
    KeyMode,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from controlplane.settings import Settings
from controlplane.webhook_endpoints import MAX_ENDPOINTS_PER_PROJECT
from tests.conftest import TEST_SECRET_KEY
from tests.support.servers import serving
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

URL = "https://hooks.example.com/brik"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def key_of(tenant: Tenant, kind: KeyKind, mode: KeyMode, **kwargs: object) -> str:
    _, secret = await issue_api_key(tenant.project, name=f"{kind} {mode}", kind=kind, mode=mode,
                                    pepper=TEST_SECRET_KEY, **kwargs)  # type: ignore[arg-type]  # fmt: skip
    return secret


async def test_an_endpoint_is_created_read_changed_and_deleted_with_its_secret_shown_once(
    client: httpx.AsyncClient, settings: Settings, database: None
) -> None:
    acme = await make_tenant("Acme")
    key = auth(acme.secret_key)
    created = await client.post("/v1/webhook_endpoints", headers=key, json={
        "url": URL, "events": ["push.completed", "billing.*", "push.completed"],
        "description": "order service"})  # fmt: skip
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["object"] == "webhook_endpoint"
    assert (endpoint["type"], endpoint["mode"], endpoint["enabled"]) == ("webhook", "test", True)
    assert endpoint["events"] == ["billing.*", "push.completed"]
    assert endpoint["url"] == URL
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    assert len(secret) > 40

    row = await WebhookEndpoint.get(id=endpoint["id"])
    keyring = KeyRing([k.get_secret_value() for k in settings.encryption_keys])
    assert keyring.decrypt(row.secret_encrypted).decode() == secret
    assert keyring.decrypt(row.url_encrypted).decode() == URL
    assert secret not in row.secret_encrypted

    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    shown = await client.get(path, headers=key)
    assert "secret" not in shown.json()
    listed = await client.get("/v1/webhook_endpoints", headers=key)
    assert [e["id"] for e in listed.json()["data"]] == [endpoint["id"]]
    assert secret not in listed.text

    changed = await client.patch(path, headers=key, json={
        "url": "https://hooks.example.com/v2", "events": ["*"], "description": None})  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert (changed.json()["url"], changed.json()["events"]) == ("https://hooks.example.com/v2",
                                                                 ["*"])  # fmt: skip
    assert changed.json()["description"] is None
    stopped = await client.patch(path, headers=key, json={"enabled": False})
    assert (stopped.json()["enabled"], stopped.json()["disabled_reason"]) == (
        False, "disabled through the API",
    )  # fmt: skip
    deleted = await client.delete(path, headers=key)
    assert deleted.json() == {"object": "webhook_endpoint", "id": endpoint["id"], "deleted": True}
    assert (await client.get(path, headers=key)).status_code == 404
    actions = (
        await AuditEvent.filter(target_id=endpoint["id"])
        .order_by("created_at")
        .values_list("action", flat=True)
    )
    assert actions == ["webhook_endpoint.created", "webhook_endpoint.updated",
                       "webhook_endpoint.updated", "webhook_endpoint.deleted"]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"url": "http://127.0.0.1:9000/hooks", "events": ["*"]}, "url_not_allowed", "url"),
        ({"url": "http://10.0.0.7/", "events": ["*"]}, "url_not_allowed", "url"),
        ({"url": "http://169.254.169.254/latest/", "events": ["*"]}, "url_not_allowed", "url"),
        ({"url": "http://[::1]:9000/", "events": ["*"]}, "url_not_allowed", "url"),
        ({"url": "http://localhost:9000/", "events": ["*"]}, "url_not_allowed", "url"),
        ({"url": "https://u:p@hooks.example.com/", "events": ["*"]}, "url_invalid", "url"),
        ({"url": "gopher://hooks.example.com/", "events": ["*"]}, "url_invalid", "url"),
        ({"url": URL, "events": ["push.sent"]}, "parameter_invalid", "events"),
        ({"url": URL, "events": []}, "parameter_invalid", "events"),
        ({"url": URL, "events": ["*"], "type": "teams"}, "parameter_invalid", "type"),
    ],
)
async def test_a_bad_endpoint_is_refused_and_nothing_stored(
    client: httpx.AsyncClient, body: dict[str, object], code: str, param: str, database: None
) -> None:
    acme = await make_tenant("Acme")
    refused = await client.post("/v1/webhook_endpoints", json=body, headers=auth(acme.secret_key))
    assert refused.status_code == 400, refused.text
    assert (refused.json()["error"]["code"], refused.json()["error"]["param"]) == (code, param)
    assert not await WebhookEndpoint.exists()


async def test_private_addresses_are_accepted_once_the_operator_allows_them(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(webhook_allow_private_networks=True)
    acme = await make_tenant("Acme")
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        body = {"url": "http://10.0.0.7:8080/hooks", "events": ["*"]}
        created = await client.post("/v1/webhook_endpoints", json=body,
                                    headers=auth(acme.secret_key))  # fmt: skip
    assert created.status_code == 201, created.text


async def test_endpoints_belong_to_a_mode_and_need_a_secret_key_with_the_scopes(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    live = await key_of(acme, KeyKind.SECRET, KeyMode.LIVE)
    created = await client.post("/v1/webhook_endpoints", headers=auth(acme.secret_key),
                                json={"url": URL, "events": ["*"]})  # fmt: skip
    test_endpoint = created.json()["id"]
    missing = await client.get(f"/v1/webhook_endpoints/{test_endpoint}", headers=auth(live))
    assert missing.status_code == 404
    assert (await client.get("/v1/webhook_endpoints", headers=auth(live))).json()["data"] == []

    publishable = await key_of(acme, KeyKind.PUBLISHABLE, KeyMode.TEST)
    refused = await client.get("/v1/webhook_endpoints", headers=auth(publishable))
    assert refused.status_code == 403
    reader = await key_of(acme, KeyKind.SECRET, KeyMode.TEST, scopes=["webhooks:read"])
    assert (await client.get("/v1/webhook_endpoints", headers=auth(reader))).status_code == 200
    cannot = await client.post("/v1/webhook_endpoints", headers=auth(reader),
                               json={"url": URL, "events": ["*"]})  # fmt: skip
    assert (cannot.status_code, cannot.json()["error"]["param"]) == (403, "webhooks:write")


async def test_a_project_holds_a_bounded_number_of_endpoints(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    for number in range(MAX_ENDPOINTS_PER_PROJECT):
        created = await client.post("/v1/webhook_endpoints", headers=auth(acme.secret_key),
                                    json={"url": f"{URL}/{number}", "events": ["*"]})  # fmt: skip
        assert created.status_code == 201
    refused = await client.post("/v1/webhook_endpoints", headers=auth(acme.secret_key),
                                json={"url": URL, "events": ["*"]})  # fmt: skip
    assert refused.json()["error"]["code"] == "too_many_webhook_endpoints"


async def test_the_test_event_and_a_resend_are_queued_for_that_endpoint_only(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    key = auth(acme.secret_key)
    first, second = [
        (await client.post("/v1/webhook_endpoints", headers=key,
                           json={"url": f"{URL}/{n}", "events": ["billing.*"]})).json()["id"]
        for n in range(2)
    ]  # fmt: skip
    test = await client.post(f"/v1/webhook_endpoints/{first}/test", headers=key)
    assert test.status_code == 202, test.text
    delivery = test.json()
    assert (delivery["event_type"], delivery["status"], delivery["trigger"]) == (
        "webhook.test", "queued", "test",
    )  # fmt: skip
    assert await WebhookDelivery.filter(endpoint_id=second).count() == 0
    log = await client.get(f"/v1/webhook_endpoints/{first}/deliveries", headers=key)
    assert [d["id"] for d in log.json()["data"]] == [delivery["id"]]
    detail = await client.get(f"/v1/webhook_endpoints/{first}/deliveries/{delivery['id']}",
                              headers=key)  # fmt: skip
    event = detail.json()["event"]
    assert (event["object"], event["type"], event["livemode"]) == ("event", "webhook.test", False)
    assert event["data"]["object"]["id"] == first
    # A delivery is reached through its own endpoint only.
    elsewhere = await client.get(f"/v1/webhook_endpoints/{second}/deliveries/{delivery['id']}",
                                 headers=key)  # fmt: skip
    assert elsewhere.status_code == 404
    resent = await client.post(
        f"/v1/webhook_endpoints/{first}/deliveries/{delivery['id']}/resend", headers=key
    )
    assert resent.status_code == 202
    assert resent.json()["event_id"] == delivery["event_id"]
    assert resent.json()["id"] != delivery["id"]
    assert await WebhookEvent.filter(type="webhook.test").count() == 1  # the same event
    queued = await client.get(f"/v1/webhook_endpoints/{first}/deliveries?status=queued",
                              headers=key)  # fmt: skip
    assert len(queued.json()["data"]) == 2


async def test_deleting_the_project_deletes_its_endpoints_and_their_log(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    key = auth(acme.secret_key)
    created = await client.post("/v1/webhook_endpoints", headers=key,
                                json={"url": URL, "events": ["*"]})  # fmt: skip
    await client.post(f"/v1/webhook_endpoints/{created.json()['id']}/test", headers=key)
    deleted = await client.delete(f"/v1/projects/{acme.project.id}", headers=acme.owner.headers)
    assert deleted.status_code == 200, deleted.text
    for model in (WebhookEndpoint, WebhookEvent, WebhookDelivery):
        assert not await model.exists(), model
