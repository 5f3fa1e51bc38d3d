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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from controlplane import mail
from controlplane.enqueue_relay import EnqueueRelay, Handover
from controlplane.errors import InvalidRequest, QuotaExceeded
from controlplane.fan_out import Destination, insert_deliveries
from controlplane.models import (
    KeyMode,
    Organization,
    Project,
    ProviderCredential,
    Push,
    PushStatus,
)
from controlplane.payloads import ProviderCatalog, PushContent
from controlplane.plans import limits_for
from controlplane.settings import Settings
from controlplane.usage import reserve_pushes
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

    @property
    def test_mode(self) -> bool:
        return self.mode is KeyMode.TEST


async def providers_for(
    sender: Sender, platforms: set[str], param: str | None = "to"
) -> dict[str, str]:
    """Platform → provider, as the providers declare it (test mode: the sandbox). 400
    ``credential_missing`` if the project lacks a live provider's credential."""
    providers = {p: sender.providers.provider_for(p, test_mode=sender.test_mode) for p in platforms}
    if sender.test_mode:
        return providers
    stored = await ProviderCredential.filter(project_id=sender.project.id).values_list(
        "provider", flat=True
    )
    have = {str(provider) for provider in stored}
    for platform, provider in providers.items():
        if provider not in have:
            raise InvalidRequest(
                f"Some recipients are {platform} devices, and this project has no "
                f"{provider} credential: PUT /v1/credentials/{provider} first.",
                code="credential_missing",
                param=param,
            )
    return providers


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
    scheduled = send_at is not None and send_at > now
    push = await Push.create(
        project=sender.project,
        mode=sender.mode,
        kind=content.kind,
        content=content.model_dump(mode="json", exclude_none=True),
        target=target,
        status=(
            PushStatus.SCHEDULED if scheduled
            else PushStatus.QUEUED if destinations else PushStatus.COMPLETED
        ),
        collapse_id=content.collapse_id,
        send_at=send_at,
        recipients=len(destinations),
        completed_at=None if destinations else now,
        activity_id=activity_id,
    )  # fmt: skip
    delivery_ids = await insert_deliveries(push, destinations, providers)
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
