"""Sending webhook deliveries: at least once, in order per object, retried for days.

The outbox rows (``controlplane/models/webhooks.py``) are the truth; Redis only says which to
look at now. So nothing depends on a job surviving:

* **The dispatcher** (:func:`dispatch_webhooks`, a cron every
  ``BRIK_WEBHOOK_DISPATCH_EVERY_SECONDS``) enqueues a job for every delivery that is due —
  ``queued`` with no ``next_attempt_at`` or one passed, or ``sending`` with its lease run out (its
  worker died mid-send). Job ids name the attempt (``webhook:<delivery>:<attempts>``), so a
  delivery handed over every second is still one job. An event committed a moment ago (by the
  API, a Stripe webhook, a worker) goes out within a second, whatever process wrote it.
* **The job** (:func:`deliver_webhook`) claims its row with one conditional UPDATE under a fresh
  lease, signs and sends it (``workers/webhook_transport.py``: the address policy, the timeout,
  the capped read), and records the answer only where its lease still holds — so a duplicated
  or late job sends nothing already recorded. A worker killed mid-send leaves a ``sending`` row
  whose lease runs out; the dispatcher hands it over again and it is sent again (at least once:
  receivers deduplicate by the event id).
* **Retries**: any answer but a 2xx (a 3xx too: redirects are not followed), a timeout or a
  connection failure is retried with exponential backoff and jitter
  (``BRIK_WEBHOOK_RETRY_BASE_SECONDS`` doubling up to ``BRIK_WEBHOOK_RETRY_MAX_SECONDS``, never
  sooner than a ``Retry-After``) for ``BRIK_WEBHOOK_RETRY_BUDGET_SECONDS`` (three days), then the
  delivery ends ``failed``. An address the policy refuses fails at once: retrying will not make
  it public. Each failure counts against the endpoint, which is disabled after sustained failure
  (``controlplane/webhook_endpoints.py``: audit event, mail to the owners).
* **Order per object**: a delivery whose endpoint has an earlier event about the same object
  still pending was written ``waiting``; when a delivery is settled (succeeded or failed for
  good) the next one waiting in its line is queued in the same transaction and handed over at
  once. :func:`reconcile_webhooks` (with the delivery reconciler) queues the head of any line
  left waiting with nothing ahead of it (an event written while the one ahead was being
  settled), and hands over again a queued delivery whose job went missing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import F, Q
from tortoise.functions import Min
from tortoise.transactions import in_transaction

from controlplane import mail
from controlplane.core.queue import enqueue_webhook_delivery
from controlplane.crypto import KeyRing, UndecryptableSecret
from controlplane.models import (
    Project,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from controlplane.settings import Settings
from controlplane.webhook_endpoints import (
    Disabled,
    count_failure,
    count_success,
    signing_secrets,
    tell_owners,
)
from controlplane.webhook_events import envelope
from controlplane.webhook_signatures import HEADER, signature_header
from workers.retries import backoff
from workers.webhook_messages import request_body
from workers.webhook_transport import Answer, WebhookSender

logger = logging.getLogger("brik.webhooks")

DISPATCH_BATCH = 1000
IN_FLIGHT = "webhooks_in_flight"  # ctx: the attempts this worker is sending and recording
QUEUED, SENDING = WebhookDeliveryStatus.QUEUED, WebhookDeliveryStatus.SENDING
WAITING = WebhookDeliveryStatus.WAITING


def _claimable(now: datetime) -> Q:
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return (Q(status=QUEUED) & due) | Q(status=SENDING, lease_until__lt=now)


async def dispatch_webhooks(ctx: dict[str, Any]) -> int:
    """Enqueue every delivery that is due (the oldest events first); returns how many."""
    rows = await (
        WebhookDelivery.filter(_claimable(datetime.now(UTC)))
        .order_by("event_id").limit(DISPATCH_BATCH).values_list("id", "attempts")
    )  # fmt: skip
    for delivery_id, attempts in rows:
        await enqueue_webhook_delivery(ctx["redis"], str(delivery_id), int(attempts))
    return len(rows)


async def reconcile_webhooks(ctx: dict[str, Any], now: datetime | None = None) -> int:
    """Queue the head of each line left waiting behind nothing, and hand over again what has
    been due for longer than the reconciler's grace; returns how many deliveries it moved."""
    now = now or datetime.now(UTC)
    settings: Settings = ctx["settings"]
    moved = 0
    heads = await (
        WebhookDelivery.filter(status=WAITING).annotate(first=Min("event_id"))
        .group_by("endpoint_id", "ordering_key").values_list("endpoint_id", "ordering_key", "first")
    )  # fmt: skip
    if heads:
        endpoints = {str(endpoint) for endpoint, _, _ in heads}
        keys = {str(key) for _, key, _ in heads}
        moving = await WebhookDelivery.filter(
            status__in=[QUEUED, SENDING], endpoint_id__in=endpoints, ordering_key__in=keys
        ).values_list("endpoint_id", "ordering_key")
        ahead = {(str(endpoint), str(key)) for endpoint, key in moving}
        for endpoint, key, first in heads:
            if (str(endpoint), str(key)) not in ahead:
                moved += await WebhookDelivery.filter(
                    endpoint_id=endpoint, ordering_key=key, event_id=first, status=WAITING
                ).update(status=QUEUED)
    overdue = now - timedelta(seconds=settings.reconcile_grace_seconds)
    late = await WebhookDelivery.filter(
        Q(next_attempt_at__isnull=True, created_at__lte=overdue) | Q(next_attempt_at__lte=overdue),
        status=QUEUED,
    ).limit(DISPATCH_BATCH).values_list("id", "attempts")  # fmt: skip
    stamp = now.strftime("%Y%m%d%H%M%S")
    for delivery_id, attempts in late:
        await enqueue_webhook_delivery(ctx["redis"], str(delivery_id), int(attempts), late=stamp)
    return moved + len(late)


