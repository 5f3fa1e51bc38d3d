"""How long a temporary failure is retried, and how far apart — by time, not by count.

A provider brownout (APNs or FCM answering 429, 500 or 503, connections dropping) lasts minutes,
sometimes hours. Six tries two seconds apart and doubling gave up after about a minute, and a
push the API had accepted ended ``failed`` for good. So a delivery that failed temporarily is
retried with exponential backoff and jitter, capped at ``delivery_retry_max_seconds``, for as
long as delivering it still makes sense:

* until the push expires: its ``ttl`` counted from when it became due (its ``send_at`` if it was
  scheduled, else its creation) — the moment Apple and Google would drop it themselves;
* without a ``ttl``, for ``delivery_retry_budget_seconds`` (4 hours by default) from then — the
  same spirit as APNs' own store-and-forward for a phone that is offline.

``delivery_max_attempts`` (200) is only a safety valve: it stops a misconfiguration (a tiny
``delivery_retry_max_seconds``) from turning hours of budget into a flood of sends. At the
defaults the budget ends first (the backoff reaches its 5-minute cap after 8 tries: about 70
attempts in 4 hours). A provider's ``Retry-After`` is always honoured; a retry that it would
put past the deadline is not made.

Each retry is a new arq job (:func:`controlplane.core.queue.enqueue_deliveries`, origin
``retry:…``), so arq's own ``max_tries`` never counts them: it only bounds how often one job is
re-run after a worker died or it timed out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from controlplane.models import Push
from controlplane.settings import Settings


def due_at(push: Push) -> datetime:
    """When the push became due: its ``send_at`` when scheduled for later, else its creation."""
    created: datetime = push.created_at
    send_at: datetime | None = push.send_at
    return max(created, send_at) if send_at is not None else created


def expires_at(push: Push, ttl: int | None) -> datetime | None:
    """When the push stops being worth delivering (``ttl`` seconds after it became due)."""
    return None if ttl is None else due_at(push) + timedelta(seconds=ttl)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


@dataclass(frozen=True, slots=True)
class RetryWindow:
    """Until when a push's deliveries are retried, and what to say when it closes."""

    deadline: datetime
    closed: str  # the final reason's opening words

    @classmethod
    def of(cls, push: Push, ttl: int | None, settings: Settings) -> RetryWindow:
        budget = settings.delivery_retry_budget_seconds
        budget_ends = due_at(push) + timedelta(seconds=budget)
        expiry = expires_at(push, ttl)
        if expiry is not None and expiry <= budget_ends:
            return cls(expiry, f"expired while retrying (its ttl of {ttl} s ran out)")
        return cls(budget_ends, f"gave up after retrying for {_duration(budget)}")

    def next_delay(
        self, attempts: int, now: datetime, retry_after: float | None, settings: Settings
    ) -> float | None:
        """Seconds until the next attempt, or None when there is none to make."""
        if settings.delivery_max_attempts and attempts >= settings.delivery_max_attempts:
            return None
        left = (self.deadline - now).total_seconds()
        if left <= 0 or (retry_after or 0.0) > left:
            return None
        # The last attempt goes at the deadline rather than none at all.
        return min(retry_delay(attempts, settings, retry_after), left)

    def gave_up(self, attempts: int, reason: str, settings: Settings) -> str:
        """The final reason of a delivery :meth:`next_delay` has no attempt left for."""
        if settings.delivery_max_attempts and attempts >= settings.delivery_max_attempts:
            return f"gave up after {attempts} attempts: {reason}"
        return f"{self.closed}: {reason}"


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after ``attempts``: doubling from ``base`` up to ``cap``, with
    jitter (a half to the whole of it), so retries of one outage do not all come back at once."""
    ceiling = min(cap, base * 2 ** max(0, min(attempts - 1, 30)))
    return float(ceiling * random.uniform(0.5, 1.0))


def retry_delay(attempts: int, settings: Settings, retry_after: float | None) -> float:
    """Exponential backoff with jitter, capped; never sooner than the provider's Retry-After."""
    delay = backoff(
        attempts, settings.delivery_retry_base_seconds, settings.delivery_retry_max_seconds
    )
    return float(max(delay, retry_after or 0.0))
