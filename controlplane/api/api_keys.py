"""``/v1/projects/{project_id}/api_keys``: a project's publishable and secret keys.

The plaintext key is in the answer to the create call and nowhere else, ever. Revocation and
scope changes reach every API process before they are answered (``forget_cached_keys``); when
Redis cannot be reached they are refused with 503 rather than saved unheard.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict, JsonValue

from controlplane.api.fields import FutureMoment, Name
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Auth, Call, Operation, forget_cached_keys
from controlplane.auth.api_key_cache import pending_last_used
from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.permissions import Permission
from controlplane.auth.scopes import ALLOWED_SCOPES
from controlplane.errors import InvalidRequest
from controlplane.models import ApiKey as ApiKeyRow
from controlplane.models import KeyKind, KeyMode


class ApiKey(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    project_id: str
    name: str
    kind: KeyKind
    mode: KeyMode
    scopes: list[str]
    redacted: str = Field(description="Display form, e.g. bk_sk_live_AbCd…wXyZ.")
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: ApiKeyRow, last_used_at: datetime | None = None) -> ApiKey:
        used = max(
            (moment for moment in (row.last_used_at, last_used_at) if moment is not None),
            default=None,
        )
        return cls(
            id=row.id,
            project_id=row.project_id,  # type: ignore[attr-defined]
            name=row.name,
            kind=row.kind,
            mode=row.mode,
            scopes=sorted(row.scopes),
            redacted=f"{row.display_prefix}…{row.last_four}",
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=used,
            created_at=row.created_at,
        )


class ApiKeyWithSecret(ApiKey):
    secret: str = Field(description="The key itself. Shown in this answer only: store it now.")


def _check_scopes(kind: KeyKind, scopes: list[str]) -> None:
    allowed = ALLOWED_SCOPES[kind]
    for scope in scopes:
        if scope not in allowed:
            raise InvalidRequest(
                f"A {kind.value} key cannot hold the '{scope}' scope; "
                f"allowed: {', '.join(sorted(allowed))}.",
                code="scope_not_allowed",
                param="scopes",
            )


def _scopes_of(*kinds: KeyKind) -> JsonDict:
    """The schema of the scopes ``kinds`` of key may hold."""
    scopes: list[JsonValue] = [*sorted(set[str]().union(*(ALLOWED_SCOPES[kind] for kind in kinds)))]
    return {"items": {"enum": scopes}}


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"kind": {"const": KeyKind.PUBLISHABLE.value}}},
            "then": {"properties": {"scopes": _scopes_of(KeyKind.PUBLISHABLE)}},
            "else": {"properties": {"scopes": _scopes_of(KeyKind.SECRET)}},
        },
    )
    name: Name
    kind: KeyKind
    mode: KeyMode
    scopes: list[str] | None = Field(
        default=None, max_length=50, description="Defaults to every scope the kind allows."
    )
    expires_at: FutureMoment | None = None


class ApiKeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    scopes: list[str] | None = Field(
        default=None,
        max_length=50,
        description="Only scopes the key's kind allows (else 400 scope_not_allowed).",
        json_schema_extra=_scopes_of(*KeyKind),
    )


class ApiKeyListQuery(ListQuery):
    kind: KeyKind | None = None
    mode: KeyMode | None = None


async def list_api_keys(call: Call) -> Page[ApiKey]:
    params = call.query_as(ApiKeyListQuery)
    query = call.tenant.query(ApiKeyRow)
    if params.kind:
        query = query.filter(kind=params.kind)
    if params.mode:
        query = query.filter(mode=params.mode)
    page = await paginate(query, params, ApiKey.of)
    pending = await pending_last_used(call.request.app.state.redis, [key.id for key in page.data])
    for key in page.data:
        if key.id in pending and (key.last_used_at is None or pending[key.id] > key.last_used_at):
            key.last_used_at = pending[key.id]
    return page


async def create_api_key(call: Call) -> ApiKeyWithSecret:
    body = call.body_as(ApiKeyCreate)
    scopes = (
        sorted(set(body.scopes)) if body.scopes is not None else sorted(ALLOWED_SCOPES[body.kind])
    )
    _check_scopes(body.kind, scopes)
    assert call.tenant.project is not None
    row, secret = await issue_api_key(
        call.tenant.project,
        name=body.name,
        kind=body.kind,
        mode=body.mode,
        pepper=call.settings.require_secret_key(),
        scopes=scopes,
        expires_at=body.expires_at,
    )
    await call.audit(
        "api_key.created",
        target_type="api_key",
        target_id=row.id,
        name=row.name,
        kind=row.kind.value,
        mode=row.mode.value,
        scopes=scopes,
    )
    return ApiKeyWithSecret(**ApiKey.of(row).model_dump(), secret=secret)


def _key(call: Call) -> ApiKeyRow:
    return call.row(ApiKeyRow, "api_key_id")


async def retrieve_api_key(call: Call) -> ApiKey:
    row = _key(call)
    pending = await pending_last_used(call.request.app.state.redis, [row.id])
    return ApiKey.of(row, pending.get(row.id))


async def update_api_key(call: Call) -> ApiKey:
    row = _key(call)
    body = call.body_as(ApiKeyUpdate)
    changes: dict[str, object] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.scopes is not None:
        if row.revoked_at is not None:
            raise InvalidRequest("A revoked key cannot be changed.", code="api_key_revoked")
        _check_scopes(row.kind, body.scopes)
        changes["scopes"] = sorted(set(body.scopes))
    if "scopes" in changes:
        await forget_cached_keys(call)  # before the write: see its docstring
    for name, value in changes.items():
        setattr(row, name, value)
    if changes:
        await row.save(update_fields=list(changes))
        await call.audit(
            "api_key.updated",
            target_type="api_key",
            target_id=row.id,
            changed=sorted(changes),
            scopes=row.scopes,
        )
    return ApiKey.of(row)


async def revoke_api_key(call: Call) -> ApiKey:
    row = _key(call)
    # Every time, a repeat too: it is how a revocation answered 503 after its commit is finished.
    await forget_cached_keys(call)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await row.save(update_fields=["revoked_at"])
        await call.audit("api_key.revoked", target_type="api_key", target_id=row.id, name=row.name)
    return ApiKey.of(row)


class CurrentApiKey(BaseModel):
    object: Literal["current_api_key"] = "current_api_key"
    id: str
    project_id: str
    organization_id: str
    kind: KeyKind
    mode: KeyMode
    scopes: list[str]
    expires_at: datetime | None


async def retrieve_current_api_key(call: Call) -> CurrentApiKey:
    key = call.key
    return CurrentApiKey(
        id=key.key_id,
        project_id=key.project_id,
        organization_id=key.organization_id,
        kind=key.kind,
        mode=key.mode,
        scopes=sorted(key.scopes),
        expires_at=key.expires_at,
    )


API_KEYS = "/v1/projects/{project_id}/api_keys"
API_KEY = API_KEYS + "/{api_key_id}"
operations = [
    Operation(
        "GET",
        API_KEYS,
        list_api_keys,
        "List a project's API keys",
        "API keys",
        permission=Permission.API_KEYS_READ,
        query=ApiKeyListQuery,
        response=Page[ApiKey],
    ),
    Operation(
        "POST",
        API_KEYS,
        create_api_key,
        "Create an API key (the secret is shown in this answer only)",
        "API keys",
        permission=Permission.API_KEYS_WRITE,
        body=ApiKeyCreate,
        response=ApiKeyWithSecret,
        status_code=201,
    ),
    Operation(
        "GET",
        API_KEY,
        retrieve_api_key,
        "Retrieve an API key",
        "API keys",
        permission=Permission.API_KEYS_READ,
        response=ApiKey,
    ),
    Operation(
        "PATCH",
        API_KEY,
        update_api_key,
        "Rename an API key or change its scopes",
        "API keys",
        permission=Permission.API_KEYS_WRITE,
        body=ApiKeyUpdate,
        response=ApiKey,
    ),
    Operation(
        "DELETE",
        API_KEY,
        revoke_api_key,
        "Revoke an API key (every API process refuses it from now on)",
        "API keys",
        permission=Permission.API_KEYS_WRITE,
        response=ApiKey,
    ),
    Operation(
        "GET",
        "/v1/api_key",
        retrieve_current_api_key,
        "The API key making this request: its project, kind, mode and scopes",
        "API keys",
        auth=Auth.API_KEY,
        response=CurrentApiKey,
    ),
]
