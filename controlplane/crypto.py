"""Secrets at rest: a Fernet key ring from ``BRIK_ENCRYPTION_KEYS``.

Anything the product must read back later (provider credentials) is stored as a Fernet token.
The ring holds several keys, newest first: the newest encrypts, every key decrypts, so keys
rotate without downtime — add a new key in front, run ``brik-cloud rotate-keys`` to re-encrypt
everything under it, then drop the old key. Fernet is AES-128-CBC with HMAC-SHA256
(authenticated); a token that was tampered with, or was made under a key no longer in the ring,
fails to decrypt with :class:`UndecryptableSecret` rather than returning garbage.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class KeyRingError(ValueError):
    """The configured keys are missing or malformed."""


class UndecryptableSecret(Exception):
    """A stored token that no key of the ring can open (tampered, or its key was dropped)."""


@contextmanager
def _undecryptable() -> Iterator[None]:
    try:
        yield
    except (InvalidToken, UnicodeEncodeError):
        raise UndecryptableSecret("no key in BRIK_ENCRYPTION_KEYS opens this secret") from None


class KeyRing:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise KeyRingError(
                "BRIK_ENCRYPTION_KEYS is empty: set at least one Fernet key "
                '(python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())")'
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                raise KeyRingError(
                    f"BRIK_ENCRYPTION_KEYS entry {position} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from None
        self._primary = fernets[0]
        self._ring = MultiFernet(fernets)

    def encrypt(self, plaintext: bytes) -> str:
        return self._ring.encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        with _undecryptable():
            return self._ring.decrypt(token.encode("ascii"))

    def is_current(self, token: str) -> bool:
        """True when ``token`` is already encrypted under the newest key."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted under the newest key (its plaintext never leaves this call)."""
        with _undecryptable():
            return self._ring.rotate(token.encode("ascii")).decode("ascii")
