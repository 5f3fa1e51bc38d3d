"""Failed sign-ins are counted per account and per client IP in Redis; too many → 429.

Fixed windows of ``login_failure_window_seconds``: an account that saw
``login_max_failures_per_account`` failures (or an IP that saw ``login_max_failures_per_ip``)
is refused until its window ends, whether the next password is right or not — otherwise the
lock would tell an attacker when they guessed right. A successful sign-in clears the
account's count. Counters live in Redis, so every API process enforces the same limit.
Account counters are keyed by a hash of the email: Redis never holds the address itself.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from controlplane.errors import RateLimited
from controlplane.settings import Settings

_PREFIX = "brik:login-failures"


def _keys(email: str, ip: str) -> tuple[str, str]:
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"{_PREFIX}:account:{account}", f"{_PREFIX}:ip:{ip}"


async def check_not_locked(redis: Redis, settings: Settings, email: str, ip: str) -> None:
    account_key, ip_key = _keys(email, ip)
    async with redis.pipeline(transaction=False) as pipe:
        for key in (account_key, ip_key):
            pipe.get(key)
            pipe.ttl(key)
        account_count, account_ttl, ip_count, ip_ttl = await pipe.execute()
    for count, ttl, limit in (
        (account_count, account_ttl, settings.login_max_failures_per_account),
        (ip_count, ip_ttl, settings.login_max_failures_per_ip),
    ):
        if count is not None and int(count) >= limit:
            retry_after = max(int(ttl), 1)
            raise RateLimited(
                f"Too many failed sign-ins; try again in {retry_after} seconds.",
                code="too_many_login_attempts",
                headers={"Retry-After": str(retry_after)},
            )


async def record_failure(redis: Redis, settings: Settings, email: str, ip: str) -> None:
    window = settings.login_failure_window_seconds
    async with redis.pipeline(transaction=True) as pipe:
        for key in _keys(email, ip):
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
        await pipe.execute()


async def clear_account(redis: Redis, email: str) -> None:
    account_key, _ = _keys(email, "")
    await redis.delete(account_key)
