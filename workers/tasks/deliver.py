"""Delivery: send pushes' deliveries, record every outcome, never twice.

:func:`deliver_pushes` takes the deliveries of one push or of many at once: the arq job
(:func:`deliver_batch`, a fan-out's share of one push, a retry, a held row) hands it one push,
the worker's lane of small pushes due now (:mod:`workers.lane`) every push it took in one read.
Whatever can be shared is: one read of the pushes and of their projects' webhook endpoints,
one claim and one read of the claimed rows per chunk across pushes, sends to different
projects and providers side by side, one UPDATE per outcome across pushes, one statement that
completes every finished push, one Redis round trip that tells their event streams.

Each delivery row is claimed with one conditional UPDATE — only rows still ``queued`` (and due)
or ``sending`` with an expired lease — stamped with this run's lease token. Only rows carrying
the token are sent, and results are written back only where the token still matches. So a job
that runs twice (arq retry, a duplicate enqueue, the reconciler) finds nothing left to claim
once the first run recorded its results, and cannot overwrite them.

The only second send possible is a row whose worker died mid-send: its lease expires, the
reconciler re-enqueues it, and it goes again *with the same apns-id and collapse id*, so the
device shows it once. Rows are sent in chunks, each sent and recorded under a reservation of
the worker's in-flight budget (:mod:`workers.in_flight`), so at most
``delivery_in_flight_per_connection`` sends per worker are ever unrecorded.

Results are written in bulk — one UPDATE per (outcome, reason) group per chunk, not one per
device. When the project has a webhook endpoint that wants to hear of it, a delivery that fails
(``delivery.failed``), a device whose token died (``device.invalidated``) and the push's
completion (``push.completed``) are written with their webhook events in one transaction each
(:mod:`controlplane.webhook_events`) — the completions of all of a run's pushes in one, their
events one write per project; a provider refusing the credential is told once a day
(``credential.failing``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from controlplane.core.keyspace import events_channel
from controlplane.core.queue import enqueue_deliveries_of
from controlplane.crypto import KeyRing, UndecryptableSecret
from controlplane.models import (
    TOKEN_COLUMNS,
    ActivityToken,
    ActivityTokenStatus,
    Delivery,
    DeliveryStatus,
    Device,
    DeviceStatus,
    KeyMode,
    ProviderCredential,
    ProviderName,
    Push,
    PushStatus,
    TokenSlot,
    WebhookEndpoint,
)
from controlplane.models import TOKEN_NAMES as SLOT_NAMES
from controlplane.payloads import PushContent
from controlplane.push_locks import in_id_order
from controlplane.settings import Settings
from controlplane.sql_rows import model_of, selected
from controlplane.webhook_events import (
    Listener,
    Outbox,
    credential_failing_data,
    deliveries_by_status,
    delivery_failed_data,
    device_invalidated_data,
    outboxes,
    push_completed_data,
)
from workers.delivery_rows import Claimed, claim, complete, complete_which, end
from workers.device_cap import DeviceCap
from workers.egress import EgressLimiter
from workers.in_flight import InFlightBudget
from workers.metrics import WorkerMetrics
from workers.provider_cache import JobProviders, MissingCredential
from workers.providers.base import (
    Outcome,
    OutcomeKind,
    Provider,
    Recipient,
    Unsendable,
    WireRequest,
)
from workers.providers.registry import PROVIDERS, UnknownProvider
from workers.retries import RetryWindow, expires_at

logger = logging.getLogger("brik.worker")
CHUNKS_IN_FLIGHT = 4


# The device's tokens a push can go to, by column, as a tenant would call them (which one a
# push goes to is its provider's to say: token_slot).
DEVICE_TOKEN = TOKEN_COLUMNS[TokenSlot.DEVICE]
TOKEN_NAMES = {TOKEN_COLUMNS[slot]: name for slot, name in SLOT_NAMES.items()}


def chunk_size(in_flight_limit: int) -> int:
    """Deliveries claimed, sent and recorded together: a quarter of the in-flight budget.

    While one chunk's results are being written, the others' sends are on the wire, so the
    connection never sits idle waiting on the database.
    """
    return max(1, -(-in_flight_limit // CHUNKS_IN_FLIGHT))


@dataclass(frozen=True, slots=True)
class PushAtHand:
    """A push being delivered by this run, with what every chunk needs of it, read once."""

    push: Push
    content: PushContent
    hooks: Outbox


Work = Sequence[tuple[str, Sequence[str]]]  # (push id, its delivery ids), push by push


async def deliver_batch(
    ctx: dict[str, Any], push_id: str, delivery_ids: list[str]
) -> dict[str, int]:
    """The arq job: ``delivery_ids`` of one push (see :mod:`controlplane.core.queue`)."""
    return await deliver_pushes(ctx, [(push_id, delivery_ids)])


async def deliver_pushes(ctx: dict[str, Any], work: Work) -> dict[str, int]:
    """Send and record the deliveries of ``work``; the outcomes counted by kind.

    Deliveries already claimed or finished elsewhere, and those of a canceled push, are
    skipped. Raises what a send or a write raises; what was recorded stays recorded, and a row
    claimed but not recorded goes again when its lease runs out (the reconciler).
    """
    at_hand = await _pushes_at_hand(list(dict.fromkeys(push_id for push_id, _ in work)))
    if not at_hand:
        return {}
    deliveries = list(dict.fromkeys(  # once each: a push handed over twice is read twice
        (push_id, delivery_id)
        for push_id, delivery_ids in work if push_id in at_hand
        for delivery_id in delivery_ids
    ))  # fmt: skip
    metrics: WorkerMetrics | None = ctx.get("metrics")
    if metrics is not None:
        metrics.jobs_in_progress.inc()
    counts: Counter[str] = Counter()
    moving: set[str] = set()  # pushes with a delivery sent (or refused) by this run
    budget: InFlightBudget = ctx["in_flight"]
    providers: dict[str, JobProviders] = {}
    failure: Exception | None = None
    try:
        # Chunks no larger than the in-flight budget, each claimed, sent *and recorded* under
        # its reservation: a crash leaves at most that many sends unrecorded, a cancelled job
        # none (the chunk finishes), and a lease only has to cover one chunk's send, not a
        # whole batch waiting its turn.
        size = chunk_size(budget.limit)
        starts = range(0, len(deliveries), size)
        for start in starts:
            chunk = deliveries[start : start + size]
            work_of_chunk = partial(_deliver_chunk, ctx, at_hand, providers, chunk, start)
            sent = await budget.run(len(chunk), work_of_chunk)
            for push_id, kinds in sent.items():
                counts.update(kinds)
                moving.add(push_id)
            if moving and start != starts[-1]:  # more to send: say so while it goes on
                await _mark_sending(at_hand, moving)
    except Exception as exc:  # the database or Redis away: raised below, once the rest is said
        failure = exc
    finally:
        if metrics is not None:
            metrics.jobs_in_progress.dec()
    # Even after a failure: the pushes whose deliveries all ended (here or elsewhere) complete.
    if await _complete_finished(at_hand) < len(at_hand) and moving:
        await _mark_sending(at_hand, moving)  # retries or other jobs' deliveries still to go
    await _tell_streams(ctx["redis"], at_hand)
    if failure is not None:
        raise failure
    return dict(counts)


async def _pushes_at_hand(push_ids: Sequence[str]) -> dict[str, PushAtHand]:
    """The pushes of ``push_ids`` not canceled, with their content and their outbox: one
    query on PostgreSQL (written out: :mod:`controlplane.sql_rows`), two on SQLite, however
    many pushes there are."""
    if Push._meta.db.capabilities.dialect == "postgres":
        pushes, boxes = await _pushes_and_outboxes(push_ids)
    else:
        pushes = await Push.filter(id__in=push_ids).exclude(status=PushStatus.CANCELED)
        boxes = await outboxes({(push.project_id, push.mode) for push in pushes})  # type: ignore[attr-defined]
    at_hand: dict[str, PushAtHand] = {}
    for push in pushes:
        try:
            content = PushContent.model_validate(push.content)
        except ValidationError:  # stored by an older version, say: the others still go
            logger.exception("push %s: its stored content cannot be read; not sent", push.id)
            continue
        box = boxes[(push.project_id, push.mode)]  # type: ignore[attr-defined]
        at_hand[push.id] = PushAtHand(push, content, box)
    return at_hand


@functools.cache
def _pushes_and_endpoints_sql() -> str:
    """(Built on first use: the ORM knows a model's columns once it is initialised.)"""
    return f"""
SELECT {selected(Push, "p")}, endpoint."id" AS endpoint_id, endpoint."events" AS endpoint_events
FROM "{Push._meta.db_table}" AS p
LEFT JOIN "{WebhookEndpoint._meta.db_table}" AS endpoint ON endpoint."project_id" = p."project_id"
    AND endpoint."mode" = p."mode" AND endpoint."enabled"
WHERE p."id" = ANY($1::text[]) AND p."status" <> $2
"""


async def _pushes_and_outboxes(
    push_ids: Sequence[str],
) -> tuple[list[Push], dict[tuple[str, KeyMode], Outbox]]:
    """The pushes not canceled, and each one's project and mode's outbox (its enabled webhook
    endpoints), in one query: a row per push and endpoint."""
    _, rows = await Push._meta.db.execute_query(
        _pushes_and_endpoints_sql(), [list(push_ids), PushStatus.CANCELED.value]
    )
    pushes: dict[str, Push] = {}
    listeners: dict[tuple[str, KeyMode], dict[str, Listener]] = {}
    events = WebhookEndpoint._meta.fields_map["events"]
    for row in rows:
        if row["p.id"] not in pushes:
            pushes[row["p.id"]] = model_of(Push, row, "p")
        box = listeners.setdefault((row["p.project_id"], KeyMode(row["p.mode"])), {})
        endpoint_id = row["endpoint_id"]
        if endpoint_id is not None:  # the same endpoint comes with each push of its project
            wanted = tuple(events.to_python_value(row["endpoint_events"]))
            box[endpoint_id] = Listener(endpoint_id, wanted)
    boxes = {pair: Outbox(*pair, tuple(each.values())) for pair, each in listeners.items()}
    return list(pushes.values()), boxes


async def _mark_sending(at_hand: dict[str, PushAtHand], push_ids: Iterable[str]) -> None:
    """Pushes still queued or scheduled are now sending (one statement, once per push)."""
    waking = [
        push_id for push_id in push_ids if at_hand[push_id].push.status is not PushStatus.SENDING
    ]
    if not waking:
        return
    still_waiting = Push.filter(id__in=waking, status__in=[PushStatus.QUEUED, PushStatus.SCHEDULED])
    await Push.filter(id__in=in_id_order(still_waiting)).update(status=PushStatus.SENDING)
    for push_id in waking:
        at_hand[push_id].push.status = PushStatus.SENDING


async def _tell_streams(redis: Redis, at_hand: dict[str, PushAtHand]) -> None:
    """Tell each push's live event stream (``GET /v1/pushes/{id}/events``) to look again."""
    async with redis.pipeline(transaction=False) as pipe:
        for push_id in at_hand:
            pipe.publish(events_channel(push_id), "changed")
        await pipe.execute()


async def _deliver_chunk(
    ctx: dict[str, Any],
    at_hand: dict[str, PushAtHand],
    providers: dict[str, JobProviders],
    chunk: Sequence[tuple[str, str]],
    chunk_start: int,
) -> dict[str, Counter[str]]:
    """Claim, send and record one chunk; the outcomes counted by kind, push by push."""
    settings: Settings = ctx["settings"]
    now = datetime.now(UTC)
    lease = secrets.token_hex(16)
    delivery_ids = [delivery_id for _, delivery_id in chunk]
    push_ids = sorted({push_id for push_id, _ in chunk})
    rows = await claim(delivery_ids, push_ids, now, lease, settings.delivery_lease_seconds)
    if not rows:
        return {}
    groups: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
    for row in rows:
        project_id: str = at_hand[row.push_id].push.project_id  # type: ignore[attr-defined]
        groups[(project_id, row.provider)].append(row)
    outcomes: dict[str, Outcome] = {}
    decided: list[Claimed] = []  # rows with an outcome to record (not held, not lost to an error)

    async def send(project_id: str, name: str, group: list[Claimed]) -> None:
        try:
            await send_group(project_id, name, group)
        except Exception as exc:  # this project's group only: the others' sends go on
            logger.exception("sending %d deliveries of project %s failed", len(group), project_id)
            undecided = [row for row in group if row.id not in outcomes]
            why = f"the worker could not send ({type(exc).__name__}); trying again"
            outcomes.update({row.id: Outcome.retry(why) for row in undecided})
            decided.extend(undecided)

    async def send_group(project_id: str, name: str, group: list[Claimed]) -> None:
        group = await _within_egress_limit(ctx, project_id, name, group, lease, chunk_start)
        cap: DeviceCap | None = ctx.get("device_cap")
        if cap is not None and group:
            # After the egress hold: a held row is counted when it really goes, not twice.
            capped, group = await cap.split(group)
            reason = f"over the cap of {cap.per_minute} pushes per device per minute"
            outcomes.update({row.id: Outcome.rate_limited(reason) for row in capped})
            decided.extend(capped)
        if not group:
            return
        if project_id not in providers:
            providers[project_id] = JobProviders(ctx["providers"], project_id)
        started = time.perf_counter()
        sent = await _send_group(at_hand, name, group, providers[project_id], ctx["keyring"])
        _observe(ctx.get("metrics"), name, sent, time.perf_counter() - started)
        outcomes.update(sent)
        decided.extend(group)

    # Different projects and providers side by side: one slow provider does not hold the rest.
    await asyncio.gather(
        *(send(project_id, name, group) for (project_id, name), group in groups.items())
    )
    return await _record(at_hand, decided, outcomes, lease, settings, ctx, chunk_start)


async def _within_egress_limit(
    ctx: dict[str, Any], project_id: str, provider: str, rows: list[Claimed], lease: str,
    chunk_start: int,
) -> list[Claimed]:  # fmt: skip
    """The rows the project's egress bucket lets go now; the rest wait, without an attempt."""
    limiter: EgressLimiter | None = ctx.get("egress")
    if limiter is None:
        return rows
    granted, wait = await limiter.take(project_id, provider, len(rows))
    if granted >= len(rows):
        return rows
    held = rows[granted:]
    await Delivery.filter(id__in=[row.id for row in held], lease_token=lease).update(
        status=DeliveryStatus.QUEUED, lease_token=None, lease_until=None,
        attempts=F("attempts") - 1, reason="waiting for the project's egress rate limit",
        next_attempt_at=datetime.now(UTC) + timedelta(seconds=wait),
    )  # fmt: skip
    await enqueue_deliveries_of(
        ctx["redis"], _by_push(held), origin=f"egress:{lease}:{chunk_start}:{provider}",
        defer_by=wait,
    )  # fmt: skip
    return rows[:granted]


def _by_push(rows: Iterable[Claimed]) -> list[tuple[str, list[str]]]:
    """The rows' ids, push by push (how the queue takes them)."""
    ids: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        ids[row.push_id].append(row.id)
    return list(ids.items())


def _observe(
    metrics: WorkerMetrics | None, provider: str, sent: dict[str, Outcome], seconds: float
) -> None:
    if metrics is None:
        return
    metrics.send_seconds.labels(provider).observe(seconds)
    for outcome in sent.values():
        if outcome.kind is OutcomeKind.RETRY:
            metrics.retries.labels(provider).inc()
        metrics.deliveries.labels(provider, outcome.kind.value).inc()


async def _send_group(
    at_hand: dict[str, PushAtHand],
    name: str,
    rows: list[Claimed],
    providers: JobProviders,
    keyring: KeyRing,
) -> dict[str, Outcome]:
    try:
        provider = await providers.get(name)
    except MissingCredential as exc:
        return {row.id: Outcome.failed(f"{exc}: upload it, then send again") for row in rows}
    except UnknownProvider as exc:
        return {row.id: Outcome.failed(str(exc)) for row in rows}
    outcomes: dict[str, Outcome] = {}
    sendable: list[tuple[Claimed, WireRequest]] = []
    now = datetime.now(UTC)
    for row in rows:
        push, content = at_hand[row.push_id].push, at_hand[row.push_id].content
        # The ttl counts from when the push became due (send_at, for a scheduled push); each
        # provider spells that moment its own way (Apple an absolute time, FCM what is left).
        expiry = expires_at(push, content.ttl)
        expires = None if expiry is None else int(expiry.timestamp())
        if expiry is not None and now >= expiry and row.reason is not None:
            # A retry picked up late (a busy worker): the provider would drop it anyway, and
            # the device must never show what its sender called stale.
            outcomes[row.id] = Outcome.failed(
                f"expired while retrying (its ttl of {content.ttl} s ran out): {row.reason}"[:500]
            )
            continue
        if row.channel_id is not None:
            # A broadcast: one request to the channel reaches every device subscribed to it.
            recipient = Recipient(
                token="", platform=row.platform, message_id=row.apns_id, attempt=row.attempts,
                expires_at=expires, channel_id=row.channel_id,
            )  # fmt: skip
            _build(provider, content, row, recipient, outcomes, sendable)
            continue
        if row.device_id is None or row.device_status != DeviceStatus.ACTIVE:
            outcomes[row.id] = Outcome.failed("the device was deleted or is invalid")
            continue
        slot = token_slot(row, content)
        if slot is TokenSlot.ACTIVITY:
            encrypted = row.activity_token_encrypted
            if encrypted is None or row.activity_token_status != ActivityTokenStatus.ACTIVE:
                outcomes[row.id] = Outcome.failed(_no_activity_token(row))
                continue
        else:
            column = TOKEN_COLUMNS[slot]
            encrypted = getattr(row, column)
            if encrypted is None:
                # Never the device token instead: Apple would refuse it for the Live Activity
                # topic (DeviceTokenNotForTopic) and the whole device would be dropped.
                outcomes[row.id] = Outcome.failed(
                    f"the device has no {TOKEN_NAMES[column]} (any more)"
                )
                continue
        try:
            token = keyring.decrypt(encrypted).decode()
        except UndecryptableSecret:
            outcomes[row.id] = Outcome.failed("the device token cannot be decrypted")
            continue
        recipient = Recipient(
            token=token, platform=row.platform, message_id=row.apns_id, attempt=row.attempts,
            collapse_id=push.collapse_id or push.id,  # one notification, even if resent
            expires_at=expires,
        )  # fmt: skip
        _build(provider, content, row, recipient, outcomes, sendable)
    if sendable:
        results = await provider.send([built for _, built in sendable])
        outcomes.update(
            {row.id: outcome for (row, _), outcome in zip(sendable, results, strict=True)}
        )
    return outcomes


def _build(
    provider: Provider, content: PushContent, row: Claimed, recipient: Recipient,
    outcomes: dict[str, Outcome], sendable: list[tuple[Claimed, WireRequest]],
) -> None:  # fmt: skip
    """The row's wire request, ready to send — or its failure, when the provider cannot."""
    try:
        sendable.append((row, provider.request(content, recipient)))
    except Unsendable as exc:
        outcomes[row.id] = Outcome.failed(str(exc))


def token_slot(row: Claimed, content: PushContent) -> TokenSlot:
    """Which of the device's tokens the push goes to, as the row's provider declares it for the
    row's platform (APNs' push-type table: an update or end of an activity addressed by id goes
    to that activity's own token there, a Live Activity sent to devices to the device's Live
    Activity token, a start to the push-to-start token, a widget push to the widget push token;
    all else, and everything FCM sends, to the device token). The worker never decides."""
    return PROVIDERS[row.provider].token_slot(content, row.platform)


def _no_activity_token(row: Claimed) -> str:
    """Why a push to the activity's own token on the row's device cannot go."""
    if row.activity_token_status == ActivityTokenStatus.PENDING:
        return "the app has not reported this activity's token on the device"
    if row.activity_token_status is None:
        return "this activity has no token on the device (any more)"
    return "Apple refused this activity's token on the device"


async def _record(
    at_hand: dict[str, PushAtHand],
    rows: Iterable[Claimed],
    outcomes: dict[str, Outcome],
    lease: str,
    settings: Settings,
    ctx: dict[str, Any],
    chunk_start: int = 0,
) -> dict[str, Counter[str]]:
    """Write the outcomes of ``rows`` (held under ``lease``), one UPDATE per outcome across
    pushes; the outcomes counted by kind, push by push."""
    now = datetime.now(UTC)
    rows = list(rows)
    finals: dict[tuple[DeliveryStatus, str | None], list[Claimed]] = defaultdict(list)
    retries: dict[tuple[str, float, str], list[Claimed]] = defaultdict(list)
    dead_devices: dict[tuple[str, str], list[str]] = defaultdict(list)  # (push, why): devices
    dropped_tokens: list[tuple[str, str, str]] = []  # (device id, column, the refused token)
    # (activity token row, the refused token, why)
    dead_activity_tokens: list[tuple[int | None, str | None, str]] = []
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    windows: dict[str, RetryWindow] = {}
    for row in rows:
        outcome = outcomes.get(row.id, Outcome.retry("no outcome recorded"))
        counts[row.push_id][outcome.kind.value] += 1
        content = at_hand[row.push_id].content
        if outcome.kind is OutcomeKind.DELIVERED:
            finals[(DeliveryStatus.DELIVERED, None)].append(row)
        elif outcome.kind is OutcomeKind.INVALID_TOKEN:
            # A dead Live Activity, push-to-start or widget token is that purpose's, not the
            # phone's: drop only it, and the device keeps getting its alerts.
            reason = outcome.reason
            slot = token_slot(row, content)
            if slot is TokenSlot.ACTIVITY:
                reason = f"{reason}: this activity's token is dropped, the device stays active"
                dead_activity_tokens.append(
                    (row.activity_token_id, row.activity_token_encrypted, outcome.reason)
                )
                finals[(DeliveryStatus.INVALID_TOKEN, reason[:500])].append(row)
                continue
            column = TOKEN_COLUMNS[slot]
            if row.device_id is not None and column == DEVICE_TOKEN:
                dead_devices[(row.push_id, outcome.reason)].append(row.device_id)
            elif row.device_id is not None:
                reason = f"{reason}: the {TOKEN_NAMES[column]} is dropped, the device stays active"
                dropped_tokens.append((row.device_id, column, getattr(row, column)))
            finals[(DeliveryStatus.INVALID_TOKEN, reason[:500])].append(row)
        elif outcome.kind is OutcomeKind.FAILED:
            finals[(DeliveryStatus.FAILED, outcome.reason)].append(row)
        elif outcome.kind is OutcomeKind.RATE_LIMITED:
            finals[(DeliveryStatus.RATE_LIMITED, outcome.reason)].append(row)
        else:
            # Temporary: again until the push expires or the retry budget is spent
            # (workers/retries.py), however many attempts that takes.
            if row.push_id not in windows:
                windows[row.push_id] = RetryWindow.of(
                    at_hand[row.push_id].push, content.ttl, settings
                )
            window = windows[row.push_id]
            delay = window.next_delay(row.attempts, now, outcome.retry_after, settings)
            if delay is None:
                gave_up = window.gave_up(row.attempts, outcome.reason, settings)
                finals[(DeliveryStatus.FAILED, gave_up[:500])].append(row)
            else:
                retries[(row.provider, round(delay, 3), outcome.reason)].append(row)
    for (status, final_reason), ended in finals.items():
        if status is DeliveryStatus.FAILED:
            # Told where a webhook endpoint wants to hear of it, in one transaction per push.
            told = {row.push_id for row in ended if at_hand[row.push_id].hooks.wants(
                "delivery.failed")}  # fmt: skip
            for push_id in told:
                hand = at_hand[push_id]
                ours = [row for row in ended if row.push_id == push_id]
                await _fail_and_tell(hand.hooks, hand.push, ours, final_reason, lease, now)
            ended = [row for row in ended if row.push_id not in told]
        if ended:
            await end([row.id for row in ended], lease, status, final_reason, now)
    for (push_id, reason), device_ids in dead_devices.items():
        hooks = at_hand[push_id].hooks
        if hooks.wants("device.invalidated"):
            await _invalidate_and_tell(hooks, device_ids, reason, now)
            continue
        await Device.filter(id__in=device_ids, status=DeviceStatus.ACTIVE).update(
            status=DeviceStatus.INVALID, invalid_reason=reason[:300], invalidated_at=now
        )
    failing: dict[tuple[str, KeyMode, str], tuple[Outbox, Outcome]] = {}
    for row in rows:
        outcome = outcomes.get(row.id, Outcome.delivered())
        hooks = at_hand[row.push_id].hooks
        if outcome.credential_rejected and hooks.wants("credential.failing"):
            failing.setdefault((hooks.project_id, hooks.mode, row.provider), (hooks, outcome))
    for (_, _, provider), (hooks, outcome) in failing.items():
        await _tell_credential_failing(hooks, provider, outcome, now)
    for device_id, column, refused in dropped_tokens:
        # Only while it still holds the refused token: one registered since then is kept.
        await Device.filter(id=device_id, **{column: refused}).update(**{column: None})
    for token_id, refused_token, why in dead_activity_tokens:
        # Only while it still holds the refused token: one the app reported since is kept.
        await ActivityToken.filter(id=token_id, token_encrypted=refused_token).update(
            status=ActivityTokenStatus.INVALID, invalid_reason=why[:300]
        )
    due: dict[tuple[str, float], list[Claimed]] = defaultdict(list)
    for (provider, delay, reason), waiting in retries.items():
        await Delivery.filter(id__in=[row.id for row in waiting], lease_token=lease).update(
            status=DeliveryStatus.QUEUED, reason=reason[:500], lease_token=None,
            lease_until=None, next_attempt_at=now + timedelta(seconds=delay),
        )  # fmt: skip
        due[(provider, delay)] += waiting
    # One job per push and moment, whatever the reasons. A job id must be unique per (push,
    # lease, chunk, provider, delay) — a chunk's APNs and FCM rows are recorded together but
    # handed over apart — for arq silently refuses a second job with an id it already holds,
    # and the rows would wait for the reconciler.
    for (provider, delay), waiting in due.items():
        await enqueue_deliveries_of(
            ctx["redis"], _by_push(waiting),
            origin=f"retry:{lease}:{chunk_start}:{provider}:{delay}", defer_by=delay,
        )  # fmt: skip
    return dict(counts)


async def _fail_and_tell(
    hooks: Outbox, push: Push, rows: list[Claimed], reason: str | None, lease: str,
    now: datetime,
) -> None:  # fmt: skip
    """End ``rows`` failed and write their ``delivery.failed`` events, in one transaction (only
    the rows this run still holds)."""
    async with in_transaction():
        held = await (
            Delivery.filter(id__in=[row.id for row in rows], lease_token=lease)
            .select_for_update(no_key=True).only("id")
        )  # fmt: skip
        ids = {delivery.id for delivery in held}
        if not ids:
            return
        await Delivery.filter(id__in=ids).update(
            status=DeliveryStatus.FAILED, reason=reason, completed_at=now, lease_token=None,
            lease_until=None,
        )  # fmt: skip
        await hooks.emit_many("delivery.failed", [
            (delivery_failed_data(row.id, push.id, row.device_id, row.platform, row.provider,
                                  reason, row.attempts, now), push.id)
            for row in rows if row.id in ids
        ])  # fmt: skip


async def _invalidate_and_tell(
    hooks: Outbox, device_ids: list[str], reason: str, now: datetime
) -> None:
    """Mark the devices still active invalid and write their ``device.invalidated`` events, in
    one transaction."""
    async with in_transaction():
        devices = await (
            Device.filter(id__in=device_ids, status=DeviceStatus.ACTIVE)
            .select_for_update(no_key=True).only("id", "platform", "user_id", "token_last_four")
        )  # fmt: skip
        if not devices:
            return
        await Device.filter(id__in=[device.id for device in devices]).update(
            status=DeviceStatus.INVALID, invalid_reason=reason[:300], invalidated_at=now
        )
        await hooks.emit_many("device.invalidated", [
            (device_invalidated_data(device.id, device.platform.value, device.user_id,
                                     device.token_last_four, reason[:300], now), device.id)
            for device in devices
        ])  # fmt: skip


async def _tell_credential_failing(
    hooks: Outbox, provider: str, outcome: Outcome, now: datetime
) -> None:
    """``credential.failing``, at most once a day per credential version (the sandbox: per
    project and mode)."""
    credential = None
    if provider in {name.value for name in ProviderName}:
        credential = await ProviderCredential.get_or_none(
            project_id=hooks.project_id, provider=ProviderName(provider)
        )
    version = credential.version if credential is not None else None
    identity = f"{credential.id}:{version}" if credential is not None else "none"
    day = now.date().isoformat()
    await hooks.emit_once(
        "credential.failing",
        credential_failing_data(provider, credential.id if credential else None, version,
                                outcome.reason),
        dedupe_key=f"credential.failing:{hooks.project_id}:{hooks.mode.value}:{provider}:"
        f"{identity}:{day}",
    )  # fmt: skip


async def complete_finished(push_ids: Sequence[str]) -> int:
    """Complete those of ``push_ids`` none of whose deliveries is still open (with their
    ``push.completed`` events); how many. For the reconciler: a run stopped between recording
    a push's last deliveries and completing it leaves nobody else to."""
    return await _complete_finished(await _pushes_at_hand(push_ids))


async def _complete_finished(at_hand: dict[str, PushAtHand]) -> int:
    """Complete every push at hand none of whose deliveries is still open — the check and the
    change in one conditional UPDATE; those whose completion a webhook wants to hear of in a
    second, in one transaction with their events. Returns how many this call completed."""
    now = datetime.now(UTC)
    told = [key for key, hand in at_hand.items() if hand.hooks.wants("push.completed")]
    quiet = [key for key in at_hand if key not in set(told)]
    completed = await complete(quiet, now) if quiet else 0
    if told:
        async with in_transaction():
            done = await complete_which(told, now)
            counts = await deliveries_by_status(done) if done else {}
            # One write per outbox (project and mode) for all of its pushes' events.
            events: dict[Outbox, list[tuple[dict[str, Any], str | None]]] = defaultdict(list)
            for push_id in done:
                hand = at_hand[push_id]
                data = push_completed_data(hand.push, counts.get(push_id, Counter()), now)
                events[hand.hooks].append((data, push_id))
            for box, items in events.items():
                await box.emit_many("push.completed", items)
        completed += len(done)
    return completed
