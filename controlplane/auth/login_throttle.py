"""Sign-in attempts are throttled per account and per client IP; too many failures → 429.

Fixed windows of ``login_failure_window_seconds``: an account that saw
``login_max_failures_per_account`` failures (or an IP that saw ``login_max_failures_per_ip``)
is refused until its window ends, whether the next password is right or not — otherwise the
lock would tell an attacker when they guessed right.

An attempt takes its slot *before* the password is hashed, in one Redis script that checks
both counters and increments both, or refuses: otherwise attempts sent at once would all
read "4 failures so far", all spend their ~0.4 s in argon2, and all be evaluated (they were:
24 parallel guesses, no 429, and the right one signed in). So at most the limit is ever
evaluated per window, however many arrive together. A successful sign-in gives its slot back:
the account's count is cleared and the IP's decremented; an attempt that could not be
evaluated (the database was down) gives back both.

Counters live in Redis, so every API process enforces the same limit; while Redis cannot be
reached each process keeps the same limits in memory (:mod:`controlplane.fallback_limits`).
Account counters are keyed by a hash of the email: Redis never holds the address itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from controlplane.errors import RateLimited
from controlplane.fallback_limits import LocalWindows, RedisBreaker
from controlplane.settings import Settings

_PREFIX = "brik:login-failures"

# KEYS: account counter, IP counter. ARGV: account limit, IP limit, window (seconds).
# Returns {1, 0} when the slot is taken, {0, seconds until the refusing window ends} if not.
_TAKE = """
for i = 1, 2 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i]) then
    return {0, math.max(redis.call('TTL', KEYS[i]), 1)}
  end
end
for i = 1, 2 do
  redis.call('INCR', KEYS[i])
  if redis.call('TTL', KEYS[i]) < 0 then
    redis.call('EXPIRE', KEYS[i], ARGV[3])
  end
end
return {1, 0}
"""

# KEYS: account counter, IP counter. ARGV[1]: "clear" (signed in) or "release" (not evaluated).
_GIVE_BACK = """
if ARGV[1] == 'clear' then
  redis.call('DEL', KEYS[1])
elseif tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 1
"""


def _keys(email: str, ip: str) -> tuple[str, str]:
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"{_PREFIX}:account:{account}", f"{_PREFIX}:ip:{ip}"


@dataclass(frozen=True, slots=True)
class Slot:
    """One attempt's place in both counters, and where it was counted."""

    account_key: str
    ip_key: str
    in_redis: bool


class LoginThrottle:
    """One per API process: takes and gives back sign-in slots (Redis, else in memory)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._settings = settings
        self._breaker = RedisBreaker("sign-in throttle")
        self._local = LocalWindows()

    async def take(self, email: str, ip: str) -> Slot:
        """This attempt's slot, or 429 ``too_many_login_attempts`` with ``Retry-After``."""
        settings = self._settings
        account_key, ip_key = _keys(email, ip)
        limits = (settings.login_max_failures_per_account, settings.login_max_failures_per_ip)
        window = settings.login_failure_window_seconds
        if self._breaker.should_try():
            try:
                taken, retry_after = await self._take(
                    keys=[account_key, ip_key], args=[*limits, window]
                )
            except RedisError as exc:
                self._breaker.failed(exc)
            else:
                if not taken:
                    raise _locked(int(retry_after))
                return Slot(account_key, ip_key, in_redis=True)
        refusal = self._local.take((account_key, ip_key), limits, window)
        if refusal is not None:
            raise _locked(refusal.retry_after)
        return Slot(account_key, ip_key, in_redis=False)

    async def signed_in(self, slot: Slot) -> None:
        """The attempt succeeded: the account's failures are forgiven, the IP's slot returned."""
        await self._return(slot, "clear")

    async def not_evaluated(self, slot: Slot) -> None:
        """The attempt never got an answer (the database failed): it does not count."""
        await self._return(slot, "release")

    async def _return(self, slot: Slot, how: str) -> None:
        if slot.in_redis:
            try:
                await self._give_back(keys=[slot.account_key, slot.ip_key], args=[how])
            except RedisError as exc:  # the slot runs out with its window instead
                self._breaker.failed(exc)
            return
        if how == "clear":
            self._local.clear(slot.account_key)
        else:
            self._local.give_back(slot.account_key)
        self._local.give_back(slot.ip_key)


def _locked(retry_after: int) -> RateLimited:
    return RateLimited(
        f"Too many failed sign-ins; try again in {retry_after} seconds.",
        code="too_many_login_attempts",
        headers={"Retry-After": str(retry_after)},
    )
