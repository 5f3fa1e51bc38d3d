"""Invitations to join an organization, redeemed once with a token sent by email."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from controlplane.models.ids import new_invitation_id
from controlplane.models.tenancy import Organization, Role, User


class Invitation(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_invitation_id)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="invitations", on_delete=fields.CASCADE
    )
    email = fields.CharField(max_length=320)
    role = fields.CharEnumField(Role, max_length=20)
    token_hash = fields.CharField(max_length=64, unique=True)
    pepper_id = fields.CharField(max_length=16, null=True)  # which secret key hashed it
    invited_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "brik.User", related_name="invitations_sent", on_delete=fields.SET_NULL, null=True
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    accepted_at = fields.DatetimeField(null=True)
    accepted_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "brik.User", related_name="invitations_accepted", on_delete=fields.SET_NULL, null=True
    )
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "invitations"
