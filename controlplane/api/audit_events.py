"""``/v1/organizations/{organization_id}/audit_events``: the organization's audit log.

Read-only by construction: there is no operation that changes or deletes an event, and the
model itself refuses updates and deletes (``controlplane/models/audit.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from controlplane.api.fields import Email, Moment, ObjectId
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Call, Operation
from controlplane.auth.permissions import Permission
from controlplane.models import AuditEvent as AuditEventRow


class AuditEvent(BaseModel):
    object: Literal["audit_event"] = "audit_event"
    id: str
    organization_id: str | None
    action: str
    actor_type: str
    actor_id: str | None
    actor_email: str | None
    target_type: str | None
    target_id: str | None
    ip: str
    user_agent: str
    details: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: AuditEventRow) -> AuditEvent:
        return cls(
            id=row.id,
            organization_id=row.organization_id,
            action=row.action,
            actor_type=row.actor_type,
            actor_id=row.actor_id,
            actor_email=row.actor_email,
            target_type=row.target_type,
            target_id=row.target_id,
            ip=row.ip,
            user_agent=row.user_agent,
            details=row.details,
            created_at=row.created_at,
        )


class AuditEventListQuery(ListQuery):
    action: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z_]+(\.[a-z_]+|\.\*)?$",
        description="Exact action, or a prefix ending in '.*'.",
    )
    actor_id: ObjectId | None = None
    actor_email: Email | None = Field(
        default=None,
        description="Events by the person with this email, whoever they are now (a member who "
        "has left, or one whose account was deleted, included).",
    )
    target_id: ObjectId | None = None
    created_gte: Moment | None = None
    created_lt: Moment | None = None


async def list_audit_events(call: Call) -> Page[AuditEvent]:
    params = call.query_as(AuditEventListQuery)
    query = call.tenant.query(AuditEventRow)
    if params.action:
        if params.action.endswith(".*"):
            query = query.filter(action__startswith=params.action[:-1])
        else:
            query = query.filter(action=params.action)
    if params.actor_id:
        query = query.filter(actor_id=params.actor_id)
    if params.actor_email:
        query = query.filter(actor_email=params.actor_email)
    if params.target_id:
        query = query.filter(target_id=params.target_id)
    if params.created_gte:
        query = query.filter(created_at__gte=params.created_gte)
    if params.created_lt:
        query = query.filter(created_at__lt=params.created_lt)
    return await paginate(query, params, AuditEvent.of)


async def retrieve_audit_event(call: Call) -> AuditEvent:
    return AuditEvent.of(call.row(AuditEventRow, "audit_event_id"))


AUDIT_EVENTS = "/v1/organizations/{organization_id}/audit_events"
operations = [
    Operation(
        "GET",
        AUDIT_EVENTS,
        list_audit_events,
        "List the audit log, newest first, with filters",
        "Audit log",
        permission=Permission.AUDIT_LOG_READ,
        query=AuditEventListQuery,
        response=Page[AuditEvent],
    ),
    Operation(
        "GET",
        AUDIT_EVENTS + "/{audit_event_id}",
        retrieve_audit_event,
        "Retrieve an audit event",
        "Audit log",
        permission=Permission.AUDIT_LOG_READ,
        response=AuditEvent,
    ),
]
