"""Accepting a push: one transaction commits it, its deliveries and its quota, then the queue.

Every way a tenant sends — ``POST /v1/pushes``, a Live Activity started, updated or ended by
id (:mod:`controlplane.activities`) — ends here, so they all keep the same promise: the push
is accepted only once it and one delivery row per destination are committed with the month's
quota taken, and from then on it cannot be lost. The jobs are handed to the queue after the
commit (if Redis is away then, as soon as it is back: :mod:`controlplane.enqueue_relay`), and
the worker's reconciler re-enqueues anything a lost job leaves behind.

Domain code: the caller passes a :class:`Sender` (who sends and what sending needs), never an
HTTP request; it must run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from controlplane import mail
from controlplane.enqueue_relay import EnqueueRelay, Handover
from controlplane.errors import APIError, InvalidRequest, QuotaExceeded
from controlplane.fan_out import (
    Destination,
    NewPush,
    insert_deliveries_of,
    insert_push,
    insert_pushes,
)
from controlplane.models import (
    KeyMode,
    Organization,
    Project,
    ProviderCredential,
    Push,
    PushStatus,
)
from controlplane.models.ids import new_ids
from controlplane.payloads import ProviderCatalog, PushContent
from controlplane.plans import limits_for
from controlplane.settings import Settings
from controlplane.usage import reserve_pushes, reserve_what_fits
from controlplane.usage_alerts import warn_if_crossed
from controlplane.webhook_events import emit_push_completed

AfterCommit = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Sender:
    """Who sends (a project in one mode) and what accepting a push needs from the caller."""

    project: Project
    organization: Organization
    mode: KeyMode
    settings: Settings
    providers: ProviderCatalog
    relay: EnqueueRelay
    send_mail: Callable[[mail.Email], Awaitable[None]]
    after_commit: list[AfterCommit] = field(default_factory=list)
    # The providers the project holds a credential for, if the caller read them already (with
    # the API key's tenant); None: read here.
    credentials: frozenset[str] | None = None

    @property
    def test_mode(self) -> bool:
        return self.mode is KeyMode.TEST


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One push of a batch to accept: its content, what its request named, where it goes."""

    content: PushContent
    target: dict[str, Any]
    destinations: list[Destination]
    send_at: datetime | None = None


async def providers_for(
    sender: Sender, platforms: set[str], param: str | None = "to"
) -> dict[str, str]:
    """Platform → provider, as the providers declare it (test mode: the sandbox). 400
    ``credential_missing`` if the project lacks a live provider's credential."""
    providers = {p: sender.providers.provider_for(p, test_mode=sender.test_mode) for p in platforms}
    missing = await _without_credential(sender, providers)
    if missing:
        raise _credential_missing(*missing[0], param)
    return providers


async def _without_credential(sender: Sender, providers: dict[str, str]) -> list[tuple[str, str]]:
    """The (platform, provider) pairs of ``providers`` whose credential the project lacks
    (none in test mode: the sandbox needs none)."""
    if sender.test_mode or not providers:
        return []
    have = sender.credentials
    if have is None:
        stored = await ProviderCredential.filter(project_id=sender.project.id).values_list(
            "provider", flat=True
        )
        have = frozenset(str(provider) for provider in stored)
    return [(platform, name) for platform, name in providers.items() if name not in have]


def _credential_missing(platform: str, provider: str, param: str | None) -> InvalidRequest:
    return InvalidRequest(
        f"Some recipients are {platform} devices, and this project has no "
        f"{provider} credential: PUT /v1/credentials/{provider} first.",
        code="credential_missing",
        param=param,
    )


def _first_status(
    destinations: list[Destination], send_at: datetime | None, now: datetime
) -> PushStatus:
    """A push's status as it is accepted: scheduled for later, queued, or — going to nobody —
    completed at once."""
    if send_at is not None and send_at > now:
        return PushStatus.SCHEDULED
    return PushStatus.QUEUED if destinations else PushStatus.COMPLETED


