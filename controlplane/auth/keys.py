"""Secret material: generation, the checksum secret scanners can verify, and peppered hashing.

Every bearer secret Brik hands out has one shape, ``<prefix><43 random base62><6 checksum>``:

=====================  =====================================================
``bk_sk_{test|live}_`` project secret API key
``bk_pk_{test|live}_`` project publishable API key
``bk_pat_``            personal access token (management API)
``bk_ses_``            dashboard session (inside the signed cookie)
``bk_inv_``            invitation token (in the invitation email)
=====================  =====================================================

The random part carries 256 bits; the checksum (CRC-32 of the random part, base62) lets a
scanner tell a real leaked secret from look-alike text without asking us. The server keeps
only HMAC-SHA256(pepper, secret), a display prefix and the last four characters — and the
:func:`pepper_id` of the pepper (``BRIK_SECRET_KEY``) that made the hash, so that after a
rotation it can count what still rests on the old key (``controlplane/auth/peppers.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from controlplane.models import KeyKind, KeyMode

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LENGTH = 43  # 62**43 > 2**256
_CHECKSUM_LENGTH = 6
_KIND_CODES = {KeyKind.SECRET: "sk", KeyKind.PUBLISHABLE: "pk"}
ACCESS_TOKEN_PREFIX = "bk_pat_"
SESSION_TOKEN_PREFIX = "bk_ses_"
INVITATION_TOKEN_PREFIX = "bk_inv_"
KEY_PATTERN = re.compile(
    r"^(?P<prefix>bk_(?:(?:sk|pk)_(?:test|live)|pat|ses|inv)_)"
    rf"(?P<random>[0-9A-Za-z]{{{_RANDOM_LENGTH}}})(?P<checksum>[0-9A-Za-z]{{{_CHECKSUM_LENGTH}}})$"
)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly generated key: ``plaintext`` is shown once and never stored."""

    plaintext: str
    key_hash: str
    pepper_id: str  # which secret key made key_hash: see pepper_id()
    display_prefix: str
    last_four: str


def _base62(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), _CHECKSUM_LENGTH)


def hash_key(plaintext: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), plaintext.encode(), hashlib.sha256).hexdigest()


def pepper_id(pepper: str) -> str:
    """A short public name for a secret key, stored beside each hash it makes.

    Derived from the key itself (so there is nothing to number or configure) by a one-way HMAC
    of a fixed label: 64 bits that say which key, and nothing about it.
    """
    return hmac.new(pepper.encode(), b"brik-cloud pepper id", hashlib.sha256).hexdigest()[:16]


def api_key_prefix(kind: KeyKind, mode: KeyMode) -> str:
    return f"bk_{_KIND_CODES[kind]}_{mode.value}_"


def generate_key(kind: KeyKind, mode: KeyMode, pepper: str) -> IssuedKey:
    """A project API key."""
    return generate_secret(api_key_prefix(kind, mode), pepper)


def generate_secret(prefix: str, pepper: str) -> IssuedKey:
    """A bearer secret of any kind listed in the module docstring."""
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    plaintext = prefix + random_part + _checksum(random_part)
    return IssuedKey(
        plaintext=plaintext,
        key_hash=hash_key(plaintext, pepper),
        pepper_id=pepper_id(pepper),
        display_prefix=prefix + random_part[:4],
        last_four=plaintext[-4:],
    )


def looks_like_key(text: str, prefix: str | tuple[str, ...] | None = None) -> bool:
    """True when ``text`` has the shape and a valid checksum of a Brik secret (no database needed).

    With ``prefix``, only secrets of that kind qualify (``"bk_pat_"``, ``"bk_sk_"`` …).
    """
    match = KEY_PATTERN.match(text)
    return (
        match is not None
        and _checksum(match["random"]) == match["checksum"]
        and (prefix is None or match["prefix"].startswith(prefix))
    )
