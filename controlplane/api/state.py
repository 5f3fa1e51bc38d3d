"""``/v1/state``: JSON values by key, per project and mode — what an app's widgets and Live
Activities read, and its server writes. How writes stay safe under concurrency and within the
plan is in ``controlplane/state.py``; this module is who may do what, and the HTTP around it.

Secret keys (servers) read and write every entry of their project and mode. Publishable keys
ship inside every copy of the app, so whoever holds one is the public: they read only entries
written with ``public: true`` — a private entry answers them exactly as a missing one does,
so its existence stays private too — and write (always public entries) only under the key
prefixes the project opened to apps (``state_public_write_prefixes`` on the project, set by
its admins), never over a private entry.

Keys under a reserved prefix (``controlplane.state.RESERVED_PREFIXES``) are Brik's to write:
``widget:{kind}`` is written by ``POST /v1/widgets/{kind}/reload`` (public, so the app's widget
reads it with the publishable key) and read here like any entry; ``activity:{id}`` is served
read-only from the activity itself.

Every entry carries a strong ETag (header and body). ``If-Match`` makes a PUT or DELETE
conditional on the version the client read (412 ``precondition_failed`` otherwise, with the
current ETag); ``If-None-Match: *`` makes a PUT create-only. PUT and DELETE honour
``Idempotency-Key``, so an SDK retrying a conditional write that did go through gets the first
answer back rather than a 412 against its own write.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from controlplane import state
from controlplane.api.pagination import Page
from controlplane.api.routing import Auth, Call, Operation
from controlplane.errors import InvalidRequest, NotFound, PermissionDenied
from controlplane.models import Activity, KeyKind
from controlplane.models import StateEntry as EntryRow
from controlplane.models.ids import is_well_formed_id
from controlplane.plans import limits_for
from controlplane.tenancy import state_key_schema
from controlplane.validation import WHOLE_NUMBER

Key = Annotated[str, Field(pattern=state.KEY_PATTERN, description=f"A key: {state.KEY_RULE}.")]


class StateEntry(BaseModel):
    object: Literal["state_entry"] = "state_entry"
    key: str
    value: Any = Field(description="The JSON value, as written.")
    public: bool = Field(description="Readable with the project's publishable keys.")
    etag: str = Field(
        description='Its ETag, quotes included (`"3f9c…"`): send it back as `If-Match`.'
    )
    version: int = Field(description="1 when written first, one more on every write.")
    size_bytes: int = Field(description="What it counts against the plan: key plus value.")
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: EntryRow) -> StateEntry:
        return cls(
            key=row.key, value=state.decode_value(row.value), public=row.public,
            etag=state.etag(row), version=row.version, size_bytes=row.size_bytes,
            expires_at=row.expires_at, created_at=row.created_at, updated_at=row.updated_at,
        )  # fmt: skip


class StateEntryWritten(StateEntry):
    created: bool = Field(description="True when this write created the entry.")


class StateDeleted(BaseModel):
    object: Literal["state_entry"] = "state_entry"
    key: str
    deleted: Literal[True] = True


class StateWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any = Field(
        description=f"Any JSON value, up to {state.MAX_VALUE_BYTES:,} bytes as compact JSON "
        "(UTF-8); larger is a 413 `value_too_large`."
    )
    ttl_seconds: Annotated[int, Field(ge=1, le=state.MAX_TTL_SECONDS), WHOLE_NUMBER] | None = Field(
        default=None,
        description="Expire this many seconds from now (invisible at once, then purged); "
        "without it the entry stays until deleted. A write replaces the TTL too.",
    )
    public: bool | None = Field(
        default=None,
        description="Readable with publishable keys. Default false for secret keys; what a "
        "publishable key writes is always public (false is a 400).",
    )


class StateListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: Key | None = Field(default=None, description="Only keys that start with this.")
    limit: int = Field(default=10, ge=1, le=100, description="Page size, 1 to 100.")
    starting_after: Key | None = Field(
        default=None,
        description="The last key of the previous page (it need not exist any more): keys "
        "come in ascending order.",
    )


def _space(call: Call) -> state.Namespace:
    project = call.tenant.project
    assert project is not None
    return state.Namespace(project.id, call.tenant.organization.id, call.key.mode)


def _key(call: Call, *, writing: bool) -> str:
    key = call.path_name("key")
    if not state.is_key(key):
        raise InvalidRequest(f"key: {state.KEY_RULE}.", code="parameter_invalid", param="key")
    if prefix := state.reserved_prefix(key, writing=writing):
        raise InvalidRequest(
            f"key: keys starting with '{prefix}' are reserved: {state.RESERVED_PREFIXES[prefix]}.",
            code="reserved_key",
            param="key",
        )
    return key


def _from_app(call: Call) -> bool:
    return call.key.kind is KeyKind.PUBLISHABLE


def _check_app_may_write(call: Call, key: str) -> None:
    project = call.tenant.project
    assert project is not None
    prefixes = project.state_public_write_prefixes or []
    if not any(key.startswith(prefix) for prefix in prefixes):
        opened = ", ".join(f"'{prefix}'" for prefix in prefixes) or "none"
        raise PermissionDenied(
            f"Publishable keys may write state only under the prefixes the project opens to "
            f"apps ({opened}), and '{key}' is under none of them. Write it from your server "
            "with a secret key, or add a prefix to the project's state_public_write_prefixes.",
            code="state_write_forbidden",
            param="key",
        )


def _conditions(call: Call) -> state.Conditions:
    headers = call.request.headers
    return state.Conditions.from_headers(headers.get("if-match"), headers.get("if-none-match"))


def _answer(model: StateEntry, row: EntryRow) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), headers={"ETag": state.etag(row)})


async def _activity_state(call: Call, key: str) -> JSONResponse:
    """``activity:{id}``: the activity's current content state, read-only. Its id is the
    capability: publishable keys read it too, as the app showing the activity must."""
    activity_id = key.removeprefix(state.ACTIVITY_PREFIX)
    query = call.tenant.query(Activity)
    row = await query.get_or_none(id=activity_id) if is_well_formed_id(activity_id) else None
    if row is None:
        raise state.missing_entry(key)
    value = state.encode_value(row.content_state)
    entry = StateEntry(
        key=key, value=row.content_state, public=True, etag=state.etag(row),
        version=row.version, size_bytes=len(key.encode()) + len(value.encode()),
        expires_at=None, created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip
    return JSONResponse(entry.model_dump(mode="json"), headers={"ETag": entry.etag})


async def retrieve_state(call: Call) -> JSONResponse:
    raw = call.path_name("key")
    if raw.startswith(state.ACTIVITY_PREFIX):
        return await _activity_state(call, raw)
    key = _key(call, writing=False)
    row = await state.read(_space(call), key, datetime.now(UTC))
    if _from_app(call) and (row is None or not row.public):
        raise NotFound(
            f"No public state entry '{key}' (publishable keys read only entries written "
            "with public: true).",
            param="key",
        )
    if row is None:
        raise state.missing_entry(key)
    return _answer(StateEntry.of(row), row)


async def list_state(call: Call) -> Page[StateEntry]:
    params = call.query_as(StateListQuery)
    rows, more = await state.page(
        _space(call), datetime.now(UTC), prefix=params.prefix,
        starting_after=params.starting_after, limit=params.limit, public_only=_from_app(call),
    )  # fmt: skip
    return Page[StateEntry](data=[StateEntry.of(row) for row in rows], has_more=more)


async def put_state(call: Call) -> JSONResponse:
    key = _key(call, writing=True)
    body = call.body_as(StateWrite)
    conditions = _conditions(call)
    text = state.storable_value(body.value)
    public = bool(body.public)
    if _from_app(call):
        _check_app_may_write(call, key)
        if body.public is False:
            raise InvalidRequest(
                "public: what a publishable key writes is public (every copy of the app "
                "holds the key), so public: false cannot be honoured; leave it out.",
                code="parameter_invalid",
                param="public",
            )
        public = True
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    limits = limits_for(call.tenant.organization.plan, call.settings)
    written = await state.write(
        _space(call), key, text, public=public, expires_at=expires_at, conditions=conditions,
        limit=limits.state_bytes, now=now, private_writable=not _from_app(call),
    )  # fmt: skip
    answer = StateEntryWritten(**StateEntry.of(written.entry).model_dump(), created=written.created)
    return _answer(answer, written.entry)


async def delete_state(call: Call) -> StateDeleted:
    key = _key(call, writing=True)
    conditions = _conditions(call)
    if _from_app(call):
        _check_app_may_write(call, key)
    await state.delete(
        _space(call), key, conditions=conditions, now=datetime.now(UTC),
        private_writable=not _from_app(call),
    )  # fmt: skip
    return StateDeleted(key=key)


_ETAG = {"ETag": "The entry's ETag (strong, quoted), as in `etag`: send it back as `If-Match`"}
_PRECONDITION = (
    "`If-Match` names an ETag the entry no longer has (or the entry is gone), or "
    "`If-None-Match` matches it (`*`: it exists): `precondition_failed`, with the current "
    "`ETag` header when there is an entry"
)
_CONDITIONAL = (
    ' Conditional with `If-Match: "<etag>"` (or `*`: any existing entry) — 412 '
    "`precondition_failed` when the entry changed meanwhile."
)
_WRITABLE = {"key": state_key_schema(writing=True)}  # no reserved prefix at all
KEY = Auth.API_KEY
ENTRY = "/v1/state/{key}"
operations = [
    Operation("GET", "/v1/state", list_state, "List state entries by key, optionally under a "
              "prefix", "State", auth=KEY, scope="state:read", query=StateListQuery,
              response=Page[StateEntry],
              description="Entries in ascending key order; expired ones are never listed. "
              "Publishable keys list public entries only."),
    Operation("GET", ENTRY, retrieve_state, "Read a state entry (with its ETag)", "State",
              auth=KEY, scope="state:read", response=StateEntry, response_headers=_ETAG,
              description="The `ETag` header is the entry's `etag`. An expired entry is a 404 "
              "at once. Publishable keys read public entries only (a private one is a 404, as "
              "if missing). `activity:{id}` is a Live Activity's current content state "
              "(read-only; publishable keys read it too: the id is unguessable); "
              "`widget:{kind}` is a widget's data, written by `POST /v1/widgets/{kind}/reload` "
              "(public: publishable keys read it)."),
    Operation("PUT", ENTRY, put_state, "Create or replace a state entry", "State", auth=KEY,
              scope="state:write", body=StateWrite, response=StateEntryWritten,
              idempotent=True, errors={412: _PRECONDITION}, response_headers=_ETAG,
              description="Replaces value, TTL and `public` together; answers with the new "
              "`ETag`." + _CONDITIONAL + " `If-None-Match: *` creates only. Counted against "
              "the plan's state bytes: a write that does not fit is 429 "
              "`state_quota_exceeded` and changes nothing. Publishable keys write only under "
              "the project's `state_public_write_prefixes` (403 `state_write_forbidden`) and "
              "never over a private entry (403 `state_entry_private`). Keys starting with "
              "`activity:` or `widget:` are reserved (400 `reserved_key`): Brik writes them.",
              path_schemas=_WRITABLE),
    Operation("DELETE", ENTRY, delete_state, "Delete a state entry", "State", auth=KEY,
              scope="state:write", response=StateDeleted, idempotent=True,
              errors={412: _PRECONDITION}, path_schemas=_WRITABLE,
              description="Gives its bytes back to the plan." + _CONDITIONAL + " Publishable "
              "keys and reserved keys as for PUT."),
]  # fmt: skip
