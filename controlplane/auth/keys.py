"""API key material: generation, the checksum secret scanners can verify, and peppered hashing.

A key reads ``bk_<sk|pk>_<test|live>_<43 random base62 chars><6-char checksum>``. The random
part carries 256 bits; the checksum (CRC-32 of the random part, base62) lets a scanner tell a
real leaked key from look-alike text without asking us. The server keeps only
HMAC-SHA256(pepper, key), the display prefix and the last four characters.
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
KEY_PATTERN = re.compile(
    r"^bk_(?P<kind>sk|pk)_(?P<mode>test|live)_"
    rf"(?P<random>[0-9A-Za-z]{{{_RANDOM_LENGTH}}})(?P<checksum>[0-9A-Za-z]{{{_CHECKSUM_LENGTH}}})$"
)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly generated key: ``plaintext`` is shown once and never stored."""

    plaintext: str
    key_hash: str
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


def generate_key(kind: KeyKind, mode: KeyMode, pepper: str) -> IssuedKey:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    prefix = f"bk_{_KIND_CODES[kind]}_{mode.value}_"
    plaintext = prefix + random_part + _checksum(random_part)
    return IssuedKey(
        plaintext=plaintext,
        key_hash=hash_key(plaintext, pepper),
        display_prefix=prefix + random_part[:4],
        last_four=plaintext[-4:],
    )


def looks_like_key(text: str) -> bool:
    """True when ``text`` has the shape and a valid checksum of a Brik key (no database needed)."""
    match = KEY_PATTERN.match(text)
    return match is not None and _checksum(match["random"]) == match["checksum"]
