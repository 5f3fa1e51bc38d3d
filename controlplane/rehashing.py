"""Moving stored hashes to the current secret key (``brik-cloud rotate-secret-key``).

After ``BRIK_SECRET_KEY`` changes (``controlplane/auth/peppers.py``), credentials move to the
new key as they are used. Devices need not wait for their apps: their tokens are stored
encrypted, so :func:`rehash_devices` decrypts each token of a device still under another key
and writes its hash under the current one. :func:`waiting_on_previous_keys` counts what still
rests on a previous key — the old key can be dropped when nothing does.

The pass is safe while traffic flows. It reads in batches by id and writes each device with
its own compare-and-set update (``token_hash`` and ``pepper_id`` only, where the hash is still
the one it read), so no row is locked longer than one statement:

- a registration of the same token (which locks the row, ``controlplane/api/devices.py``)
  either commits first — it has moved the device itself, and the update finds the hash
  changed and writes nothing — or waits for the update and then finds the device by its new
  hash;
- an unregistration or a deletion leaves nothing to update;
- the unique (project, mode, token hash) refuses an update only when a second row already
  holds the token under the current key — a duplicate, which a rotation done in order never
  makes. It is reported with both ids and left alone: which one the tenant keeps is theirs to
  say.

Running it again does nothing: devices under the current key are not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.models import Model

from controlplane.auth.peppers import PepperRing
from controlplane.crypto import KeyRing, UndecryptableSecret
from controlplane.models import ApiKey, Device, Invitation, PersonalAccessToken, Session

BATCH_SIZE = 500


@dataclass
class RehashReport:
    rehashed: int = 0
    undecryptable: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "rehashed": self.rehashed,
            "undecryptable": self.undecryptable,
            "conflicts": self.conflicts,
        }


def _elsewhere(peppers: PepperRing) -> Q:
    """Rows whose hash is not recorded as the current key's (none recorded: older rows)."""
    return Q(pepper_id__isnull=True) | ~Q(pepper_id=peppers.current.id)


async def rehash_devices(
    peppers: PepperRing, keyring: KeyRing, batch_size: int = BATCH_SIZE
) -> RehashReport:
    """Give every device its token's hash under the current secret key (module docstring)."""
    report = RehashReport()
    last_id = ""
    while True:
        rows = await (
            Device.filter(_elsewhere(peppers), id__gt=last_id)
            .order_by("id")
            .limit(batch_size)
            .values_list("id", "project_id", "mode", "token_hash", "token_encrypted")
        )
        if not rows:
            return report
        for device_id, project_id, mode, stored_hash, token_encrypted in rows:
            last_id = device_id
            try:
                token = keyring.decrypt(token_encrypted).decode()
            except UndecryptableSecret:
                report.undecryptable.append(f"devices:{device_id}")
                continue
            fresh = peppers.hash(token)
            try:
                moved = await Device.filter(id=device_id, token_hash=stored_hash).update(
                    token_hash=fresh, pepper_id=peppers.current.id
                )
            except IntegrityError:
                twin = await Device.filter(
                    project_id=project_id, mode=mode, token_hash=fresh
                ).values_list("id", flat=True)
                report.conflicts.append(f"devices:{device_id} holds the token of {twin}")
                continue
            report.rehashed += moved


@dataclass(frozen=True)
class Waiting:
    """Rows of one kind still under a previous key, and when the last of them expires."""

    count: int
    never_expire: int  # of them, with no expiry (API keys, access tokens)
    last_expires_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        until: str | None = None
        if self.never_expire:
            until = "never"
        elif self.last_expires_at is not None:
            until = self.last_expires_at.isoformat()
        return {"count": self.count, "last_expires_at": until}


async def _waiting(model: type[Model], still_usable: Q, peppers: PepperRing) -> Waiting:
    query = model.filter(_elsewhere(peppers)).filter(still_usable)
    count = await query.count()
    if not count or "expires_at" not in model._meta.fields_map:
        return Waiting(count, 0, None)
    never = await query.filter(expires_at__isnull=True).count()
    last = await (
        query.filter(expires_at__isnull=False)
        .order_by("-expires_at")
        .limit(1)
        .values_list("expires_at", flat=True)
    )
    return Waiting(count, never, last[0] if last and isinstance(last[0], datetime) else None)


async def waiting_on_previous_keys(peppers: PepperRing) -> dict[str, Waiting]:
    """What still rests on a key other than the current one and would stop working without it.

    Revoked, expired and used-up credentials are not counted: they work under no key.
    """
    now = datetime.now(UTC)
    unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    pending = Q(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)
    return {
        "api_keys": await _waiting(ApiKey, unexpired & Q(revoked_at__isnull=True), peppers),
        "personal_access_tokens": await _waiting(
            PersonalAccessToken, unexpired & Q(revoked_at__isnull=True), peppers
        ),
        "sessions": await _waiting(Session, unexpired & Q(revoked_at__isnull=True), peppers),
        "invitations": await _waiting(Invitation, pending, peppers),
        # Every device, invalid ones too: an app may register an invalidated token again.
        "devices": await _waiting(Device, Q(), peppers),
    }
