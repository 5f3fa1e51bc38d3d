"""Usage accounting and quota enforcement, per organization and calendar month (UTC).

Pushes count one per recipient device accepted by ``POST /v1/pushes``, reserved in the same
transaction that queues them: :func:`reserve_pushes` adds them to the month's row with one
conditional upsert (``pushes + n <= quota``), so concurrent sends serialise on that row and the
quota is never overshot, not even by one. A send that does not fit is refused whole and its
transaction rolls back — nothing of it is queued, nothing is counted. Test-mode pushes count
against a quota of their own. Canceling a scheduled push gives back what it had reserved and
not sent (:func:`release_pushes`, in the cancel's transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from tortoise.expressions import F
from tortoise.queryset import QuerySet

from controlplane.errors import QuotaExceeded
from controlplane.models import KeyMode, Organization, UsageDay, UsageMetric, UsagePeriod
from controlplane.plans import PlanLimits
from controlplane.sql_rows import parameter

WARNING_PERCENTS = (80, 100)


def period_start(moment: datetime) -> date:
    return moment.astimezone(UTC).date().replace(day=1)


def period_end(start: date) -> datetime:
    """When the month that began on ``start`` ends, and its quotas reset."""
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def resets_at(moment: datetime) -> datetime:
    return period_end(period_start(moment))


@dataclass(frozen=True)
class Reservation:
    """Pushes reserved by one send, and the month's count before and after it."""

    mode: KeyMode
    period_start: date
    before: int
    after: int


async def reserve_pushes(
    organization: Organization,
    mode: KeyMode,
    count: int,
    limits: PlanLimits,
    now: datetime,
    *,
    enforce: bool = True,
) -> Reservation:
    """Count ``count`` pushes against the month, or raise :class:`QuotaExceeded` for all.

    ``enforce=False`` counts them even past the quota (what must go whatever the plan: a Live
    Activity's end, without which it would stay on Lock Screens for hours)."""
    start = period_start(now)
    row = UsagePeriod.filter(organization_id=organization.id, period_start=start, mode=mode)
    quota = limits.push_quota(mode) if enforce else None
    if quota is not None and count > quota:
        raise _exceeded(mode, count, quota, await _count(row), now)
    # One statement (the hot path of every send): create the month's row or add to it, only
    # while the sum stays within the quota; nothing comes back when it would not. On
    # PostgreSQL the day's total is added in the same statement, only if the month's was.
    client = UsagePeriod._meta.db
    arg = partial(parameter, client.capabilities.dialect)
    month = (
        f"INSERT INTO usage_periods (organization_id, period_start, mode, pushes, "
        f"overage_reported) VALUES ({arg(1)}, {arg(2)}, {arg(3)}, {arg(4)}, 0) "
        f"ON CONFLICT (organization_id, period_start, mode) DO UPDATE "
        f"SET pushes = usage_periods.pushes + excluded.pushes "
        f"WHERE {arg(5, 'bigint')} IS NULL OR usage_periods.pushes + excluded.pushes <= {arg(5)} "
        f"RETURNING pushes"
    )  # fmt: skip
    params: list[Any] = [organization.id, start, mode.value, count, quota]
    together = client.capabilities.dialect == "postgres"
    if together:
        month = (
            f"WITH month AS ({month}), day AS ("
            f"INSERT INTO usage_days (organization_id, day, mode, metric, value) "
            f"SELECT $1, $6::date, $3, $7::text, $4 WHERE EXISTS (SELECT 1 FROM month) "
            f"ON CONFLICT (organization_id, day, mode, metric) DO UPDATE "
            f"SET value = usage_days.value + excluded.value) SELECT pushes FROM month"
        )  # fmt: skip
        params += [now.date(), UsageMetric.PUSHES.value]
    added = await client.execute_query_dict(month, params)
    if not added:
        raise _exceeded(mode, count, quota or 0, await _count(row), now)
    after = int(added[0]["pushes"])
    if not together:
        await add_to_day(organization.id, UsageMetric.PUSHES, mode, count, now.date())
    return Reservation(mode=mode, period_start=start, before=after - count, after=after)


