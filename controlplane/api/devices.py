"""``/v1/devices``: where a project's pushes go. Publishable keys may register devices (that is
what they are for); reading needs a secret key's ``devices:read``, and deleting a device by id
a secret key itself — a publishable key ships inside every copy of the app, so whoever holds
it could otherwise delete every device of the project. An app that wants to stop its own
pushes calls ``POST /v1/devices/unregister`` with its token: that reaches only the device the
token belongs to, found by the same keyed hash as registration, so proving the token is the
permission.

Registration is an upsert by token: an app calls it on every launch with the token it has,
and the same device row is updated (user, tags, its Live Activity, push-to-start and widget
push tokens) — and reactivated if a provider had marked it invalid, since the app just vouched
for it again. The per-purpose tokens are iOS's: ``live_activity_token`` and
``push_to_start_token`` (ActivityKit), ``widget_push_token`` (WidgetKit's ``WidgetPushHandler``,
iOS 26+); each is stored encrypted, and one a provider refuses is dropped alone.

While the secret key rotates (``controlplane/auth/peppers.py``), a token is looked up by its
hash under every key of the ring, so a device registered under the old key is found, updated
and unregistered as before; registering moves it to the current key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict
from tortoise.queryset import QuerySet

from controlplane.api.fields import Deleted
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.pushes import DeliveryListQuery, DeliveryOut
from controlplane.api.routing import Auth, Call, Operation
from controlplane.auth.peppers import PepperRing
from controlplane.errors import InvalidRequest, NotFound
from controlplane.models import Delivery, DeviceStatus, DeviceTag, KeyMode, Platform
from controlplane.models import Device as DeviceRow
from controlplane.models.ids import new_device_id
from controlplane.validation import field_error

APNS_TOKEN_PATTERN = r"^[0-9a-fA-F]{64,200}$"
FCM_TOKEN_PATTERN = r"^[A-Za-z0-9_:\-.]{20,4096}$"
_APNS_TOKEN = re.compile(APNS_TOKEN_PATTERN.strip("^$"))
_FCM_TOKEN = re.compile(FCM_TOKEN_PATTERN.strip("^$"))
# The per-platform rules of DeviceRegistration, for the OpenAPI document (its validator is
# what enforces them).
_TOKENS_BY_PLATFORM: JsonDict = {
    "if": {"properties": {"platform": {"const": Platform.IOS.value}}},
    "then": {
        "properties": {
            "token": {"pattern": APNS_TOKEN_PATTERN},
            "live_activity_token": {"pattern": APNS_TOKEN_PATTERN},
            "push_to_start_token": {"pattern": APNS_TOKEN_PATTERN},
            "widget_push_token": {"pattern": APNS_TOKEN_PATTERN},
        }
    },
    "else": {
        "properties": {
            "token": {"pattern": FCM_TOKEN_PATTERN},
            "live_activity_token": {"type": "null"},
            "push_to_start_token": {"type": "null"},
            "widget_push_token": {"type": "null"},
        }
    },
}
# The iOS-only tokens a registration may carry: field → (column, what they are for).
IOS_TOKENS = {
    "live_activity_token": ("live_activity_token_encrypted", "Live Activities are iOS only"),
    "push_to_start_token": ("push_to_start_token_encrypted", "Live Activities are iOS only"),
    "widget_push_token": (
        "widget_push_token_encrypted",
        "widget push tokens are iOS only (Android widgets are refreshed through the device's "
        "FCM token)",
    ),
}

Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-:.]{1,64}$")]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Device(BaseModel):
    object: Literal["device"] = "device"
    id: str
    platform: Platform
    mode: KeyMode
    token: str = Field(description="Redacted: the last four characters.")
    user_id: str | None
    tags: list[str]
    has_live_activity_token: bool
    has_push_to_start_token: bool
    has_widget_push_token: bool
    status: DeviceStatus
    invalid_reason: str | None
    invalidated_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: DeviceRow) -> Device:
        return cls(
            id=row.id, platform=row.platform, mode=row.mode, token=f"…{row.token_last_four}",
            user_id=row.user_id, tags=row.tags,
            has_live_activity_token=row.live_activity_token_encrypted is not None,
            has_push_to_start_token=row.push_to_start_token_encrypted is not None,
            has_widget_push_token=row.widget_push_token_encrypted is not None,
            status=row.status, invalid_reason=row.invalid_reason,
            invalidated_at=row.invalidated_at, created_at=row.created_at,
            updated_at=row.updated_at,
        )  # fmt: skip


class DeviceWithStatus(Device):
    created: bool = Field(description="True when this call registered a new device.")


def _check_device_token(platform: Platform, token: str) -> None:
    """Refuse (naming ``token``) a device token that cannot be one of ``platform``'s."""
    if platform is Platform.IOS and not _APNS_TOKEN.fullmatch(token):
        raise field_error("token", "iOS device tokens are 64 to 200 hexadecimal characters")
    if platform is Platform.ANDROID and not _FCM_TOKEN.fullmatch(token):
        raise field_error("token", "not an FCM registration token")


class DeviceRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [_TOKENS_BY_PLATFORM]})
    token: str = Field(
        max_length=4096,
        description="iOS: the APNs device token, 64 to 200 hex digits. Android: the FCM "
        "registration token.",
    )
    platform: Platform
    user_id: UserId | None = Field(default=None, description="Your own id for the user.")
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    live_activity_token: str | None = Field(
        default=None, max_length=200, description="iOS only: a Live Activity's APNs token."
    )
    push_to_start_token: str | None = Field(
        default=None, max_length=200, description="iOS only: the push-to-start APNs token."
    )
    widget_push_token: str | None = Field(
        default=None,
        max_length=200,
        description="iOS 26+ only: the app's WidgetKit push token (`WidgetPushInfo.token`, "
        "from its `WidgetPushHandler`), hex-encoded; widget pushes go to it.",
    )

    @model_validator(mode="after")
    def _tokens_fit_the_platform(self) -> DeviceRegistration:
        _check_device_token(self.platform, self.token)
        for name, (_, ios_only) in IOS_TOKENS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if self.platform is not Platform.IOS:
                raise field_error(name, ios_only)
            if not _APNS_TOKEN.fullmatch(value):
                raise field_error(name, "APNs tokens are 64 to 200 hexadecimal characters")
        return self


