"""Idempotency keys are scoped per project and mode: a test key never answers for a live one."""

from __future__ import annotations

import httpx
import pytest

from controlplane.auth.api_keys import issue_api_key
from controlplane.models import IdempotencyKey, KeyKind, KeyMode, Push
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import new_signing_key
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

ALERT = {"kind": "alert", "alert": {"title": "Order shipped"}, "to": {"tags": ["t"]}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def upload_apns_credential(client: httpx.AsyncClient, key: str) -> None:
    """The project's APNs credential, without which live pushes to iOS are refused."""
    signing = new_signing_key()
    uploaded = await client.put("/v1/credentials/apns", headers=bearer(key), json={
        "key": signing.pem, "key_id": signing.key_id, "team_id": signing.team_id,
        "topic": "com.example.app", "environment": "production",
    })  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text


async def test_the_same_key_in_test_then_live_mode_runs_the_live_request_on_its_own(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    await upload_apns_credential(client, acme.secret_key)
    for key in (acme.secret_key, live):
        registered = await client.post("/v1/devices", headers=bearer(key),
                                       json={"token": "ab" * 32, "platform": "ios",
                                             "tags": ["t"]})  # fmt: skip
        assert registered.status_code in (200, 201), registered.text

    keyed = {"Idempotency-Key": "order-42-shipped"}
    tested = await client.post("/v1/pushes", json=ALERT, headers={**bearer(acme.secret_key),
                                                                  **keyed})  # fmt: skip
    assert tested.status_code == 202, tested.text
    sent = await client.post("/v1/pushes", json=ALERT, headers={**bearer(live), **keyed})
    assert sent.status_code == 202, sent.text
    assert "idempotent-replayed" not in sent.headers
    assert sent.json()["id"] != tested.json()["id"]
    pushes = {push.id: push.mode for push in await Push.all()}
    assert pushes == {tested.json()["id"]: KeyMode.TEST, sent.json()["id"]: KeyMode.LIVE}

    # Each mode still replays its own first answer.
    for key, first in ((acme.secret_key, tested), (live, sent)):
        again = await client.post("/v1/pushes", json=ALERT, headers={**bearer(key), **keyed})
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (202, "true")
        assert again.json() == first.json()
    assert await Push.all().count() == 2


async def test_a_test_key_cannot_claim_a_key_production_will_use(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    await upload_apns_credential(client, acme.secret_key)
    await client.post("/v1/devices", headers=bearer(live),
                      json={"token": "cd" * 32, "platform": "ios", "tags": ["t"]})  # fmt: skip
    keyed = {"Idempotency-Key": "invoice-7"}
    squatted = await client.post(
        "/v1/pushes", headers={**bearer(acme.secret_key), **keyed},
        json={**ALERT, "alert": {"title": "Something else"}},
    )  # fmt: skip
    assert squatted.status_code == 202, squatted.text
    sent = await client.post("/v1/pushes", json=ALERT, headers={**bearer(live), **keyed})
    assert sent.status_code == 202, sent.text  # not 422 idempotency_key_reused
    assert sent.json()["recipients"] == 1
    assert {row.mode for row in await IdempotencyKey.filter(key="invoice-7")} == {
        KeyMode.TEST, KeyMode.LIVE,
    }  # fmt: skip
