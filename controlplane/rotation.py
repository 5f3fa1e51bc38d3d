"""Re-encrypting every stored secret under the newest key of the ring (``brik-cloud rotate-keys``).

:data:`ENCRYPTED_FIELDS` lists every column that holds a key-ring token; a model that stores
a secret adds its column here, and rotation and the tests' plaintext dump check pick it up.
Each row is swapped with a compare-and-set update, so a value written concurrently (by an
upload during the rotation) is never overwritten with an older one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tortoise.models import Model

from controlplane.crypto import KeyRing, UndecryptableSecret
from controlplane.models import (
    TOKEN_COLUMNS,
    Device,
    Notification,
    ProviderCredential,
    WebhookEndpoint,
)

ENCRYPTED_FIELDS: list[tuple[type[Model], str]] = [
    (Notification, "body_encrypted"),
    (ProviderCredential, "secret_encrypted"),
    # Every push token of a device: its own, a Live Activity's, push-to-start, widget.
    *[(Device, column) for column in TOKEN_COLUMNS.values()],
    # A webhook endpoint's URL (Slack's and Discord's are credentials) and signing secrets.
    (WebhookEndpoint, "url_encrypted"),
    (WebhookEndpoint, "secret_encrypted"),
    (WebhookEndpoint, "previous_secret_encrypted"),
]
_BATCH = 500


@dataclass
class RotationReport:
    rotated: int = 0
    already_current: int = 0
    undecryptable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "rotated": self.rotated,
            "already_current": self.already_current,
            "undecryptable": self.undecryptable,
        }


async def rotate_all(keyring: KeyRing) -> RotationReport:
    """Re-encrypt what is not under the newest key yet; report what no key could open."""
    report = RotationReport()
    for model, column in ENCRYPTED_FIELDS:
        pk_name = model._meta.pk_attr
        last_pk: object = None
        while True:
            query = model.all().order_by(pk_name).limit(_BATCH)
            if last_pk is not None:
                query = query.filter(**{f"{pk_name}__gt": last_pk})
            rows = await query.values_list(pk_name, column)
            if not rows:
                break
            for pk, token in rows:
                last_pk = pk
                if token is None or keyring.is_current(token):
                    report.already_current += 1
                    continue
                try:
                    fresh = keyring.rotate(token)
                except UndecryptableSecret:
                    report.undecryptable.append(f"{model._meta.db_table}.{column}:{pk}")
                    continue
                await model.filter(**{pk_name: pk, column: token}).update(**{column: fresh})
                report.rotated += 1
    return report
