"""``/v1/credentials``: a project's APNs key and FCM service account (secret key, scopes
``credentials:write`` / ``credentials:read``). Secrets go in and never come out: reads show
only what identifies them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from controlplane.api.fields import Deleted
from controlplane.api.routing import Auth, Call, Operation
from controlplane.credentials import (
    CLIENT_EMAIL_MAX_LENGTH,
    CLIENT_EMAIL_PATTERN,
    FCM_PROJECT_ID_PATTERN,
    PEM_PRIVATE_KEY_PATTERN,
    SERVICE_ACCOUNT_FIELDS,
    apns_key_fingerprint,
    service_account_fingerprint,
)
from controlplane.errors import NotFound
from controlplane.models import ProviderCredential, ProviderName


class Credential(BaseModel):
    object: Literal["credential"] = "credential"
    id: str
    provider: ProviderName
    details: dict[str, Any]
    fingerprint: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: ProviderCredential) -> Credential:
        return cls(
            id=row.id, provider=row.provider, details=row.details, fingerprint=row.fingerprint,
            version=row.version, created_at=row.created_at, updated_at=row.updated_at,
        )  # fmt: skip


class CredentialList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Credential]
    has_more: Literal[False] = False


_SOMETHING: JsonDict = {"type": "string", "pattern": r"[^ \t\r\n]"}


class ApnsCredentialUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(
        max_length=10_000,
        json_schema_extra={"pattern": PEM_PRIVATE_KEY_PATTERN},
        description="The .p8 auth key file's contents: a P-256 private key in PEM form, "
        "-----BEGIN PRIVATE KEY----- lines included.",
    )
    key_id: str = Field(pattern=r"^[A-Z0-9]{10}$", description="The key's 10-character id.")
    team_id: str = Field(pattern=r"^[A-Z0-9]{10}$", description="Your Apple team id.")
    topic: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,154}$", description="The app's bundle id."
    )
    environment: Literal["sandbox", "production"]


class FcmCredentialUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service_account: dict[str, Any] = Field(
        description="The service account JSON key file, as Firebase gives it; its private_key "
        "must be an RSA private key, its project_id a Google project id (6 to 30 lowercase "
        "letters, digits and hyphens, starting with a letter) and its client_email an address.",
        json_schema_extra={
            "required": list(SERVICE_ACCOUNT_FIELDS),
            "properties": {
                **{name: _SOMETHING for name in SERVICE_ACCOUNT_FIELDS},
                "type": {"const": "service_account"},
                "private_key": {"type": "string", "pattern": PEM_PRIVATE_KEY_PATTERN},
                "project_id": {"type": "string", "pattern": FCM_PROJECT_ID_PATTERN},
                "client_email": {
                    "type": "string",
                    "pattern": CLIENT_EMAIL_PATTERN,
                    "maxLength": CLIENT_EMAIL_MAX_LENGTH,
                },
            },
        },
    )


async def _store(
    call: Call, provider: ProviderName, secret: dict[str, Any], details: dict[str, Any],
    fingerprint: str,
) -> Credential:  # fmt: skip
    encrypted = call.keyring.encrypt(json.dumps(secret).encode())
    row = await call.tenant.query(ProviderCredential).filter(provider=provider).first()
    if row is None:
        row = await ProviderCredential.create(
            project=call.tenant.project, provider=provider, secret_encrypted=encrypted,
            details=details, fingerprint=fingerprint,
        )  # fmt: skip
    else:
        row.secret_encrypted, row.details, row.fingerprint = encrypted, details, fingerprint
        row.version += 1
        await row.save(update_fields=["secret_encrypted", "details", "fingerprint", "version",
                                      "updated_at"])  # fmt: skip
    await call.audit("credential.uploaded", target_type="credential", target_id=row.id,
                     provider=provider.value, fingerprint=fingerprint, version=row.version,
                     project_id=row.project_id)  # type: ignore[attr-defined]  # fmt: skip
    return Credential.of(row)


async def upload_apns_credential(call: Call) -> Credential:
    body = call.body_as(ApnsCredentialUpload)
    fingerprint = apns_key_fingerprint(body.key)
    details = body.model_dump(exclude={"key"})
    return await _store(call, ProviderName.APNS, {"key": body.key.strip()}, details, fingerprint)


async def upload_fcm_credential(call: Call) -> Credential:
    account = call.body_as(FcmCredentialUpload).service_account
    fingerprint = service_account_fingerprint(account)
    details = {
        "project_id": account["project_id"],
        "client_email": account["client_email"],
        "private_key_id": account["private_key_id"],
    }
    return await _store(call, ProviderName.FCM, {"service_account": account}, details, fingerprint)


async def list_credentials(call: Call) -> CredentialList:
    rows = await call.tenant.query(ProviderCredential).order_by("provider")
    return CredentialList(data=[Credential.of(row) for row in rows])


async def _delete(call: Call, provider: ProviderName) -> Deleted:
    row = await call.tenant.query(ProviderCredential).filter(provider=provider).first()
    if row is None:
        raise NotFound(f"This project has no {provider.value} credential.", param="provider")
    await row.delete()
    await call.audit("credential.deleted", target_type="credential", target_id=row.id,
                     provider=provider.value)  # fmt: skip
    return Deleted(object="credential", id=row.id)


async def delete_apns_credential(call: Call) -> Deleted:
    return await _delete(call, ProviderName.APNS)


async def delete_fcm_credential(call: Call) -> Deleted:
    return await _delete(call, ProviderName.FCM)


KEY = Auth.API_KEY
operations = [
    Operation("GET", "/v1/credentials", list_credentials,
              "The project's provider credentials (metadata and fingerprints only)",
              "Credentials", auth=KEY, scope="credentials:read", response=CredentialList),
    Operation("PUT", "/v1/credentials/apns", upload_apns_credential,
              "Upload (or replace) the APNs auth key", "Credentials", auth=KEY,
              scope="credentials:write", body=ApnsCredentialUpload, response=Credential),
    Operation("PUT", "/v1/credentials/fcm", upload_fcm_credential,
              "Upload (or replace) the FCM service account", "Credentials", auth=KEY,
              scope="credentials:write", body=FcmCredentialUpload, response=Credential),
    Operation("DELETE", "/v1/credentials/apns", delete_apns_credential,
              "Remove the APNs auth key", "Credentials", auth=KEY, scope="credentials:write",
              response=Deleted),
    Operation("DELETE", "/v1/credentials/fcm", delete_fcm_credential,
              "Remove the FCM service account", "Credentials", auth=KEY,
              scope="credentials:write", response=Deleted),
]  # fmt: skip
