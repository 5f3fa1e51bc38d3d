"""Who owns what: users, organizations, their memberships, and projects."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from controlplane.models.ids import new_membership_id, new_org_id, new_project_id, new_user_id


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class Plan(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class PlanSource(StrEnum):
    """Who set an organization's plan: billing changes it unless an admin has set it."""

    DEFAULT = "default"
    BILLING = "billing"
    ADMIN = "admin"


class User(Model):
    """A person who signs in to the dashboard or the management API."""

    id = fields.CharField(max_length=32, primary_key=True, default=new_user_id)
    email = fields.CharField(max_length=320, unique=True)
    name = fields.CharField(max_length=200, default="")
    password_hash = fields.CharField(max_length=255, null=True)
    is_superuser = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "users"


class Organization(Model):
    """A tenant: owns projects, a plan and the bill."""

    id = fields.CharField(max_length=32, primary_key=True, default=new_org_id)
    name = fields.CharField(max_length=200)
    plan = fields.CharEnumField(Plan, max_length=20, default=Plan.FREE)
    plan_source = fields.CharEnumField(PlanSource, max_length=20, default=PlanSource.DEFAULT)
    stripe_customer_id = fields.CharField(max_length=255, null=True, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "organizations"


class Membership(Model):
    """A user's role in one organization."""

    id = fields.CharField(max_length=32, primary_key=True, default=new_membership_id)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="memberships", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "brik.User", related_name="memberships", on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(Role, max_length=20)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "memberships"
        unique_together = (("organization", "user"),)


class Project(Model):
    """One app (or family of apps) of an organization: keys, credentials and devices hang here."""

    id = fields.CharField(max_length=32, primary_key=True, default=new_project_id)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="projects", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    # Key prefixes under which the project's publishable keys (inside its apps) may write
    # state; empty or null (projects created before state): apps write none (docs/state.md).
    state_public_write_prefixes: fields.Field[list[str] | None] = fields.JSONField(
        null=True, default=list
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "projects"
