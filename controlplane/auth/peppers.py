"""The secret-key ring: ``BRIK_SECRET_KEY`` hashes and signs, ``BRIK_PREVIOUS_SECRET_KEYS`` verify.

The secret key is the pepper of every stored hash — API keys, personal access tokens,
dashboard sessions, invitations, the lookup hash of each device token — and the key of the
session cookie's signature and of the OpenID Connect state cookie. Like the encryption key
ring (``controlplane/crypto.py``) it rotates without downtime: whatever verifies a hash or a
signature tries the current key and every previous one; whatever writes uses the current key
only. Lookups ask for the hash under every key at once (``key_hash IN (…)``): one query,
whichever key made the stored hash.

Each hashed row records which key made its hash (``pepper_id``, a name derived from the key:
:func:`controlplane.auth.keys.pepper_id`). A credential that authenticates through a previous
key is re-hashed under the current one on the spot — its plaintext is in hand at that moment
(:meth:`PepperRing.move_to_current`) — so keys, tokens and sessions move over as they are
used. Device tokens are stored encrypted, so ``brik-cloud rotate-secret-key`` re-hashes every
device without waiting for its app, and counts what still rests on a previous key: the old
key may go once nothing does (``controlplane/rehashing.py``). Rows written before key ids were
recorded have none, and count as resting on a previous key until they are used or re-hashed.

The ring is symmetric on purpose: for the first step of a rotation, the incoming key sits in
``BRIK_PREVIOUS_SECRET_KEYS`` while the old one still writes, so that every process verifies
the new key before any process writes with it (docs/operations.md, "The secret key").
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from tortoise.expressions import Q
from tortoise.models import Model

from controlplane.auth.keys import KEY_PATTERN, hash_key, pepper_id
from controlplane.settings import Settings


@dataclass(frozen=True, slots=True)
class Pepper:
    """One secret key and its public name."""

    id: str
    secret: str = field(repr=False)

    def hash(self, plaintext: str) -> str:
        return hash_key(plaintext, self.secret)


class PepperRing:
    """The current secret key first, then the previous ones: the first writes, all verify."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a secret-key ring needs at least the current key")
        self.peppers = tuple(Pepper(pepper_id(key), key) for key in dict.fromkeys(keys))
        self.current = self.peppers[0]
        self.ids = frozenset(pepper.id for pepper in self.peppers)

    @classmethod
    def from_settings(cls, settings: Settings) -> PepperRing:
        """``BRIK_SECRET_KEY`` and ``BRIK_PREVIOUS_SECRET_KEYS``; ValueError when unusable."""
        return _ring(tuple(settings.require_secret_keys()))

    def __repr__(self) -> str:
        return f"PepperRing(current={self.current.id}, previous={[p.id for p in self.peppers[1:]]})"

    @property
    def rotating(self) -> bool:
        """Whether a previous key is configured (lookups may find hashes of another key)."""
        return len(self.peppers) > 1

    def hash(self, plaintext: str) -> str:
        """The hash to store: under the current key."""
        return self.current.hash(plaintext)

    def hashes(self, plaintext: str) -> list[str]:
        """The hashes to look ``plaintext`` up by: under every key, the current one first."""
        return [pepper.hash(plaintext) for pepper in self.peppers]

    def is_current(self, row: Model) -> bool:
        """Whether ``row``'s hash is recorded as made by the current key."""
        return bool(getattr(row, "pepper_id", None) == self.current.id)

    async def move_to_current(self, row: Model, column: str, plaintext: str) -> bool:
        """Re-hash ``row``'s ``column`` under the current key, unless it already is.

        A compare-and-set on the hash the row was read with, writing that column and
        ``pepper_id`` only: a concurrent move (another request, another process) or a deletion
        is never undone, and a change saved meanwhile (a revocation) stays saved. Returns
        whether this call moved it; ``row`` then holds the new hash.
        """
        if self.is_current(row):
            return False
        fresh = self.hash(plaintext)
        moved = await (
            type(row)
            .filter(pk=row.pk, **{column: getattr(row, column)})
            .update(**{column: fresh, "pepper_id": self.current.id})
        )
        if moved:
            setattr(row, column, fresh)
            setattr(row, "pepper_id", self.current.id)  # noqa: B010  # every hashed model has it
        return bool(moved)


async def issued_under_a_dropped_key(model: type[Model], token: str, peppers: PepperRing) -> bool:
    """Whether a live key or token of ``model`` (API keys, access tokens) with ``token``'s
    visible characters (display prefix, last four) rests on a secret key the ring no longer
    holds: why an unknown one is refused.

    Only asked once the lookup failed; it reads what the dashboard shows anyone who may see
    the key, and a caller learns from it only about a key whose characters it already has.
    """
    match = KEY_PATTERN.match(token)
    if match is None:
        return False
    dropped = Q(pepper_id__isnull=True) | ~Q(pepper_id__in=list(peppers.ids))
    return await (
        model.filter(
            display_prefix=match["prefix"] + match["random"][:4],
            last_four=token[-4:],
            revoked_at__isnull=True,
        )
        .filter(dropped)
        .exists()
    )


@functools.lru_cache(maxsize=8)
def _ring(keys: tuple[str, ...]) -> PepperRing:
    return PepperRing(keys)
