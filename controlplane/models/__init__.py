"""Tortoise models of the ``brik`` app; one module per concept, all re-exported here."""

from __future__ import annotations

from controlplane.models.api_keys import ApiKey, KeyKind, KeyMode
from controlplane.models.tenancy import Membership, Organization, Plan, Project, Role, User
from controlplane.models.workers import WorkerHeartbeat

__all__ = [
    "ApiKey",
    "KeyKind",
    "KeyMode",
    "Membership",
    "Organization",
    "Plan",
    "Project",
    "Role",
    "User",
    "WorkerHeartbeat",
]
