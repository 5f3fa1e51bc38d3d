"""What every signed-in page shows around its content, and what the viewer may do there.

Built from the operations themselves (the organizations the user belongs to, the projects of
the current one), so the switchers list exactly what the API would let this person reach.
Buttons a role may not use are left out (``frame.can``); the server refuses the forms anyway.
A subscription whose payment failed is shown on every page of its organization
(``frame.billing_warning``), with the day its plan lapses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from controlplane.api.billing import Billing, Subscription
from controlplane.api.organizations import Organization
from controlplane.api.pagination import Page
from controlplane.api.projects import Project
from controlplane.auth.admin import AdminPrincipal
from controlplane.auth.permissions import PROJECT_DATA_SCOPES, Permission, allows
from controlplane.dashboard.gateway import Gateway
from controlplane.errors import PermissionDenied
from controlplane.models import KeyMode, Role

MODES = (KeyMode.TEST, KeyMode.LIVE)


@dataclass
class Frame:
    admin: AdminPrincipal
    organizations: list[Organization]
    organization: Organization | None = None
    projects: list[Project] = field(default_factory=list)
    project: Project | None = None
    mode: KeyMode | None = None
    billing_warning: Subscription | None = None  # past due: the plan lapses at its grace end

    @property
    def role(self) -> Role | None:
        return self.organization.role if self.organization else None

    @property
    def is_instance_admin(self) -> bool:
        return bool(self.admin.user.is_superuser)

    @property
    def billing_grace_ended(self) -> bool:
        """The past-due subscription's grace period is over: the plan has lapsed to Free."""
        warning = self.billing_warning
        ends = warning.grace_period_ends_at if warning else None
        return ends is not None and ends <= datetime.now(UTC)

    def can(self, permission: str) -> bool:
        """May the viewer do ``permission`` (a role permission or a project-data scope)?"""
        if self.role is None:
            return False
        if permission in Permission._value2member_map_:
            return allows(self.role, Permission(permission))
        return permission in PROJECT_DATA_SCOPES[self.role]

    def project_url(self, path: str = "", *, mode: KeyMode | None = None) -> str:
        assert self.project is not None
        chosen = mode or self.mode or KeyMode.TEST
        return f"/dashboard/projects/{self.project.id}/{chosen.value}/{path}".rstrip("/")

    def mode_links(self, path: str) -> list[tuple[str, str]]:
        """The same page in each mode: ``[("test", url), ("live", url)]``. A page about one
        object (a push, a device) leads to the list it is in: the object exists in one mode."""
        assert self.project is not None
        assert self.mode is not None
        prefix = f"/dashboard/projects/{self.project.id}/{self.mode.value}"
        rest = path[len(prefix) :].strip("/") if path.startswith(prefix) else ""
        section = rest.split("/", 1)[0]
        return [(mode.value, self.project_url(section, mode=mode)) for mode in MODES]

    def organization_url(self, path: str = "") -> str:
        assert self.organization is not None
        return f"/dashboard/organizations/{self.organization.id}/{path}".rstrip("/")


async def build_frame(
    gateway: Gateway,
    *,
    organization_id: str | None = None,
    project_id: str | None = None,
    mode: KeyMode | None = None,
) -> Frame:
    assert gateway.admin is not None
    organizations = await gateway.get(
        Page[Organization], "/v1/organizations", query={"limit": "100"}
    )
    frame = Frame(gateway.admin, organizations.data, mode=mode)
    if project_id is not None:
        frame.project = await gateway.get(
            Project, "/v1/projects/{project_id}", params={"project_id": project_id}
        )
        organization_id = frame.project.organization_id
    if organization_id is not None:
        frame.organization = await gateway.get(
            Organization,
            "/v1/organizations/{organization_id}",
            params={"organization_id": organization_id},
        )
        projects = await gateway.get(
            Page[Project],
            "/v1/organizations/{organization_id}/projects",
            params={"organization_id": organization_id},
            query={"limit": "100"},
        )
        frame.projects = projects.data
        frame.billing_warning = await _past_due_subscription(gateway, organization_id)
    return frame


# Statuses in which a subscription pays for its plan without a warning.
_PAYING = frozenset({"active", "trialing"})


async def _past_due_subscription(gateway: Gateway, organization_id: str) -> Subscription | None:
    """The organization's subscription whose renewal failed, unless another one pays."""
    try:
        billing = await gateway.get(
            Billing,
            "/v1/organizations/{organization_id}/billing",
            params={"organization_id": organization_id},
        )
    except PermissionDenied:
        return None
    if any(subscription.status in _PAYING for subscription in billing.subscriptions):
        return None
    return next((s for s in billing.subscriptions if s.status == "past_due"), None)
