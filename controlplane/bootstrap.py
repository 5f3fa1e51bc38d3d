"""Idempotent first-run set-up: an admin, an organization, a project and its API keys.

Used by ``brik-cloud bootstrap`` (automation, CI, load tests) and ``brik-cloud dev``. Running
it again finds what exists. Keys are stored only hashed, so an existing key cannot be shown
again: it is reported as ``null`` unless ``rotate_keys`` issues fresh ones (the old ones are
revoked at that moment).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tortoise.transactions import in_transaction

from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.passwords import hash_password
from controlplane.models import (
    ApiKey,
    KeyKind,
    KeyMode,
    Membership,
    Organization,
    Project,
    Role,
    User,
)


@dataclass
class BootstrapResult:
    admin_email: str
    admin_password: str | None
    org_id: str
    project_id: str
    keys: dict[str, str | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "admin_email": self.admin_email,
            "admin_password": self.admin_password,
            "org_id": self.org_id,
            "project_id": self.project_id,
            "keys": dict(self.keys),
        }


def key_name(kind: KeyKind, mode: KeyMode) -> str:
    """The name bootstrap gives its keys, also their entry in ``keys``: ``test_secret`` …"""
    return f"{mode.value}_{kind.value}"


async def bootstrap(
    *,
    pepper: str,
    admin_email: str,
    admin_password: str | None = None,
    org_name: str = "Default organization",
    project_name: str = "Default project",
    modes: tuple[KeyMode, ...] = (KeyMode.TEST, KeyMode.LIVE),
    rotate_keys: bool = False,
) -> BootstrapResult:
    admin_email = admin_email.strip().lower()
    async with in_transaction():
        user = await User.get_or_none(email=admin_email)
        shown_password: str | None = None
        if user is None:
            shown_password = admin_password or secrets.token_urlsafe(12)
            user = await User.create(
                email=admin_email,
                name="Admin",
                password_hash=hash_password(shown_password),
                is_superuser=True,
            )
        membership = (
            await Membership.filter(user=user, role=Role.OWNER, organization__name=org_name)
            .prefetch_related("organization")
            .first()
        )
        if membership is None:
            organization = await Organization.create(name=org_name)
            await Membership.create(organization=organization, user=user, role=Role.OWNER)
        else:
            organization = membership.organization
        project = await Project.get_or_none(organization=organization, name=project_name)
        if project is None:
            project = await Project.create(organization=organization, name=project_name)

        result = BootstrapResult(
            admin_email=admin_email,
            admin_password=shown_password,
            org_id=organization.id,
            project_id=project.id,
        )
        now = datetime.now(UTC)
        for mode in modes:
            for kind in (KeyKind.SECRET, KeyKind.PUBLISHABLE):
                name = key_name(kind, mode)
                active = ApiKey.filter(project=project, name=name, revoked_at__isnull=True)
                if await active.exists() and not rotate_keys:
                    result.keys[name] = None
                    continue
                await active.update(revoked_at=now)
                _, plaintext = await issue_api_key(
                    project, name=name, kind=kind, mode=mode, pepper=pepper
                )
                result.keys[name] = plaintext
    return result