async def scheduled_webhook_reconcile(ctx: dict[str, Any]) -> int:
    return await reconcile_webhooks(ctx)


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    event: WebhookEvent
    lease: str
    attempts: int


async def deliver_webhook(ctx: dict[str, Any], delivery_id: str) -> str:
    """Send one attempt of ``delivery_id`` if it is due and unclaimed; returns what happened."""
    now = datetime.now(UTC)
    row = await WebhookDelivery.get_or_none(id=delivery_id).select_related("endpoint", "event")
    if row is None:
        return "gone"  # deleted with its endpoint or project
    if row.status is QUEUED and row.next_attempt_at is not None and row.next_attempt_at > now:
        # Early (another worker's clock): come back when due, under an id of its own.
        wait = (row.next_attempt_at - now).total_seconds()
        await enqueue_webhook_delivery(
            ctx["redis"], row.id, row.attempts, late=f"early{time.time_ns()}", defer_by=wait
        )
        return "early"
    if not row.endpoint.enabled:
        return "endpoint disabled"  # its pending deliveries were failed when it was disabled
    settings: Settings = ctx["settings"]
    lease = secrets.token_hex(16)
    claimed = await WebhookDelivery.filter(_claimable(now), id=delivery_id).update(
        status=SENDING, lease_token=lease, attempts=F("attempts") + 1, last_attempt_at=now,
        lease_until=now + timedelta(seconds=settings.webhook_lease_seconds),
    )  # fmt: skip
    if not claimed:
        return row.status.value  # settled, waiting its turn, or taken by another job
    claim = _Claimed(row, row.endpoint, row.event, lease, row.attempts + 1)
    # Sent and recorded to the end even if the job is cancelled (arq's timeout, a shutdown):
    # an attempt that went out is written down, not left for its lease to run out and go again.
    work = asyncio.ensure_future(_send_and_record(ctx, claim, now))
    in_flight: set[asyncio.Future[str]] = ctx.setdefault(IN_FLIGHT, set())
    in_flight.add(work)
    work.add_done_callback(in_flight.discard)
    return await asyncio.shield(work)


async def _send_and_record(ctx: dict[str, Any], claim: _Claimed, now: datetime) -> str:
    return await _record(ctx, claim, await _send(ctx, claim, now))


async def wait_for_sends(ctx: dict[str, Any], seconds: float) -> bool:
    """Wait until the attempts under way are recorded (a worker stopping); False if time ran
    out (those go again once their lease ends)."""
    in_flight: set[asyncio.Future[str]] = ctx.get(IN_FLIGHT, set())
    if not in_flight:
        return True
    _, pending = await asyncio.wait(set(in_flight), timeout=seconds)
    return not pending


async def _send(ctx: dict[str, Any], claim: _Claimed, now: datetime) -> Answer:
    keyring: KeyRing = ctx["keyring"]
    endpoint, event = claim.endpoint, claim.event
    try:
        url = keyring.decrypt(endpoint.url_encrypted).decode()
        signing = signing_secrets(endpoint, keyring, now)
    except UndecryptableSecret:
        return Answer(
            None, 0, error="the endpoint's URL or secret cannot be decrypted (BRIK_ENCRYPTION_KEYS)"
        )
    project_name = await Project.filter(id=event.project_id).values_list("name", flat=True)  # type: ignore[attr-defined]
    payload = envelope(event)
    body = request_body(endpoint.type, payload, str(project_name[0]) if project_name else "")
    headers = {
        HEADER: signature_header(body, signing, int(time.time())),
        "Brik-Event-Id": event.public_id,
        "Brik-Event-Type": event.type,
        "Brik-Delivery-Id": claim.delivery.id,
        "Brik-Delivery-Attempt": str(claim.attempts),
    }
    sender: WebhookSender = ctx["webhook_sender"]
    return await sender.post(url, body, headers)


