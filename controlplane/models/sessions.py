"""How admins stay signed in: dashboard sessions and personal access tokens.

Both are stored only as a peppered HMAC of the secret the client holds, so a database dump
signs nobody in; ``pepper_id`` says which secret key made it (``controlplane/auth/peppers.py``).
Both are revoked server-side (``revoked_at``): a revoked session or token stops working on its
next request.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from controlplane.models.ids import new_access_token_id, new_session_id
from controlplane.models.tenancy import User


class Session(Model):
    """A signed-in browser (or API client using the cookie), see controlplane.auth.sessions."""

    id = fields.CharField(max_length=32, primary_key=True, default=new_session_id)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "brik.User", related_name="sessions", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    pepper_id = fields.CharField(max_length=16, null=True)  # which secret key hashed it
    method = fields.CharField(max_length=20)  # "password" or "oidc"
    ip = fields.CharField(max_length=64, default="")
    user_agent = fields.CharField(max_length=400, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "sessions"


class PersonalAccessToken(Model):
    """A token acting as its user on the management API (automation, CI)."""

    id = fields.CharField(max_length=32, primary_key=True, default=new_access_token_id)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "brik.User", related_name="access_tokens", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    token_hash = fields.CharField(max_length=64, unique=True)
    pepper_id = fields.CharField(max_length=16, null=True)  # which secret key hashed it
    display_prefix = fields.CharField(max_length=24)
    last_four = fields.CharField(max_length=4)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "personal_access_tokens"
