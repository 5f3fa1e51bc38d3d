"""Tenant scoping: the one place a request's ids are turned into rows it may see.

The router resolves the organization or project a request is about *before* any handler
runs, from the path (``{organization_id}``, ``{project_id}``) and the caller:

* an admin sees an organization only through a membership, and a project only through a
  membership of its organization;
* a project API key sees only its own project.

Every other id in the path (``{member_id}``, ``{api_key_id}`` …) names a row of a model listed
in :data:`PATH_OBJECTS`; the router loads it through the same scope before it even reads the
request body, and hands it to the handler (``call.row(...)``). A name the tenant chooses within
its own namespace (a state ``{key}``) is listed in :data:`PATH_NAMES` instead, and the handler
looks it up through :meth:`Tenant.query`. A path parameter in neither table is refused when
the routes are built, so a new route cannot skip the check.

Anything out of reach is 404 ``resource_missing`` — the same answer as for an id that does not
exist, so ids of other tenants cannot even be confirmed. Handlers query further rows only
through :meth:`Tenant.query`, which adds the tenant filter itself.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from controlplane.auth.admin import AdminPrincipal
from controlplane.auth.api_keys import KeyPrincipal
from controlplane.auth.permissions import Permission, allows
from controlplane.errors import AuthenticationFailed, NotFound, PermissionDenied
from controlplane.models import (
    Activity,
    ApiKey,
    AuditEvent,
    Device,
    Invitation,
    KeyMode,
    Membership,
    Organization,
    PersonalAccessToken,
    Project,
    ProviderCredential,
    Push,
    Role,
    Session,
    WebhookDelivery,
    WebhookEndpoint,
)
from controlplane.models.ids import ID_PATTERN, is_well_formed_id
from controlplane.payloads import WIDGET_KIND_PATTERN, WIDGET_KIND_RULE
from controlplane.realtime import channels
from controlplane.sql_rows import attach, model_of, parameter, selected
from controlplane.state import KEY_PATTERN, KEY_RULE, READABLE_PREFIXES, RESERVED_PREFIXES

ModelT = TypeVar("ModelT", bound=Model)

_NOUNS = {
    "organization_id": "organization",
    "project_id": "project",
}
TENANT_PARAMS = frozenset(_NOUNS)

# Rows that belong to the signed-in user rather than to an organization.
USER_OWNED: frozenset[type[Model]] = frozenset({PersonalAccessToken, Session})

# Path parameter → the model it names and the noun used in "No such …" messages.
PATH_OBJECTS: dict[str, tuple[type[Model], str]] = {
    "member_id": (Membership, "member"),
    "invitation_id": (Invitation, "invitation"),
    "api_key_id": (ApiKey, "API key"),
    "audit_event_id": (AuditEvent, "audit event"),
    "access_token_id": (PersonalAccessToken, "access token"),
    "session_id": (Session, "session"),
    "device_id": (Device, "device"),
    "push_id": (Push, "push"),
    "activity_id": (Activity, "activity"),
    "webhook_endpoint_id": (WebhookEndpoint, "webhook endpoint"),
    "webhook_delivery_id": (WebhookDelivery, "webhook delivery"),
}


def state_key_schema(*, writing: bool) -> dict[str, Any]:
    """JSON Schema of a state key in a path: to write (or delete), or to read."""
    refused = [p for p in RESERVED_PREFIXES if writing or p not in READABLE_PREFIXES]
    if not refused:
        return {
            "type": "string",
            "pattern": KEY_PATTERN,
            "description": f"A state key: {KEY_RULE}.",
        }
    return {
        "type": "string",
        "pattern": KEY_PATTERN,
        "not": {"pattern": "^(" + "|".join(refused) + ")"},
        "description": f"A state key: {KEY_RULE}; not starting with a reserved prefix "
        f"({', '.join(refused)}).",
    }


# Path parameters that name something inside the caller's own namespace rather than a row by
# id (a state key, a widget kind): no row is loaded for them here — the handler looks the name
# up through Tenant.query, so another tenant's can never be reached. Param → its JSON Schema
# (an operation may narrow it: Operation.path_schemas).
PATH_NAMES: dict[str, dict[str, Any]] = {
    "key": state_key_schema(writing=False),
    "channel": {
        "type": "string",
        "pattern": channels.NAME_PATTERN,
        "description": f"A realtime channel of the key's project and mode: {channels.NAME_RULE}.",
    },
    "user_id": {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "description": "An end user's id, as your app named them (a device's `user_id`).",
    },
    # An export's id: looked up by its operations themselves — through the key's tenant, or by
    # the download link's signature (the download takes no key: controlplane/api/exports.py).
    "export_id": {
        "type": "string",
        "pattern": ID_PATTERN,
        "description": "An export's id (exp_…).",
    },
    "kind": {
        "type": "string",
        "pattern": WIDGET_KIND_PATTERN,
        "description": f"A widget kind, as the app's widget configuration names it: "
        f"{WIDGET_KIND_RULE}.",
    },
}


def _check_shape(noun: str, object_id: str, param: str = "id") -> str:
    if not is_well_formed_id(object_id):
        raise missing(noun, object_id, param)
    return object_id


def missing(noun: str, object_id: str, param: str = "id") -> NotFound:
    shown = object_id if len(object_id) <= 64 else object_id[:64] + "…"
    shown = shown.replace("\x00", "\\0")
    return NotFound(f"No such {noun}: '{shown}'", param=param)


@dataclass(frozen=True, slots=True)
class Tenant:
    """The organization (and maybe project) a request acts on, and the caller's role there.

    ``role`` is None for API-key callers: their reach is decided by scopes, not roles, and
    ``mode`` is their key's: test keys see only test-mode rows (devices, pushes).
    """

    organization: Organization
    project: Project | None
    role: Role | None
    mode: KeyMode | None = None
    # The providers the project holds a credential for, read with it (API-key callers only:
    # sending checks them without a query of its own); None when not read.
    credentials: frozenset[str] | None = None

    def require(self, permission: Permission) -> None:
        if self.role is None or not allows(self.role, permission):
            raise PermissionDenied(
                f"Your role ({self.role}) in this organization does not allow '{permission}'.",
                code="insufficient_role",
                param=permission.value,
            )

    def query(self, model: type[ModelT]) -> QuerySet[ModelT]:
        """Rows of ``model`` belonging to this tenant (its project when there is one)."""
        fields = model._meta.fields_map
        if self.project is not None and "project_id" in fields:
            query = model.filter(project_id=self.project.id)
            if self.mode is not None and "mode" in fields:
                query = query.filter(mode=self.mode)  # test keys see test data only
            return query
        if "organization_id" in fields:
            return model.filter(organization_id=self.organization.id)
        raise TypeError(f"{model.__name__} is not tenant data")


async def _for_admin(principal: AdminPrincipal, params: Mapping[str, Any]) -> Tenant | None:
    user_id = principal.user.id
    if "project_id" in params:
        project_id = _check_shape("project", str(params["project_id"]), "project_id")
        project = await Project.get_or_none(
            id=project_id, organization__memberships__user_id=user_id
        ).select_related("organization")
        if project is None:
            raise missing("project", project_id, "project_id")
        membership = await Membership.get(organization_id=project.organization.id, user_id=user_id)
        return Tenant(organization=project.organization, project=project, role=membership.role)
    if "organization_id" in params:
        organization_id = _check_shape(
            "organization", str(params["organization_id"]), "organization_id"
        )
        found = await Membership.get_or_none(
            organization_id=organization_id, user_id=user_id
        ).select_related("organization")
        if found is None:
            raise missing("organization", organization_id, "organization_id")
        return Tenant(organization=found.organization, project=None, role=found.role)
    return None


async def _for_key(principal: KeyPrincipal, params: Mapping[str, Any]) -> Tenant:
    for param, own_id in (
        ("project_id", principal.project_id),
        ("organization_id", principal.organization_id),
    ):
        if param in params and str(params[param]) != own_id:
            raise missing(_NOUNS[param], str(params[param]), param)
    project, credentials = await _key_project(principal.project_id)
    return Tenant(
        organization=project.organization, project=project, role=None, mode=principal.mode,
        credentials=credentials,
    )  # fmt: skip


async def _key_project(project_id: str) -> tuple[Project, frozenset[str]]:
    """An API key's project with its organization, and the providers it holds a credential
    for, in one query.

    Every API-key request reads this, so its SQL is written out once
    (:mod:`controlplane.sql_rows`).
    """
    client = Project._meta.db
    rows = await client.execute_query_dict(
        _key_project_sql(client.capabilities.dialect), [project_id]
    )
    if not rows:  # deleted while the key was in a process's cache (the epoch bump is after)
        raise AuthenticationFailed(
            "The API key is not recognised: its project was deleted.", code="invalid_api_key"
        )
    row = rows[0]
    project = model_of(Project, row, "p")
    attach(project, "organization", model_of(Organization, row, "o"))
    listed: str | None = row["credential_providers"]
    return project, frozenset(listed.split(",") if listed else ())


@functools.cache
def _key_project_sql(dialect: str) -> str:
    aggregate = "string_agg" if dialect == "postgres" else "group_concat"
    credentials = ProviderCredential._meta.db_table
    return (
        f"SELECT {selected(Project, 'p')}, {selected(Organization, 'o')}, "
        f'(SELECT {aggregate}("provider", \',\') FROM "{credentials}" '
        f'WHERE "project_id" = p."id") AS credential_providers '
        f'FROM "{Project._meta.db_table}" AS p JOIN "{Organization._meta.db_table}" AS o '
        f'ON o."id" = p."organization_id" '
        f'WHERE p."id" = {parameter(dialect, 1)}'
    )


async def resolve_tenant(
    principal: AdminPrincipal | KeyPrincipal | None,
    params: Mapping[str, Any],
    *,
    any_organization: bool = False,
) -> Tenant | None:
    """The tenant the path names, as the caller may see it; 404 when it may not.

    ``any_organization``: an instance administrator's operation (the router has checked the
    caller is a superuser), which reaches every organization without a membership.
    """
    if any_organization and "organization_id" in params:
        organization_id = _check_shape(
            "organization", str(params["organization_id"]), "organization_id"
        )
        organization = await Organization.get_or_none(id=organization_id)
        if organization is None:
            raise missing("organization", organization_id, "organization_id")
        return Tenant(organization=organization, project=None, role=None)
    if isinstance(principal, AdminPrincipal):
        return await _for_admin(principal, params)
    if isinstance(principal, KeyPrincipal):
        return await _for_key(principal, params)
    return None


def _owned_query(
    model: type[Model], principal: AdminPrincipal | KeyPrincipal | None, tenant: Tenant | None
) -> QuerySet[Any]:
    if model in USER_OWNED:
        if not isinstance(principal, AdminPrincipal):
            raise TypeError(f"{model.__name__} belongs to a user; only admins reach it")
        return model.filter(user_id=principal.user.id)
    if tenant is None:
        raise TypeError(f"{model.__name__} is tenant data but the path names no tenant")
    return tenant.query(model)


async def load_path_objects(
    principal: AdminPrincipal | KeyPrincipal | None,
    tenant: Tenant | None,
    params: Mapping[str, Any],
) -> dict[str, Model]:
    """The rows the path's other ids name, each fetched within the caller's reach."""
    rows: dict[str, Model] = {}
    for param, value in params.items():
        if param in TENANT_PARAMS or param in PATH_NAMES:
            continue
        model, noun = PATH_OBJECTS[param]
        object_id = _check_shape(noun, str(value))
        row = await _owned_query(model, principal, tenant).get_or_none(id=object_id)
        if row is None:
            raise missing(noun, str(value))
        rows[param] = row
    return rows


def check_path_params(path: str, names: list[str]) -> None:
    """Refuse to build a route whose ids the tenant scope does not know how to check."""
    known = TENANT_PARAMS | PATH_OBJECTS.keys() | PATH_NAMES.keys()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"{path}: add {unknown} to controlplane.tenancy.PATH_OBJECTS (or PATH_NAMES)"
        )