class DeviceToken(BaseModel):
    """A raw device token and its platform (a push batch's ``device_token``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"allOf": [{
            "if": {"properties": {"platform": {"const": Platform.IOS.value}}},
            "then": {"properties": {"token": {"pattern": APNS_TOKEN_PATTERN}}},
            "else": {"properties": {"token": {"pattern": FCM_TOKEN_PATTERN}}},
        }]},
    )  # fmt: skip
    platform: Platform
    token: str = Field(
        max_length=4096,
        description="iOS: the APNs device token, 64 to 200 hex digits. Android: the FCM "
        "registration token.",
    )

    @model_validator(mode="after")
    def _fits_the_platform(self) -> DeviceToken:
        _check_device_token(self.platform, self.token)
        return self


class DeviceListQuery(ListQuery):
    user_id: UserId | None = None
    tag: Tag | None = None
    platform: Platform | None = None
    status: DeviceStatus | None = None


def _canonical(token: str, platform: Platform) -> str:
    """The token as it is hashed and stored: iOS tokens are case-insensitive hex."""
    return token.lower() if platform is Platform.IOS else token


async def _find_by_token(query: QuerySet[DeviceRow], hashes: list[str]) -> DeviceRow | None:
    """The device ``hashes`` (the token's, under every secret key: current first) find.

    Only rows of one token can match, and two only if a rotation's rollout was done out of
    order (docs/operations.md): then the one under the current key.
    """
    rows = await query.filter(token_hash__in=hashes).order_by("created_at")
    return next((row for row in rows if row.token_hash == hashes[0]), rows[0] if rows else None)


async def _one_registration_at_a_time(hashes: list[str]) -> None:
    """Serialise the first registration of a token across secret keys, until commit.

    Inside one secret key the unique (project, mode, token hash) does it. While the key
    rotates, processes whose current keys differ (the rollout that promotes the new key)
    would insert the same new token under two hashes, both unique: so each takes a
    transaction-level advisory lock for every hash of the ring, in one order, and the second
    waits for the first's row. SQLite has no such locks, and one writer at a time anyway.
    """
    client = DeviceRow._meta.db  # the registration's transaction
    if len(hashes) < 2 or client.capabilities.dialect != "postgres":
        return
    for token_hash in sorted(hashes):
        # 64 bits of the hash, as PostgreSQL's signed bigint lock key.
        key = int(token_hash[:16], 16) - (1 << 63)
        await client.execute_query("SELECT pg_advisory_xact_lock($1)", [key])


async def register_device(call: Call) -> DeviceWithStatus:
    body = call.body_as(DeviceRegistration)
    keyring = call.keyring
    peppers = PepperRing.from_settings(call.settings)
    token = _canonical(body.token, body.platform)
    hashes = peppers.hashes(token)

    def encrypt(value: str | None) -> str | None:
        return None if value is None else keyring.encrypt(value.lower().encode())

    fields: dict[str, Any] = {
        "user_id": body.user_id,
        "tags": sorted(set(body.tags)),
        **{column: encrypt(getattr(body, name)) for name, (column, _) in IOS_TOKENS.items()},
        "status": DeviceStatus.ACTIVE,
        "invalid_reason": None,
        "invalidated_at": None,
        # Found under a previous secret key, the device moves to the current one.
        "token_hash": hashes[0],
        "pepper_id": peppers.current.id,
    }
    mine = call.tenant.query(DeviceRow).select_for_update()
    row = await _find_by_token(mine, hashes)
    if row is None and peppers.rotating:
        await _one_registration_at_a_time(hashes)
        row = await _find_by_token(mine, hashes)
    created = False
    while row is None:
        # Insert unless another registration of this token got there first (an app retrying,
        # or launched on several threads): ON CONFLICT DO NOTHING waits for that one's commit
        # instead of failing on the unique (project, mode, token hash), and the row is then
        # locked and updated like any existing one (or inserted again, had it been deleted
        # meanwhile). The id says whose insert it was.
        candidate = DeviceRow(
            project=call.tenant.project, mode=call.key.mode, platform=body.platform,
            token_encrypted=keyring.encrypt(token.encode()), token_last_four=token[-4:],
            **fields,
        )  # fmt: skip
        await DeviceRow.bulk_create([candidate], ignore_conflicts=True)
        row = await _find_by_token(mine, hashes)
        created = row is not None and row.id == candidate.id
    if row.platform is not body.platform:
        raise InvalidRequest(
            f"This token is registered as an {row.platform.value} device.",
            code="platform_mismatch", param="platform",
        )  # fmt: skip
    if not created:
        for name, value in fields.items():
            setattr(row, name, value)
        await row.save(update_fields=[*fields, "updated_at"])
        await DeviceTag.filter(device_id=row.id).delete()
    await DeviceTag.bulk_create([DeviceTag(device_id=row.id, tag=tag) for tag in row.tags])
    return DeviceWithStatus(**Device.of(row).model_dump(), created=created)


# What a push needs to know of a device to address it (devices_of_tokens' rows).
DEVICE_FACTS = ("id", "platform", "status", "user_id", "tags", "token_hash",
                *(column for name, (column, _) in IOS_TOKENS.items()))  # fmt: skip


async def devices_of_tokens(
    call: Call, tokens: list[DeviceToken]
) -> list[dict[str, Any] | InvalidRequest]:
    """The device of each raw token in the key's project and mode (its :data:`DEVICE_FACTS`),
    registered first if it is new — or the error of a token registered on the other platform.

    In bulk, inside the caller's transaction: one lookup by keyed hash (under every secret key
    of the ring, as registration looks up), one insert of the new ones (``ON CONFLICT DO
    NOTHING``: a concurrent registration of the same token wins and is used), one more lookup
    for them. A device found is used as it is — an invalid one stays invalid: a push is not
    the app vouching for its token again, as registering is.
    """
    if not tokens:
        return []
    peppers = PepperRing.from_settings(call.settings)
    canonical = [_canonical(token.token, token.platform) for token in tokens]
    hashes = {plain: peppers.hashes(plain) for plain in canonical}
    mine = call.tenant.query(DeviceRow)

    async def lookup(plains: list[str]) -> dict[str, dict[str, Any]]:
        wanted = [h for plain in plains for h in hashes[plain]]
        rows = await mine.filter(token_hash__in=wanted).order_by("created_at").values(
            *DEVICE_FACTS
        )
        by_hash = {row["token_hash"]: row for row in rows}
        found = {}
        for plain in plains:
            # Under the current key first, as _find_by_token prefers.
            row = next((by_hash[h] for h in hashes[plain] if h in by_hash), None)
            if row is not None:
                found[plain] = row
        return found

    found = await lookup(list(hashes))
    new = {plain: token.platform for plain, token in zip(canonical, tokens, strict=True)
           if plain not in found}  # fmt: skip
    if new:
        if peppers.rotating:
            for plain in sorted(new):
                await _one_registration_at_a_time(hashes[plain])
            found.update(await lookup(list(new)))
            new = {plain: platform for plain, platform in new.items() if plain not in found}
        inserted = await _insert_new(call, peppers, {p: hashes[p][0] for p in new}, new)
        found.update(inserted)
        if len(inserted) < len(new):  # registered meanwhile by a concurrent request
            found.update(await lookup([plain for plain in new if plain not in inserted]))
    results: list[dict[str, Any] | InvalidRequest] = []
    for plain, token in zip(canonical, tokens, strict=True):
        row = found.get(plain)
        if row is None:  # registered by a concurrent request, and deleted since
            results.append(InvalidRequest(
                "This token's device was deleted while it was being registered; send again.",
                code="device_deleted", param="token",
            ))  # fmt: skip
        elif row["platform"] != token.platform:
            results.append(InvalidRequest(
                f"This token is registered as an {row['platform']} device.",
                code="platform_mismatch", param="platform",
            ))  # fmt: skip
        else:
            results.append(row)
    return results


_INSERT_NEW = f"""
INSERT INTO devices (id, project_id, mode, platform, token_hash, pepper_id, token_encrypted,
                     token_last_four, tags, status, created_at, updated_at)
