"""Quota warnings: an email to the organization's owners at 80 % and at 100 % of a quota, and a
``usage.threshold`` webhook event to each of its projects' endpoints that want one.

Each warning goes out once per organization, period, mode and threshold, whichever process
crosses it first: a ``usage_alerts`` row is inserted before sending, and only the insert that
wins (the unique constraint decides) sends. Sent after the push committed, through the
configured mail sender, recorded in ``notifications`` like every email. The caller says how an
email goes out (``send``): this module decides what to say and to whom, never how a request
reached it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from controlplane import mail
from controlplane.models import Membership, Organization, Role, UsageAlert, UsageMetric
from controlplane.plans import PlanLimits
from controlplane.usage import WARNING_PERCENTS, Reservation, period_end, pushes_noun
from controlplane.webhook_events import emit_to_organization, usage_threshold_data


def crossed(reservation: Reservation, quota: int) -> list[int]:
    """The warning percents this reservation went past."""
    return [
        percent
        for percent in WARNING_PERCENTS
        if reservation.before < math.ceil(quota * percent / 100) <= reservation.after
    ]


async def warn_if_crossed(
    organization: Organization,
    reservation: Reservation,
    limits: PlanLimits,
    send: Callable[[mail.Email], Awaitable[object]],
) -> None:
    """Mail the owners of ``organization`` each warning ``reservation`` crossed, once."""
    quota = limits.pushes_per_month
    if quota is None:
        return
    owners: list[str] | None = None
    for percent in crossed(reservation, quota):
        try:
            async with in_transaction():  # the warning and its webhook event, or neither
                await UsageAlert.create(
                    organization=organization, period_start=reservation.period_start,
                    mode=reservation.mode, metric=UsageMetric.PUSHES, percent=percent,
                )  # fmt: skip
                await emit_to_organization(
                    organization.id, reservation.mode, "usage.threshold",
                    usage_threshold_data(
                        organization.id, "pushes", percent, reservation.after, quota,
                        reservation.mode, reservation.period_start,
                        period_end(reservation.period_start),
                    ),
                )  # fmt: skip
        except IntegrityError:
            continue  # another process sent this one
        if owners is None:
            owners = [str(email) for email in await Membership.filter(
                organization_id=organization.id, role=Role.OWNER
            ).values_list("user__email", flat=True)]  # fmt: skip
        for email in owners:
            await send(_warning(email, organization, reservation, limits, quota, percent))


def _warning(
    to: str, organization: Organization, reservation: Reservation, limits: PlanLimits,
    quota: int, percent: int,
) -> mail.Email:  # fmt: skip
    what = pushes_noun(reservation.mode)
    past = "has used all" if percent >= 100 else f"has used {percent} %"
    refused = limits.push_quota(reservation.mode) is not None
    if percent >= 100:
        then = "Further sends are refused" if refused else "Further pushes are billed as overage"
    else:
        then = (
            "Sends past it will be refused" if refused else "Pushes past it are billed as overage"
        )
    return mail.Email(
        to=to,
        subject=f"{organization.name} {past} of its {what} for this month",
        body=(
            f"{organization.name} ({organization.id}) {past} of its {quota:,} {what} for this "
            f"month ({reservation.after:,} used). {then}; the quota resets at "
            f"{period_end(reservation.period_start).isoformat()}."
        ),
        kind=f"usage.{what.replace(' ', '_').replace('-', '_')}.{percent}",
        organization_id=organization.id,
    )
