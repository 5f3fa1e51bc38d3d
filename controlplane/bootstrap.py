"""Idempotent first-run set-up: an admin, an organization, a project and its API keys.

Used by ``brik-cloud bootstrap`` (automation, CI, load tests) and ``brik-cloud dev``. Running
it again finds what exists. Keys are stored only hashed, so an existing key cannot be shown
again: it is reported as ``null`` unless ``rotate_keys`` issues fresh ones (the old ones are
revoked at that moment).

A rotation is a revocation, and running API processes cache the keys they resolved: given
``redis``, the key-cache epoch is bumped inside the transaction before the old keys are revoked
(Redis unreachable: the error propagates, the transaction rolls back, nothing is rotated) and
again after the commit — as the API's own revocations do (``controlplane/auth/api_key_cache.py``).
Without ``redis`` (``brik-cloud dev``, whose embedded Redis only lives with its process) the
caller tells whoever runs an API on this database to restart it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError
from tortoise.transactions import in_transaction

from controlplane.auth.api_key_cache import EPOCH_BUMPS_AFTER_COMMIT, invalidate_cached_keys
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
    revoked: int = 0  # keys this run revoked (rotate_keys)
    # False when keys were revoked but Redis went away before the bump after the commit: API
    # processes may accept the old keys until their cache entries age out.
    announced: bool = True

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
    redis: Redis | None = None,
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
                exists = await active.exists()
                if exists and not rotate_keys:
                    result.keys[name] = None
                    continue
                if exists and redis is not None and not result.revoked:
                    await invalidate_cached_keys(redis)  # before the write, or nothing written
                result.revoked += await active.update(revoked_at=now)
                _, plaintext = await issue_api_key(
                    project, name=name, kind=kind, mode=mode, pepper=pepper
                )
                result.keys[name] = plaintext
    if result.revoked and redis is not None:
        try:
            await invalidate_cached_keys(redis, attempts=EPOCH_BUMPS_AFTER_COMMIT)
        except RedisError:
            result.announced = False
    return result
