"""Every ``/v1`` operation, in the order the OpenAPI document lists them.

A new API module adds its ``operations`` here; the router, the OpenAPI document and the
cross-tenant isolation test pick it up from this list.
"""

from __future__ import annotations

from controlplane.api import (
    activities,
    analytics,
    api_keys,
    audit_events,
    auth,
    billing,
    credentials,
    devices,
    exports,
    instance,
    invitations,
    members,
    openapi,
    organizations,
    projects,
    push_batches,
    pushes,
    realtime,
    state,
    stats,
    usage,
    user,
    users,
    webhook_endpoints,
    widgets,
)
from controlplane.api.routing import Operation

OPERATIONS: list[Operation] = [
    *auth.operations,
    *user.operations,
    *organizations.operations,
    *members.operations,
    *invitations.operations,
    *projects.operations,
    *api_keys.operations,
    *audit_events.operations,
    *credentials.operations,
    *devices.operations,
    *pushes.operations,
    *push_batches.operations,
    *activities.operations,
    *widgets.operations,
    *state.operations,
    *analytics.operations,
    *webhook_endpoints.operations,
    *realtime.operations,
    *users.operations,
    *exports.operations,
    *usage.operations,
    *stats.operations,
    *billing.operations,
    *instance.operations,
    *openapi.operations,
]
