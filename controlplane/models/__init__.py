"""Tortoise models of the ``brik`` app; one module per concept, all re-exported here."""

from __future__ import annotations

from controlplane.models.api_keys import ApiKey, KeyKind, KeyMode
from controlplane.models.audit import AppendOnly, AuditEvent
from controlplane.models.credentials import ProviderCredential, ProviderName
from controlplane.models.devices import Device, DeviceStatus, DeviceTag, Platform
from controlplane.models.invitations import Invitation
from controlplane.models.notifications import Notification
from controlplane.models.sessions import PersonalAccessToken, Session
from controlplane.models.tenancy import Membership, Organization, Plan, Project, Role, User
from controlplane.models.workers import WorkerHeartbeat

__all__ = [
    "ApiKey",
    "AppendOnly",
    "AuditEvent",
    "Device",
    "DeviceStatus",
    "DeviceTag",
    "Invitation",
    "KeyKind",
    "KeyMode",
    "Membership",
    "Notification",
    "Organization",
    "PersonalAccessToken",
    "Plan",
    "Platform",
    "Project",
    "ProviderCredential",
    "ProviderName",
    "Role",
    "Session",
    "User",
    "WorkerHeartbeat",
]