async def accept_push(
    sender: Sender,
    content: PushContent,
    target: dict[str, Any],
    destinations: list[Destination],
    now: datetime,
    *,
    send_at: datetime | None = None,
    activity_id: str | None = None,
    param: str | None = "to",
    within_quota: bool = True,
) -> Push:
    """Commit a push to ``destinations`` (inside the caller's transaction), take its quota
    (429 ``quota_exceeded``, nothing written), and hand it to the queue after the commit.

    ``send_at`` in the future schedules it. A push to nobody is committed ``completed``.
    ``within_quota=False``: counted, but never refused for the quota (a Live Activity's end).
    ``param``: the request field a missing credential is blamed on.
    """
    providers = await providers_for(sender, {d.platform for d in destinations}, param)
    outgoing = Outgoing(content, target, destinations, send_at)
    new_push = _push_of(new_ids("psh", 1)[0], outgoing, now, activity_id)
    delivery_ids = await insert_push(
        sender.project.id, sender.mode, now, new_push, destinations, providers
    )
    push = new_push.as_model(sender.project.id, sender.mode, now)
    scheduled = push.status is PushStatus.SCHEDULED
    if not destinations:
        await emit_push_completed(push, now)  # completed as it is accepted: nothing to send
        return push
    # Last before the commit: the month's usage row stays locked for as short as can be.
    limits = limits_for(sender.organization.plan, sender.settings)
    try:
        reservation = await reserve_pushes(
            sender.organization, sender.mode, len(destinations), limits, now,
            enforce=within_quota,
        )  # fmt: skip
    except QuotaExceeded as exc:
        exc.param = param  # the field that named the recipients, if the request has one
        raise
    sender.after_commit.append(
        partial(warn_if_crossed, sender.organization, reservation, limits, sender.send_mail)
    )
    # After the commit, and never an error: the push is accepted whether Redis answers now or
    # later (controlplane/enqueue_relay.py).
    handover = Handover(push.id, delivery_ids, send_at if scheduled else None)
    sender.after_commit.append(partial(sender.relay.hand_over, handover))
    return push


async def accept_pushes(
    sender: Sender, batch: Sequence[Outgoing], now: datetime
) -> list[NewPush | APIError]:
    """Accept a batch of independent pushes (inside the caller's transaction): each is
    committed with its deliveries and quota like :func:`accept_push`, or refused alone — a
    missing credential for its devices' platform, or no room left in the month's quota for
    it (those that fit are taken, in order) — with the error in its place in the answer.

    Bulk work, whatever the batch's size: one credential read, one insert of the pushes and
    one of all their deliveries, one quota statement (past the quota, a few more, and the
    pushes that did not fit deleted again), one queue handover after the commit.
    """
    platforms = {d.platform for outgoing in batch for d in outgoing.destinations}
    providers = {p: sender.providers.provider_for(p, test_mode=sender.test_mode) for p in platforms}
    missing = dict(await _without_credential(sender, providers))
    results: list[NewPush | APIError | None] = [None] * len(batch)
    for index, outgoing in enumerate(batch):
        lacking = sorted({d.platform for d in outgoing.destinations} & missing.keys())
        if lacking:
            results[index] = _credential_missing(lacking[0], missing[lacking[0]], "to")
    counts = [0 if results[i] else len(outgoing.destinations) for i, outgoing in enumerate(batch)]
    limits = limits_for(sender.organization.plan, sender.settings)
    project_id = sender.project.id
    push_ids = iter(new_ids("psh", len(batch)))
    pushes = [None if results[i] else _push_of(next(push_ids), outgoing, now)
              for i, outgoing in enumerate(batch)]  # fmt: skip
    accepted = [(push, outgoing.destinations) for push, outgoing in zip(pushes, batch, strict=True)
                if push is not None]  # fmt: skip
    # Written first, the quota taken last: the month's usage row stays locked (until the
    # commit) for as short as can be, as accept_push does.
    await insert_pushes(project_id, sender.mode, now, [push for push, _ in accepted])
    delivery_ids = await insert_deliveries_of(accepted, providers)
    reservation, refusals = await reserve_what_fits(
        sender.organization, sender.mode, counts, limits, now
    )
    refused = {push.id for push, refusal in zip(pushes, refusals, strict=True)
               if push is not None and refusal is not None}  # fmt: skip
    if refused:  # past the quota (the rare case): what did not fit goes again, deliveries too
        await Push.filter(id__in=refused).delete()
    for index, (push, refusal) in enumerate(zip(pushes, refusals, strict=True)):
        if refusal is not None:
            results[index] = refusal
        elif push is not None:
            results[index] = push
    handovers = []
    for (push, destinations), ids in zip(accepted, delivery_ids, strict=True):
        if push.id in refused:
            continue
        if not destinations:  # completed as it is accepted
            await emit_push_completed(push.as_model(project_id, sender.mode, now), now)
            continue
        scheduled = push.status is PushStatus.SCHEDULED
        handovers.append(Handover(push.id, ids, push.send_at if scheduled else None))
    if reservation is not None:
        sender.after_commit.append(
            partial(warn_if_crossed, sender.organization, reservation, limits, sender.send_mail)
        )
    if handovers:
        sender.after_commit.append(partial(sender.relay.hand_over_many, handovers))
    return [result for result in results if result is not None]


def _push_of(
    push_id: str, outgoing: Outgoing, now: datetime, activity_id: str | None = None
) -> NewPush:
    """The push ``outgoing`` is committed as."""
    content, destinations, send_at = outgoing.content, outgoing.destinations, outgoing.send_at
    return NewPush(
        id=push_id, kind=content.kind,
        content=content.model_dump(mode="json", exclude_none=True), target=outgoing.target,
        status=_first_status(destinations, send_at, now),
        collapse_id=content.collapse_id, send_at=send_at, recipients=len(destinations),
        completed_at=None if destinations else now, activity_id=activity_id,
    )  # fmt: skip
