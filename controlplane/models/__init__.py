"""Tortoise models of the ``brik`` app; one module per concept, all re-exported here."""

from __future__ import annotations

from controlplane.models.activities import (
    OPEN_ACTIVITY_STATUSES,
    Activity,
    ActivityStatus,
    ActivityToken,
    ActivityTokenStatus,
)
from controlplane.models.analytics import AnalyticsEvent, AnalyticsRollup, Dimension, Granularity
from controlplane.models.api_keys import ApiKey, KeyKind, KeyMode
from controlplane.models.audit import AppendOnly, AuditEvent
from controlplane.models.billing import MeterReport, StripeEvent, Subscription
from controlplane.models.credentials import ProviderCredential, ProviderName
from controlplane.models.devices import (
    TOKEN_COLUMNS,
    TOKEN_NAMES,
    Device,
    DeviceStatus,
    DeviceTag,
    Platform,
    TokenSlot,
)
from controlplane.models.exports import Export, ExportStatus
from controlplane.models.invitations import Invitation
from controlplane.models.notifications import Notification
from controlplane.models.pushes import (
    FINAL_DELIVERY_STATUSES,
    Delivery,
    DeliveryStatus,
    IdempotencyKey,
    Push,
    PushStatus,
)
from controlplane.models.sessions import PersonalAccessToken, Session
from controlplane.models.state import StateEntry, StateUsage
from controlplane.models.tenancy import (
    Membership,
    Organization,
    Plan,
    PlanSource,
    Project,
    Role,
    User,
)
from controlplane.models.usage import UsageAlert, UsageDay, UsageMetric, UsagePeriod
from controlplane.models.webhooks import (
    PENDING_WEBHOOK_STATUSES,
    EndpointType,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from controlplane.models.workers import WorkerHeartbeat

__all__ = [
    "FINAL_DELIVERY_STATUSES",
    "OPEN_ACTIVITY_STATUSES",
    "PENDING_WEBHOOK_STATUSES",
    "TOKEN_COLUMNS",
    "TOKEN_NAMES",
    "Activity",
    "ActivityStatus",
    "ActivityToken",
    "ActivityTokenStatus",
    "AnalyticsEvent",
    "AnalyticsRollup",
    "ApiKey",
    "AppendOnly",
    "AuditEvent",
    "Delivery",
    "DeliveryStatus",
    "Device",
    "DeviceStatus",
    "DeviceTag",
    "Dimension",
    "EndpointType",
    "Export",
    "ExportStatus",
    "Granularity",
    "IdempotencyKey",
    "Invitation",
    "KeyKind",
    "KeyMode",
    "Membership",
    "MeterReport",
    "Notification",
    "Organization",
    "PersonalAccessToken",
    "Plan",
    "PlanSource",
    "Platform",
    "Project",
    "ProviderCredential",
    "ProviderName",
    "Push",
    "PushStatus",
    "Role",
    "Session",
    "StateEntry",
    "StateUsage",
    "StripeEvent",
    "Subscription",
    "TokenSlot",
    "UsageAlert",
    "UsageDay",
    "UsageMetric",
    "UsagePeriod",
    "User",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
    "WebhookEvent",
    "WorkerHeartbeat",
]