async def reserve_what_fits(
    organization: Organization,
    mode: KeyMode,
    counts: Sequence[int],
    limits: PlanLimits,
    now: datetime,
) -> tuple[Reservation | None, list[QuotaExceeded | None]]:
    """For a batch of sends: reserve every one of ``counts`` the month still has room for,
    each whole, and refuse the others — one :class:`QuotaExceeded` (or None) per send.

    Tried first all at once (one statement, like :func:`reserve_pushes`). Past the quota,
    sends are taken in order while they fit in what is left — a send that does not fit is
    refused, a smaller one after it may still go — and reserved together under the same
    conditional upsert, so a concurrent send can only make this try again, never overshoot.
    """
    wanted = [index for index, count in enumerate(counts) if count > 0]
    refused: list[int] = []
    quota = limits.push_quota(mode)
    row = UsagePeriod.filter(organization_id=organization.id, period_start=period_start(now),
                             mode=mode)  # fmt: skip
    reservation = None
    for _ in range(3):
        if not wanted:
            break
        try:
            reservation = await reserve_pushes(
                organization, mode, sum(counts[index] for index in wanted), limits, now
            )
        except QuotaExceeded:
            room = (quota or 0) - await _count(row)
            fitting: list[int] = []
            for index in wanted:
                if counts[index] <= room:
                    fitting.append(index)
                    room -= counts[index]
                else:
                    refused.append(index)
            wanted = fitting
            continue
        wanted = []
        break
    refused += wanted  # three tries lost to concurrent sends: refused like the rest
    refusals: list[QuotaExceeded | None] = [None] * len(counts)
    if refused:
        used = reservation.after if reservation is not None else await _count(row)
        for index in refused:
            refusals[index] = _exceeded(mode, counts[index], quota or 0, used, now)
    return reservation, refusals


async def release_pushes(
    organization_id: str, mode: KeyMode, count: int, reserved_at: datetime
) -> None:
    """Give back ``count`` pushes reserved at ``reserved_at``, to that month and that day.

    One conditional UPDATE each, on the caller's connection (so inside its transaction): a
    concurrent send's reservation and this release serialise on the month's row, and a count
    never goes below zero.
    """
    await UsagePeriod.filter(
        organization_id=organization_id, period_start=period_start(reserved_at), mode=mode,
        pushes__gte=count,
    ).update(pushes=F("pushes") - count)  # fmt: skip
    await UsageDay.filter(
        organization_id=organization_id, day=reserved_at.astimezone(UTC).date(), mode=mode,
        metric=UsageMetric.PUSHES, value__gte=count,
    ).update(value=F("value") - count)  # fmt: skip


async def _count(row: QuerySet[UsagePeriod]) -> int:
    values: list[int] = await row.values_list("pushes", flat=True)  # type: ignore[assignment]
    return int(values[0]) if values else 0


def pushes_noun(mode: KeyMode) -> str:
    """What a mode's pushes are called in messages: test mode has a quota of its own."""
    return "test-mode pushes" if mode is KeyMode.TEST else "pushes"


def _exceeded(mode: KeyMode, count: int, quota: int, used: int, now: datetime) -> QuotaExceeded:
    return QuotaExceeded(
        f"This send needs {count:,} {pushes_noun(mode)} but the organization has used "
        f"{used:,} of its {quota:,} for this month; the quota resets at "
        f"{resets_at(now).isoformat()}. Upgrade the plan for more.",
        param="to",
    )


async def add_to_day(
    organization_id: str, metric: UsageMetric, mode: KeyMode, amount: int, day: date
) -> None:
    """Add ``amount`` to a day's total (atomic: one upsert)."""
    client = UsageDay._meta.db
    arg = partial(parameter, client.capabilities.dialect)
    await client.execute_query(
        f"INSERT INTO usage_days (organization_id, day, mode, metric, value) "
        f"VALUES ({arg(1)}, {arg(2)}, {arg(3)}, {arg(4)}, {arg(5)}) "
        f"ON CONFLICT (organization_id, day, mode, metric) DO UPDATE "
        f"SET value = usage_days.value + excluded.value",
        [organization_id, day, mode.value, metric.value, amount],
    )  # fmt: skip
