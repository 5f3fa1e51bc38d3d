"""Password hashing with argon2id (argon2-cffi's tuned defaults).

Hashing is deliberately slow (tens of milliseconds of CPU), so request handlers use the
``*_async`` forms, which run it in a thread instead of stalling the event loop.
"""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _decoy_hash() -> str:
    return hash_password("decoy password for unknown accounts")


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    """Verify; with no hash (unknown account, OIDC-only user) spend the same time and say no."""
    if password_hash is None:
        await asyncio.to_thread(verify_password, _decoy_hash(), password)
        return False
    return await asyncio.to_thread(verify_password, password_hash, password)
