"""``/v1/webhook_endpoints``: where a project's events go, and how their deliveries went.

Secret keys with ``webhooks:write`` / ``webhooks:read`` (the dashboard reaches the same
operations for a member: developers and above change, viewers read). An endpoint belongs to
the key's mode — test-mode events (pushes sent with test keys …) go to test-mode endpoints.

The signing secret is in the answer to the create call and to each rotation, and nowhere else:
the database keeps it encrypted by the key ring. (So create is not replayed by an
``Idempotency-Key``: the replay would have to keep the secret in plaintext.) A URL whose host is
a refused address (``controlplane/webhook_destinations.py``) is a 400 at once; one whose name
resolves there is refused by the worker at send time, which the delivery log then says.

Everything else about sending — retries, order, disabling — is ``workers/tasks/webhooks.py``'s
and ``controlplane/webhook_endpoints.py``'s; docs/webhooks.md tells it to tenants.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controlplane.api.fields import Deleted
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Auth, Call, Operation
from controlplane.errors import InvalidRequest, NotFound
from controlplane.models import (
    EndpointType,
    KeyMode,
    WebhookDeliveryStatus,
    WebhookEvent,
)
from controlplane.models import WebhookDelivery as DeliveryRow
from controlplane.models import WebhookEndpoint as EndpointRow
from controlplane.webhook_destinations import MAX_URL_LENGTH, URL_PATTERN, check_url
from controlplane.webhook_endpoints import MAX_ENDPOINTS_PER_PROJECT, disable, display_url
from controlplane.webhook_events import (
    EVENT_TYPES,
    FAMILIES,
    MAX_FILTERS,
    TEST_EVENT,
    check_filters,
    endpoint_test_data,
    envelope,
)
from controlplane.webhook_signatures import new_secret

_FILTERS = sorted([*EVENT_TYPES, *(f"{family}.*" for family in FAMILIES), "*"])
MAX_OVERLAP_HOURS = 7 * 24


class EndpointHealth(BaseModel):
    consecutive_failures: int = Field(description="Failed attempts since the last success.")
    failing_since: datetime | None = Field(description="The first of those failures.")
    last_success_at: datetime | None
    last_failure_at: datetime | None


class WebhookEndpoint(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    mode: KeyMode
    type: EndpointType
    url: str = Field(description="Slack and Discord URLs are credentials: shown cut short.")
    description: str | None
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why Brik disabled it (sustained failure), or why you did: null if enabled."
    )
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the secret before the last rotation signs too."
    )
    health: EndpointHealth
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: EndpointRow) -> WebhookEndpoint:
        now = datetime.now(UTC)
        overlap = row.previous_secret_expires_at
        return cls(
            id=row.id, mode=row.mode, type=row.type, url=row.url_display,
            description=row.description, events=list(row.events), enabled=row.enabled,
            disabled_reason=row.disabled_reason, disabled_at=row.disabled_at,
            previous_secret_expires_at=overlap if overlap is not None and overlap > now else None,
            health=EndpointHealth(
                consecutive_failures=row.consecutive_failures, failing_since=row.failing_since,
                last_success_at=row.last_success_at, last_failure_at=row.last_failure_at,
            ),
            created_at=row.created_at, updated_at=row.updated_at,
        )  # fmt: skip


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = Field(
        description="The signing secret (whsec_…). Shown in this answer only: store it now."
    )


Url = Annotated[
    str,
    Field(
        min_length=8, max_length=MAX_URL_LENGTH,
        description="Where events are POSTed: http:// or https://, a public address unless the "
        "operator allows private networks. For `slack` and `discord`, the channel's incoming "
        "webhook URL.",
        json_schema_extra={"pattern": URL_PATTERN},
    ),
]  # fmt: skip
Events = Annotated[
    list[str],
    Field(
        min_length=1, max_length=MAX_FILTERS,
        description="Event types to send: names, families (`billing.*`) or `*` for all.",
        json_schema_extra={"items": {"enum": _FILTERS}},
    ),
]  # fmt: skip
Description = Annotated[str, Field(max_length=500)]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url
    events: Events
    type: EndpointType = Field(
        default=EndpointType.WEBHOOK,
        description="`webhook`: Brik's signed JSON event; `slack` / `discord`: a message for "
        "people, in that service's incoming-webhook format.",
    )
    enabled: bool = True
    description: Description | None = None


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url | None = None
    events: Events | None = None
    enabled: bool | None = Field(
        default=None, description="false stops sending (pending deliveries end failed); true "
        "starts again with a clean health record."
    )  # fmt: skip
    description: Description | None = None


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_hours: int = Field(
        default=24, ge=0, le=MAX_OVERLAP_HOURS,
        description="How long the current secret keeps signing beside the new one (0: stop "
        "now).",
    )  # fmt: skip


class WebhookDelivery(BaseModel):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    trigger: Literal["event", "test", "resend"]
    status: WebhookDeliveryStatus = Field(
        description="waiting (behind an earlier event about the same object), queued, "
        "sending, succeeded or failed."
    )
    attempts: int
    next_attempt_at: datetime | None
    response_status: int | None = Field(description="The last attempt's HTTP status.")
    response_excerpt: str | None = Field(
        description="The start of the last answer's body (at most 1,000 characters)."
    )
    latency_ms: int | None = Field(description="The last attempt, connect to last byte read.")
    error: str | None = Field(description="Why the last attempt failed, in words.")
    created_at: datetime
    last_attempt_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, row: DeliveryRow) -> WebhookDelivery:
        event: WebhookEvent = row.event
        next_at = row.next_attempt_at if row.status is WebhookDeliveryStatus.QUEUED else None
        return cls(
            id=row.id, endpoint_id=row.endpoint_id,  # type: ignore[attr-defined]
            event_id=event.public_id, event_type=event.type, trigger=row.trigger,  # type: ignore[arg-type]
            status=row.status, attempts=row.attempts, next_attempt_at=next_at,
            response_status=row.response_status, response_excerpt=row.response_excerpt,
            latency_ms=row.latency_ms, error=row.error, created_at=row.created_at,
            last_attempt_at=row.last_attempt_at, completed_at=row.completed_at,
        )  # fmt: skip


class WebhookDeliveryDetail(WebhookDelivery):
    event: dict[str, Any] = Field(
        description="The event as Brik's JSON endpoints receive it (Slack and Discord get it "
        "told in words)."
    )


class DeliveryListQuery(ListQuery):
    status: WebhookDeliveryStatus | None = None


def _endpoint(call: Call) -> EndpointRow:
    return call.row(EndpointRow, "webhook_endpoint_id")


async def _ensure_room(call: Call) -> None:
    if await call.tenant.query(EndpointRow).count() >= MAX_ENDPOINTS_PER_PROJECT:
        raise InvalidRequest(
            f"A project has at most {MAX_ENDPOINTS_PER_PROJECT} webhook endpoints per mode; "
            "delete one first (one endpoint may take many event types).",
            code="too_many_webhook_endpoints",
        )


def _checked_url(call: Call, url: str) -> str:
    check_url(url, allow_private=call.settings.webhook_allow_private_networks)
    return url


async def create_webhook_endpoint(call: Call) -> WebhookEndpointWithSecret:
    body = call.body_as(EndpointCreate)
    url = _checked_url(call, body.url)
    events = check_filters(body.events)
    await _ensure_room(call)
    secret = new_secret()
    keyring = call.keyring
    assert call.tenant.project is not None
    assert call.tenant.mode is not None
    row = await EndpointRow.create(
        project=call.tenant.project, mode=call.tenant.mode, type=body.type,
        url_encrypted=keyring.encrypt(url.encode()), url_display=display_url(body.type, url),
        description=body.description, events=events, enabled=body.enabled,
        disabled_reason=None if body.enabled else "disabled when created",
        disabled_at=None if body.enabled else datetime.now(UTC),
        secret_encrypted=keyring.encrypt(secret.encode()),
    )  # fmt: skip
    await call.audit(
        "webhook_endpoint.created", target_type="webhook_endpoint", target_id=row.id,
        project_id=row.project_id, mode=row.mode.value, type=row.type.value,  # type: ignore[attr-defined]
        url=row.url_display, events=events,
    )  # fmt: skip
    return WebhookEndpointWithSecret(**WebhookEndpoint.of(row).model_dump(), secret=secret)


async def list_webhook_endpoints(call: Call) -> Page[WebhookEndpoint]:
    params = call.query_as(ListQuery)
    return await paginate(call.tenant.query(EndpointRow), params, WebhookEndpoint.of)


async def retrieve_webhook_endpoint(call: Call) -> WebhookEndpoint:
    return WebhookEndpoint.of(_endpoint(call))


async def update_webhook_endpoint(call: Call) -> WebhookEndpoint:
    row = _endpoint(call)
    body = call.body_as(EndpointUpdate)
    now = datetime.now(UTC)
    changed: list[str] = []
    if body.url is not None:
        url = _checked_url(call, body.url)
        row.url_encrypted = call.keyring.encrypt(url.encode())
        row.url_display = display_url(row.type, url)
        changed += ["url_encrypted", "url_display"]
    if body.events is not None:
        row.events = check_filters(body.events)
        changed.append("events")
    if "description" in body.model_fields_set:
        row.description = body.description
        changed.append("description")
    if body.enabled is True and not row.enabled:
        row.enabled, row.disabled_reason, row.disabled_at = True, None, None
        row.consecutive_failures, row.failing_since = 0, None
        changed += ["enabled", "disabled_reason", "disabled_at", "consecutive_failures",
                    "failing_since"]  # fmt: skip
    if changed:
        await row.save(update_fields=[*changed, "updated_at"])
    if body.enabled is False and row.enabled:
        await disable(row, "disabled through the API", now)
        changed.append("enabled")
    if changed:
        await call.audit(
            "webhook_endpoint.updated", target_type="webhook_endpoint", target_id=row.id,
            changed=sorted({name.removesuffix("_encrypted").removesuffix("_display")
                            for name in changed} - {"disabled_reason", "disabled_at",
                                                    "consecutive_failures", "failing_since"}),
            url=row.url_display, events=list(row.events), enabled=row.enabled,
        )  # fmt: skip
    return WebhookEndpoint.of(row)


async def delete_webhook_endpoint(call: Call) -> Deleted:
    row = _endpoint(call)
    await row.delete()
    await call.audit("webhook_endpoint.deleted", target_type="webhook_endpoint", target_id=row.id,
                     url=row.url_display)  # fmt: skip
    return Deleted(object="webhook_endpoint", id=row.id)


async def rotate_webhook_secret(call: Call) -> WebhookEndpointWithSecret:
    row = _endpoint(call)
    body = call.body_as(SecretRotation)
    now = datetime.now(UTC)
    secret = new_secret()
    if body.overlap_hours:
        row.previous_secret_encrypted = row.secret_encrypted
        row.previous_secret_expires_at = now + timedelta(hours=body.overlap_hours)
    else:
        row.previous_secret_encrypted = None  # type: ignore[assignment]
        row.previous_secret_expires_at = None
    row.secret_encrypted = call.keyring.encrypt(secret.encode())
    await row.save(update_fields=["secret_encrypted", "previous_secret_encrypted",
                                  "previous_secret_expires_at", "updated_at"])  # fmt: skip
    await call.audit("webhook_endpoint.secret_rotated", target_type="webhook_endpoint",
                     target_id=row.id, overlap_hours=body.overlap_hours)  # fmt: skip
    return WebhookEndpointWithSecret(**WebhookEndpoint.of(row).model_dump(), secret=secret)


def _require_enabled(row: EndpointRow) -> None:
    if not row.enabled:
        raise InvalidRequest(
            'This endpoint is disabled: enable it first (PATCH with {"enabled": true}).',
            code="webhook_endpoint_disabled",
        )


async def _queue_delivery(row: EndpointRow, event: WebhookEvent, trigger: str) -> DeliveryRow:
    """A delivery of ``event`` to ``row`` outside any line (asked for by hand: sent at once)."""
    delivery = await DeliveryRow.create(
        project_id=row.project_id, mode=row.mode, endpoint=row, event=event,  # type: ignore[attr-defined]
        trigger=trigger, status=WebhookDeliveryStatus.QUEUED,
    )  # fmt: skip
    delivery.event = event
    return delivery


async def send_webhook_test_event(call: Call) -> WebhookDelivery:
    row = _endpoint(call)
    _require_enabled(row)
    event = await WebhookEvent.create(
        project_id=row.project_id, mode=row.mode, type=TEST_EVENT,  # type: ignore[attr-defined]
        data=endpoint_test_data(row.id),
    )  # fmt: skip
    return WebhookDelivery.of(await _queue_delivery(row, event, "test"))


def _delivery(call: Call) -> DeliveryRow:
    row = _endpoint(call)
    delivery = call.row(DeliveryRow, "webhook_delivery_id")
    if delivery.endpoint_id != row.id:  # type: ignore[attr-defined]
        raise NotFound(
            f"No such delivery of this endpoint: '{delivery.id}'", param="webhook_delivery_id"
        )
    return delivery


async def list_webhook_deliveries(call: Call) -> Page[WebhookDelivery]:
    params = call.query_as(DeliveryListQuery)
    query = DeliveryRow.filter(endpoint_id=_endpoint(call).id).select_related("event")
    if params.status is not None:
        query = query.filter(status=params.status)
    return await paginate(query, params, WebhookDelivery.of)


async def retrieve_webhook_delivery(call: Call) -> WebhookDeliveryDetail:
    delivery = _delivery(call)
    await delivery.fetch_related("event")
    return WebhookDeliveryDetail(
        **WebhookDelivery.of(delivery).model_dump(), event=envelope(delivery.event)
    )


async def resend_webhook_delivery(call: Call) -> WebhookDelivery:
    row = _endpoint(call)
    _require_enabled(row)
    delivery = _delivery(call)
    await delivery.fetch_related("event")
    return WebhookDelivery.of(await _queue_delivery(row, delivery.event, "resend"))


KEY = Auth.API_KEY
ENDPOINTS = "/v1/webhook_endpoints"
ENDPOINT = ENDPOINTS + "/{webhook_endpoint_id}"
DELIVERIES = ENDPOINT + "/deliveries"
DELIVERY = DELIVERIES + "/{webhook_delivery_id}"
operations = [
    Operation("GET", ENDPOINTS, list_webhook_endpoints, "List webhook endpoints, newest first",
              "Webhooks", auth=KEY, scope="webhooks:read", query=ListQuery,
              response=Page[WebhookEndpoint]),
    Operation("POST", ENDPOINTS, create_webhook_endpoint,
              "Create a webhook endpoint (its signing secret is shown in this answer only)",
              "Webhooks", auth=KEY, scope="webhooks:write", secret_key_only=True,
              body=EndpointCreate, response=WebhookEndpointWithSecret, status_code=201,
              description="A URL whose host is a private, loopback, link-local or otherwise "
              "non-public address is a 400 `url_not_allowed` unless the operator allows "
              "private networks."),
    Operation("GET", ENDPOINT, retrieve_webhook_endpoint, "Retrieve a webhook endpoint", "Webhooks",
              auth=KEY, scope="webhooks:read", response=WebhookEndpoint),
    Operation("PATCH", ENDPOINT, update_webhook_endpoint,
              "Change an endpoint's URL, events or description, or disable / enable it",
              "Webhooks", auth=KEY, scope="webhooks:write", secret_key_only=True,
              body=EndpointUpdate, response=WebhookEndpoint),
    Operation("DELETE", ENDPOINT, delete_webhook_endpoint,
              "Delete a webhook endpoint (and its delivery log)", "Webhooks", auth=KEY,
              scope="webhooks:write", secret_key_only=True, response=Deleted),
    Operation("POST", ENDPOINT + "/rotate_secret", rotate_webhook_secret,
              "Rotate the signing secret (the old one keeps signing for the overlap)",
              "Webhooks", auth=KEY, scope="webhooks:write", secret_key_only=True,
              body=SecretRotation, response=WebhookEndpointWithSecret),
    Operation("POST", ENDPOINT + "/test", send_webhook_test_event,
              "Send the endpoint a `webhook.test` event (202: queued, see its deliveries)",
              "Webhooks", auth=KEY, scope="webhooks:write", secret_key_only=True,
              response=WebhookDelivery, status_code=202),
    Operation("GET", DELIVERIES, list_webhook_deliveries,
              "An endpoint's delivery log, newest first", "Webhooks", auth=KEY,
              scope="webhooks:read", query=DeliveryListQuery, response=Page[WebhookDelivery]),
    Operation("GET", DELIVERY, retrieve_webhook_delivery, "One delivery, with the event it carries",
              "Webhooks", auth=KEY, scope="webhooks:read", response=WebhookDeliveryDetail),
    Operation("POST", DELIVERY + "/resend", resend_webhook_delivery,
              "Send a delivery's event to its endpoint again (a new delivery, at once)",
              "Webhooks", auth=KEY, scope="webhooks:write", secret_key_only=True,
              response=WebhookDelivery, status_code=202),
]  # fmt: skip
