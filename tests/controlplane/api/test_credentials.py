"""Provider credentials: validated on upload, stored encrypted, never shown again."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.models import AuditEvent, ProviderCredential
from tests.support.apple import new_signing_key
from tests.support.google import new_service_account
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


def apns_body(**overrides: object) -> dict[str, object]:
    key = new_signing_key()
    body: dict[str, object] = {
        "key": key.pem, "key_id": key.key_id, "team_id": key.team_id,
        "topic": "com.example.app", "environment": "production",
    }  # fmt: skip
    body.update(overrides)
    return body


async def test_an_apns_key_is_stored_encrypted_and_only_its_metadata_shown(
    app: Starlette, client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    auth = {"Authorization": f"Bearer {acme.secret_key}"}
    body = apns_body()
    uploaded = await client.put("/v1/credentials/apns", json=body, headers=auth)
    assert uploaded.status_code == 200, uploaded.text
    shown = uploaded.json()
    assert shown["details"] == {
        "key_id": body["key_id"], "team_id": body["team_id"], "topic": "com.example.app",
        "environment": "production",
    }  # fmt: skip
    assert shown["fingerprint"].startswith("SHA256:")
    assert shown["version"] == 1
    listed = await client.get("/v1/credentials", headers=auth)
    assert "PRIVATE KEY" not in listed.text
    row = await ProviderCredential.get(project=acme.project)
    assert "PRIVATE KEY" not in row.secret_encrypted
    secret = json.loads(app.state.keyring.decrypt(row.secret_encrypted))
    assert secret["key"] == str(body["key"]).strip()

    replaced = await client.put("/v1/credentials/apns", json=apns_body(), headers=auth)
    assert replaced.json()["version"] == 2
    assert replaced.json()["fingerprint"] != shown["fingerprint"]
    assert await AuditEvent.filter(action="credential.uploaded").count() == 2


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"key": "not a key"}, "key"),
        ({"key_id": "short"}, "key_id"),
        ({"team_id": "lowercase1"}, "team_id"),
        ({"environment": "staging"}, "environment"),
        ({"topic": "has spaces"}, "topic"),
    ],
)
async def test_bad_apns_uploads_name_the_field(
    client: httpx.AsyncClient, database: None, overrides: dict[str, object], param: str
) -> None:
    acme = await make_tenant("Acme")
    response = await client.put(
        "/v1/credentials/apns", json=apns_body(**overrides),
        headers={"Authorization": f"Bearer {acme.secret_key}"},
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert await ProviderCredential.all().count() == 0


async def test_an_rsa_key_is_not_an_apns_key(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    info, _ = new_service_account("https://oauth2.googleapis.com/token")
    response = await client.put(
        "/v1/credentials/apns", json=apns_body(key=info["private_key"]),
        headers={"Authorization": f"Bearer {acme.secret_key}"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "P-256" in response.json()["error"]["message"]


async def test_a_service_account_is_checked_and_kept_secret(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    auth = {"Authorization": f"Bearer {acme.secret_key}"}
    info, _ = new_service_account("https://oauth2.googleapis.com/token")
    missing = await client.put(
        "/v1/credentials/fcm", json={"service_account": {**info, "client_email": ""}}, headers=auth
    )
    assert missing.json()["error"]["param"] == "service_account.client_email"
    broken = await client.put(
        "/v1/credentials/fcm",
        json={"service_account": {**info, "private_key": "-----BEGIN PRIVATE KEY-----\nx"}},
        headers=auth,
    )
    assert broken.json()["error"]["param"] == "service_account.private_key"
    ok = await client.put("/v1/credentials/fcm", json={"service_account": info}, headers=auth)
    assert ok.status_code == 200
    assert ok.json()["details"]["project_id"] == info["project_id"]
    assert info["private_key"] not in (await client.get("/v1/credentials", headers=auth)).text
    deleted = await client.delete("/v1/credentials/fcm", headers=auth)
    assert deleted.json()["deleted"] is True
    again = await client.delete("/v1/credentials/fcm", headers=auth)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("project_id", "a/b?c#d"),  # it goes into the FCM endpoint's path
        ("project_id", "../../x"),
        ("project_id", "short"),  # 6 to 30 characters
        ("project_id", "a" * 31),
        ("project_id", "1-starts-with-a-digit"),
        ("project_id", "Upper-Case-Project"),
        ("project_id", "ends-with-a-hyphen-"),
        ("client_email", "x" * 5000 + "@example.iam.gserviceaccount.com"),
        ("client_email", "not an email"),
        ("client_email", "firebase@project"),
    ],
)
async def test_a_service_account_with_a_malformed_field_is_refused_naming_it(
    client: httpx.AsyncClient, database: None, field: str, value: str
) -> None:
    acme = await make_tenant("Acme")
    info, _ = new_service_account("https://oauth2.googleapis.com/token")
    response = await client.put(
        "/v1/credentials/fcm", json={"service_account": {**info, field: value}},
        headers={"Authorization": f"Bearer {acme.secret_key}"},
    )  # fmt: skip
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("parameter_invalid", f"service_account.{field}")
    assert await ProviderCredential.all().count() == 0


async def test_publishable_keys_cannot_touch_credentials(
    client: httpx.AsyncClient, database: None
) -> None:
    from controlplane.auth.api_keys import issue_api_key
    from controlplane.models import KeyKind, KeyMode
    from tests.conftest import TEST_SECRET_KEY

    acme = await make_tenant("Acme")
    _, publishable = await issue_api_key(
        acme.project, name="app", kind=KeyKind.PUBLISHABLE, mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY,
    )  # fmt: skip
    response = await client.put(
        "/v1/credentials/apns", json=apns_body(), headers={"Authorization": f"Bearer {publishable}"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["param"] == "credentials:write"