def _retry_in(claim: _Claimed, answer: Answer, now: datetime, settings: Settings) -> float | None:
    """Seconds until the next attempt, or None when this failure is the last."""
    if answer.refused:
        return None  # the address policy: waiting will not make it public
    deadline = claim.delivery.created_at + timedelta(seconds=settings.webhook_retry_budget_seconds)
    left = (deadline - now).total_seconds()
    if left <= 0 or (answer.retry_after or 0.0) > left:
        return None
    delay = backoff(
        claim.attempts, settings.webhook_retry_base_seconds, settings.webhook_retry_max_seconds
    )
    return min(max(delay, answer.retry_after or 0.0), left)


def _budget(settings: Settings) -> str:
    seconds = settings.webhook_retry_budget_seconds
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


async def _record(ctx: dict[str, Any], claim: _Claimed, answer: Answer) -> str:
    """Write the attempt's outcome (only under this job's lease) and what follows from it."""
    settings: Settings = ctx["settings"]
    now = datetime.now(UTC)
    delivery = claim.delivery
    mine = WebhookDelivery.filter(id=delivery.id, lease_token=claim.lease)
    seen = {
        "response_status": answer.status, "response_excerpt": answer.excerpt,
        "latency_ms": answer.latency_ms, "lease_token": None, "lease_until": None,
    }  # fmt: skip
    retry: float | None = None
    next_in_line: tuple[str, int] | None = None
    disabled: Disabled | None = None
    async with in_transaction():
        if answer.succeeded:
            if not await mine.update(
                status=WebhookDeliveryStatus.SUCCEEDED, completed_at=now, error=None, **seen
            ):
                return "lease lost"
            await count_success(claim.endpoint.id, now)
            next_in_line = await _queue_next(delivery)
            outcome = "succeeded"
        else:
            retry = _retry_in(claim, answer, now, settings)
            reason = answer.describe()
            if retry is None:
                final = reason if answer.refused else (
                    f"gave up after retrying for {_budget(settings)} "
                    f"({claim.attempts} attempts): {reason}"
                )  # fmt: skip
                updated = await mine.update(
                    status=WebhookDeliveryStatus.FAILED, completed_at=now, error=final[:500],
                    **seen,
                )  # fmt: skip
                outcome = "failed"
            else:
                updated = await mine.update(
                    status=QUEUED, next_attempt_at=now + timedelta(seconds=retry),
                    error=reason[:500], **seen,
                )  # fmt: skip
                outcome = "retrying"
            if not updated:
                return "lease lost"
            disabled = await count_failure(claim.endpoint.id, now, reason, settings)
            if retry is None and disabled is None:
                next_in_line = await _queue_next(delivery)
    redis = ctx["redis"]
    if next_in_line is not None:
        await enqueue_webhook_delivery(redis, *next_in_line)
    if retry is not None and disabled is None:
        await enqueue_webhook_delivery(redis, delivery.id, claim.attempts, defer_by=retry)
    if disabled is not None:
        outcome = "endpoint disabled"
        logger.warning("webhook endpoint %s disabled: %s", disabled.endpoint.id,
                       disabled.endpoint.disabled_reason)  # fmt: skip
        await _tell_owners(ctx, disabled)
    return outcome


async def _queue_next(settled: WebhookDelivery) -> tuple[str, int] | None:
    """Queue the delivery waiting behind ``settled`` (same endpoint, same object), if any."""
    key = settled.ordering_key
    if key is None:
        return None
    endpoint_id = settled.endpoint_id  # type: ignore[attr-defined]
    line = WebhookDelivery.filter(endpoint_id=endpoint_id, ordering_key=key)
    if await line.filter(status__in=[QUEUED, SENDING]).exists():
        return None
    following = await line.filter(status=WAITING).order_by("event_id").first()
    if following is None:
        return None
    if not await WebhookDelivery.filter(id=following.id, status=WAITING).update(status=QUEUED):
        return None
    return following.id, following.attempts


async def _tell_owners(ctx: dict[str, Any], disabled: Disabled) -> None:
    sender: mail.MailSender = ctx["mail_sender"]
    keyring: KeyRing = ctx["keyring"]

    async def send(email: mail.Email) -> object:
        return await mail.send(email, sender, keyring)

    try:
        await tell_owners(disabled, ctx["settings"], send)
    except Exception:  # the endpoint is disabled and audited; the mail is a courtesy
        logger.exception("could not tell the owners that endpoint %s was disabled",
                         disabled.endpoint.id)  # fmt: skip
