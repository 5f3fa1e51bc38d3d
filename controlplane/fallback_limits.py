"""The brakes each API process keeps in memory for while Redis cannot be reached.

Sign-in throttling (:mod:`controlplane.auth.login_throttle`) and the per-key and per-project
request limits (:mod:`controlplane.rate_limits`) live in Redis so that every API process
enforces one shared limit. Failing open when Redis is away would take every brake off at
once — an attacker who can slow Redis down could then guess passwords without limit — so
each process falls back to its own copy of the same limits:

* :class:`LocalWindows` — fixed-window failure counters (sign-in), and
* :class:`LocalBuckets` — token buckets (API requests),

both with the limits configured for Redis. They are per process: with N API processes a
client gets up to N times the limit while Redis is away, and counts start from zero (the
Redis counters are neither read nor written). That is the price of staying up.

:class:`RedisBreaker` keeps a process from paying a connection attempt on every request
once Redis has failed: for :data:`RETRY_REDIS_AFTER_SECONDS` the fallback answers alone.
Memory stays bounded: entries that have run out (a window that ended, a bucket full again)
are dropped when a table grows past :data:`MAX_ENTRIES`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

logger = logging.getLogger("brik.fallback_limits")

RETRY_REDIS_AFTER_SECONDS = 1.0
MAX_ENTRIES = 100_000

Clock = Callable[[], float]


class RedisBreaker:
    """Says whether to try Redis now; after a failure, not again for a second."""

    def __init__(self, name: str, clock: Clock = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._down_until = 0.0

    def should_try(self) -> bool:
        """True when Redis should be tried (it has not failed in the last second)."""
        return self._clock() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        if self.should_try():  # one line per outage second, not one per request
            logger.warning(
                "%s: Redis is unavailable (%s: %s); using this process's own limits",
                self._name, type(exc).__name__, exc,
            )  # fmt: skip
        self._down_until = self._clock() + RETRY_REDIS_AFTER_SECONDS


@dataclass(frozen=True, slots=True)
class WindowRefusal:
    key: str
    retry_after: int  # whole seconds until the window that refused ends


class LocalWindows:
    """Fixed-window counters: :meth:`take` counts one against every key, or refuses."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}  # key → (count, window ends at)

    def _current(self, key: str, now: float) -> int:
        count, ends = self._counts.get(key, (0, 0.0))
        return count if ends > now else 0

    def take(
        self, keys: Sequence[str], limits: Sequence[int], window: float
    ) -> WindowRefusal | None:
        """Count one against each of ``keys`` unless one is at its limit (then nothing)."""
        now = self._clock()
        for key, limit in zip(keys, limits, strict=True):
            if self._current(key, now) >= limit:
                ends = self._counts[key][1]
                return WindowRefusal(key, max(1, math.ceil(ends - now)))
        self._make_room(now)
        for key in keys:
            count, ends = self._counts.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + window
            self._counts[key] = (count + 1, ends)
        return None

    def give_back(self, key: str) -> None:
        count, ends = self._counts.get(key, (0, 0.0))
        if count > 1:
            self._counts[key] = (count - 1, ends)
        else:
            self._counts.pop(key, None)

    def clear(self, key: str) -> None:
        self._counts.pop(key, None)

    def _make_room(self, now: float) -> None:
        if len(self._counts) < MAX_ENTRIES:
            return
        self._counts = {key: entry for key, entry in self._counts.items() if entry[1] > now}
        if len(self._counts) >= MAX_ENTRIES:  # all live: forget the oldest quarter
            for key in list(self._counts)[: MAX_ENTRIES // 4]:
                del self._counts[key]


class LocalBuckets:
    """Token buckets refilled at ``rate`` per second up to ``burst``: all or none per take."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)

    def take(self, keys: Sequence[str], rate: float, burst: float) -> tuple[bool, list[float]]:
        """Take a token from each bucket if every one has a token; returns what is left."""
        now = self._clock()
        levels = []
        for key in keys:
            tokens, at = self._buckets.get(key, (burst, now))
            levels.append(min(burst, tokens + max(0.0, now - at) * rate))
        allowed = all(level >= 1 for level in levels)
        if allowed:
            levels = [level - 1 for level in levels]
        self._make_room(now, rate, burst)
        for key, level in zip(keys, levels, strict=True):
            self._buckets[key] = (level, now)
        return allowed, levels

    def _make_room(self, now: float, rate: float, burst: float) -> None:
        if len(self._buckets) < MAX_ENTRIES:
            return
        self._buckets = {
            key: (tokens, at)
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * rate < burst  # a full bucket is the same as none
        }
        if len(self._buckets) >= MAX_ENTRIES:
            for key in list(self._buckets)[: MAX_ENTRIES // 4]:
                del self._buckets[key]