SELECT row.id, $1, $2, row.platform, row.token_hash, $3, row.token_encrypted, row.last_four,
       '[]'::jsonb, 'active', $4, $4
FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
    AS row(id, platform, token_hash, token_encrypted, last_four)
ON CONFLICT (project_id, mode, token_hash) DO NOTHING
RETURNING {", ".join(DEVICE_FACTS)}
"""


async def _insert_new(
    call: Call, peppers: PepperRing, token_hashes: dict[str, str], platforms: dict[str, Platform]
) -> dict[str, dict[str, Any]]:
    """Insert a device for each new token (plain → its hash under the current key), unless a
    concurrent registration did first: those inserted here, by token."""
    keyring = call.keyring
    plains = list(token_hashes)
    encrypted = [keyring.encrypt(plain.encode()) for plain in plains]
    client = DeviceRow._meta.db
    if client.capabilities.dialect == "postgres":
        rows = await client.execute_query_dict(_INSERT_NEW, [
            call.tenant.project.id, call.key.mode.value,  # type: ignore[union-attr]
            peppers.current.id, datetime.now(UTC), [new_device_id() for _ in plains],
            [platforms[plain].value for plain in plains], [token_hashes[p] for p in plains],
            encrypted, [plain[-4:] for plain in plains],
        ])  # fmt: skip
        by_hash = {row["token_hash"]: row for row in rows}
        return {p: by_hash[token_hashes[p]] for p in plains if token_hashes[p] in by_hash}
    before = set(await call.tenant.query(DeviceRow).filter(
        token_hash__in=list(token_hashes.values())).values_list("id", flat=True))  # fmt: skip
    await DeviceRow.bulk_create([
        DeviceRow(
            project=call.tenant.project, mode=call.key.mode, platform=platforms[plain],
            token_hash=token_hashes[plain], pepper_id=peppers.current.id,
            token_encrypted=secret, token_last_four=plain[-4:], tags=[],
        )
        for plain, secret in zip(plains, encrypted, strict=True)
    ], ignore_conflicts=True)  # fmt: skip
    rows = await call.tenant.query(DeviceRow).filter(
        token_hash__in=list(token_hashes.values())).values(*DEVICE_FACTS)  # fmt: skip
    by_hash = {row["token_hash"]: row for row in rows if row["id"] not in before}
    return {p: by_hash[token_hashes[p]] for p in plains if token_hashes[p] in by_hash}


async def list_devices(call: Call) -> Page[Device]:
    params = call.query_as(DeviceListQuery)
    query = call.tenant.query(DeviceRow)
    if params.user_id is not None:
        query = query.filter(user_id=params.user_id)
    if params.platform is not None:
        query = query.filter(platform=params.platform)
    if params.status is not None:
        query = query.filter(status=params.status)
    if params.tag is not None:
        query = query.filter(tag_rows__tag=params.tag)
    return await paginate(query, params, Device.of)


async def retrieve_device(call: Call) -> Device:
    return Device.of(call.row(DeviceRow, "device_id"))


async def list_device_deliveries(call: Call) -> Page[DeliveryOut]:
    """The deliveries to one device, newest first: what it was sent and what became of it."""
    params = call.query_as(DeliveryListQuery)
    query = Delivery.filter(device_id=call.row(DeviceRow, "device_id").id)
    if params.status is not None:
        query = query.filter(status=params.status)
    return await paginate(query, params, DeliveryOut.of)


async def delete_device(call: Call) -> Deleted:
    row = call.row(DeviceRow, "device_id")
    await row.delete()
    return Deleted(object="device", id=row.id)


class DeviceUnregistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=4096, description="The token it registered.")
    platform: Platform


async def unregister_device(call: Call) -> Deleted:
    body = call.body_as(DeviceUnregistration)
    hashes = PepperRing.from_settings(call.settings).hashes(_canonical(body.token, body.platform))
    row = await _find_by_token(call.tenant.query(DeviceRow).filter(platform=body.platform), hashes)
    if row is None:
        raise NotFound("No device of this project is registered with this token.", param="token")
    await row.delete()
    return Deleted(object="device", id=row.id)


KEY = Auth.API_KEY
operations = [
    Operation("POST", "/v1/devices", register_device,
              "Register a device, or update the one with this token", "Devices", auth=KEY,
              scope="devices:write", body=DeviceRegistration, response=DeviceWithStatus),
    Operation("GET", "/v1/devices", list_devices, "List devices, with filters", "Devices",
              auth=KEY, scope="devices:read", query=DeviceListQuery, response=Page[Device]),
    Operation("POST", "/v1/devices/unregister", unregister_device,
              "Unregister the device with this token (an app signing out)", "Devices",
              auth=KEY, scope="devices:write", body=DeviceUnregistration, response=Deleted,
              description="For apps: publishable keys may call it, since it reaches only the "
              "device whose token the caller sends.",
              errors={404: "No device of this project is registered with this token"}),
    Operation("GET", "/v1/devices/{device_id}", retrieve_device, "Retrieve a device",
              "Devices", auth=KEY, scope="devices:read", response=Device),
    Operation("GET", "/v1/devices/{device_id}/deliveries", list_device_deliveries,
              "A device's deliveries, newest first", "Devices", auth=KEY, scope="pushes:read",
              query=DeliveryListQuery, response=Page[DeliveryOut]),
    Operation("DELETE", "/v1/devices/{device_id}", delete_device, "Delete a device",
              "Devices", auth=KEY, scope="devices:write", secret_key_only=True,
              response=Deleted, description="Secret keys only (publishable keys ship inside "
              "apps); an app unregisters itself with POST /v1/devices/unregister."),
]  # fmt: skip
