"""The arq worker: which jobs it runs and how it is tuned for push traffic.

arq's defaults suit slow background jobs. A push service wants low pick-up latency and many
concurrent I/O-bound jobs, so (all overridable by settings, see docs/delivery.md):

- ``poll_delay`` 0.05 s instead of 0.5 s: an idle worker answers within 50 ms, and one
  worker is no longer capped near 200 jobs/s by sleeping between polls;
- ``max_jobs`` 200: jobs spend their time waiting on APNs/FCM sockets, not the CPU;
- ``queue_read_limit`` 5 x ``max_jobs`` (arq's rule), so one poll fills the worker;
- ``job_timeout`` 120 s and ``max_tries`` 8: bound how often arq re-runs one job that timed out
  or whose worker died (a delivery's own retries are new jobs, bounded by time:
  :mod:`workers.retries`);
- ``keep_result`` 10 min: results are only read by probes and tests.

A worker rides out a Redis outage instead of exiting (arq's own loop stops at the first
connection error): :class:`OutageTolerantWorker` waits for Redis at start-up, and when Redis goes
away mid-run it backs off and polls again until it answers. Jobs already running carry on —
their work is recorded in PostgreSQL, and arq's bookkeeping that could not be written only means
a job may run again, which finds nothing left to claim. Jobs that Redis lost (a restart without
its data) are re-enqueued by the reconciler. While it waits, ``brik_worker_redis_connected`` is
0 and the worker's ``/readyz`` answers 503 naming Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

from arq import Worker, cron, func
from arq.connections import create_pool
from redis.exceptions import RedisError

from controlplane import db, mail
from controlplane.analytics.buffer import EventBuffer
from controlplane.billing import StripeConnection
from controlplane.core.connections import redis_settings
from controlplane.core.queue import (
    DELIVER_JOB,
    EXPORT_JOB,
    HEARTBEAT_JOB,
    WEBHOOK_JOB,
    wake_channel,
)
from controlplane.crypto import KeyRing
from controlplane.settings import Settings
from workers.device_cap import DeviceCap
from workers.egress import EgressLimiter
from workers.in_flight import InFlightBudget
from workers.lane import Lane
from workers.metrics import WorkerMetrics
from workers.provider_cache import ProviderCache
from workers.tasks.activity_lifecycle import scheduled_activity_sweep
from workers.tasks.analytics import scheduled_analytics_load, scheduled_analytics_purge
from workers.tasks.api_key_usage import scheduled_api_key_usage_flush
from workers.tasks.billing import scheduled_billing
from workers.tasks.deliver import deliver_batch, deliver_pushes
from workers.tasks.exports import (
    EXPORT_JOB_TIMEOUT_SECONDS,
    build_export,
    scheduled_export_sweep,
)
from workers.tasks.heartbeat import heartbeat, scheduled_heartbeat
from workers.tasks.reconcile import delete_expired_idempotency_keys, scheduled_reconcile
from workers.tasks.state_purge import scheduled_state_purge
from workers.tasks.usage_flush import scheduled_request_count_flush
from workers.tasks.webhooks import (
    deliver_webhook,
    dispatch_webhooks,
    scheduled_webhook_reconcile,
    wait_for_sends,
)
from workers.webhook_transport import WebhookSender

KEEP_RESULT_SECONDS = 600
SHUTDOWN_GRACE_SECONDS = 30.0
FIRST_RECONNECT_SECONDS = 0.25
MAX_RECONNECT_SECONDS = 5.0

logger = logging.getLogger(__name__)


class OutageTolerantWorker(Worker):
    """An arq worker that waits for Redis instead of exiting when it cannot reach it."""

    def __init__(self, *args: Any, metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self._reconnect_delay = FIRST_RECONNECT_SECONDS

    async def close(self) -> None:
        """arq's ``close``, except that a job cancelled by the stop is not an error of the stop.

        arq cancels its jobs on SIGTERM and then gathers them as they are: a job cancelled
        while it awaits the (shielded) recording of its result ends cancelled, its
        CancelledError came out of ``close``, and a clean stop exited 1 before its
        ``on_shutdown`` closed the providers. Its deliveries are safe either way (leases).
        """
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.close(close_connection_pool=True)
        self._pool = None

    async def main(self) -> None:
        while self._pool is None:
            try:
                self._pool = await create_pool(
                    self.redis_settings, job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer, default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                )  # fmt: skip
            except (RedisError, OSError, TimeoutError) as exc:
                await self._wait_for_redis(exc)
        self._redis_is_back()
        # arq's own main loop, except that it waits for a wake-up (new work due now) or the
        # poll delay, whichever comes first: a push is picked up as soon as it is queued.
        logger.info("Starting worker for %d functions", len(self.functions))
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        woken = asyncio.Event()
        lane = Lane(
            self.pool, self.queue_name, self.ctx["worker_id"], partial(deliver_pushes, self.ctx),
            take_over_idle_seconds=self.ctx["settings"].delivery_lease_seconds,
            redis_answered=self._redis_is_back,
        )  # fmt: skip
        listener = asyncio.create_task(self._listen_for_work(woken))
        lane.start()
        try:
            while True:
                woken.clear()
                await self._poll_iteration()
                if not woken.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), self.poll_delay_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await lane.stop()

    async def _listen_for_work(self, woken: asyncio.Event) -> None:
        """Set ``woken`` each time the queue's wake channel rings; through a Redis outage,
        try again (polling goes on meanwhile)."""
        while True:
            pubsub = self.pool.pubsub()
            try:
                await pubsub.subscribe(wake_channel(self.queue_name))
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        woken.set()
            except (RedisError, OSError, TimeoutError):
                await asyncio.sleep(self._reconnect_delay)
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError, TimeoutError) as exc:
            await self._wait_for_redis(exc)
        else:
            self._redis_is_back()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq takes a job slot before its Redis round trip and does not give it back when that
        # round trip fails: without this, every outage would leak slots until none was left.
        for job_id in job_ids:
            before = self.job_counter
            try:
                await super().start_jobs([job_id])
            except BaseException:
                if self.job_counter > before:
                    self.job_counter -= 1
                    self.sem.release()
                raise

    async def _wait_for_redis(self, exc: BaseException) -> None:
        if self.metrics.waiting_for_redis_since is None:
            logger.warning(
                "Redis is unreachable (%s: %s); waiting for it, running jobs carry on",
                type(exc).__name__, exc,
            )  # fmt: skip
            self.metrics.waiting_for_redis(time.time())
        await asyncio.sleep(self._reconnect_delay)
        self._reconnect_delay = min(self._reconnect_delay * 2, MAX_RECONNECT_SECONDS)

    def _redis_is_back(self) -> None:
        self._reconnect_delay = FIRST_RECONNECT_SECONDS
        since = self.metrics.waiting_for_redis_since
        self.metrics.redis_connected()
        if since is not None:
            logger.warning("Redis is back after %.1f s; carrying on", time.time() - since)


async def _done() -> bool:
    return True


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def build_worker(settings: Settings, *, handle_signals: bool = True) -> OutageTolerantWorker:
    """An arq worker for ``settings``. Build it inside the event loop that will run it."""

    metrics = WorkerMetrics()
    if settings.worker_metrics_port is not None:
        metrics.serve(settings.worker_metrics_port)

    async def on_startup(ctx: dict[str, Any]) -> None:
        stack = AsyncExitStack()
        await stack.enter_async_context(db.database(settings.database_url))
        ctx["exit_stack"] = stack
        ctx["settings"] = settings
        ctx["worker_id"] = worker_id()
        keyring = KeyRing([key.get_secret_value() for key in settings.encryption_keys])
        ctx["keyring"] = keyring
        ctx["providers"] = ProviderCache(settings, keyring)
        ctx["metrics"] = metrics
        ctx["in_flight"] = InFlightBudget(settings.delivery_in_flight_per_connection)
        if settings.device_pushes_per_minute:
            ctx["device_cap"] = DeviceCap(ctx["redis"], settings.device_pushes_per_minute)
        ctx["stripe"] = StripeConnection.open(settings)
        ctx["egress"] = EgressLimiter(
            ctx["redis"], settings.egress_rate_per_second, settings.egress_burst
        )
        ctx["event_buffer"] = EventBuffer(ctx["redis"], settings.analytics_buffer_max_bytes)
        ctx["webhook_sender"] = WebhookSender(settings)
        ctx["mail_sender"] = mail.load_sender(settings)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        # arq has cancelled the jobs; chunks they had started still finish and record their
        # results (InFlightBudget.run) — give them the time before closing what they use.
        # Both under one grace period, side by side: the pod's terminationGracePeriodSeconds
        # (and a test's patience) must cover the whole stop, not each wait in turn.
        budget: InFlightBudget | None = ctx.get("in_flight")
        pushes_done, webhooks_done = await asyncio.gather(
            budget.wait_idle(SHUTDOWN_GRACE_SECONDS) if budget is not None else _done(),
            wait_for_sends(ctx, SHUTDOWN_GRACE_SECONDS),
        )
        if not pushes_done and budget is not None:
            logger.warning("stopping with %d sends still unrecorded", budget.in_use)
        if not webhooks_done:
            logger.warning("stopping with webhook attempts still unrecorded: they go again")
        metrics.stop()
        providers: ProviderCache | None = ctx.pop("providers", None)
        if providers is not None:
            await providers.close_retired(everything=True)
        connection: StripeConnection | None = ctx.pop("stripe", None)
        if connection is not None:
            await connection.close()
        webhooks: WebhookSender | None = ctx.pop("webhook_sender", None)
        if webhooks is not None:
            await webhooks.close()
        stack: AsyncExitStack | None = ctx.pop("exit_stack", None)
        if stack is not None:
            await stack.aclose()

    return OutageTolerantWorker(
        metrics=metrics,
        functions=[
            func(heartbeat, name=HEARTBEAT_JOB),
            func(deliver_batch, name=DELIVER_JOB),
            func(deliver_webhook, name=WEBHOOK_JOB),
            func(build_export, name=EXPORT_JOB, max_tries=1, timeout=EXPORT_JOB_TIMEOUT_SECONDS),
        ],
        cron_jobs=[
            cron(scheduled_heartbeat, second=0, run_at_startup=True),
            cron(scheduled_api_key_usage_flush, second=30),
            cron(scheduled_request_count_flush, second=40),
            cron(scheduled_billing, second=50),
            cron(
                scheduled_reconcile,
                second=set(range(0, 60, settings.reconcile_every_seconds)),
                run_at_startup=True,
            ),
            cron(
                scheduled_export_sweep,
                second=set(range(0, 60, settings.reconcile_every_seconds)),
            ),
            cron(
                scheduled_webhook_reconcile,
                second=set(range(0, 60, settings.reconcile_every_seconds)),
            ),
            cron(
                dispatch_webhooks,
                second=set(range(0, 60, settings.webhook_dispatch_every_seconds)),
                run_at_startup=True,
            ),
            cron(delete_expired_idempotency_keys, minute=7, second=45),
            cron(scheduled_state_purge, second=20),
            cron(scheduled_activity_sweep, second=25),
            cron(
                scheduled_analytics_load,
                second=set(range(0, 60, settings.analytics_load_every_seconds)),
                run_at_startup=True,
            ),
            cron(scheduled_analytics_purge, second=35),
        ],
        queue_name=settings.queue_name,
        redis_settings=redis_settings(settings.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        max_jobs=settings.worker_max_jobs,
        poll_delay=settings.worker_poll_delay,
        job_timeout=settings.worker_job_timeout,
        max_tries=settings.worker_max_tries,
        keep_result=KEEP_RESULT_SECONDS,
    )


async def run_worker(settings: Settings, *, handle_signals: bool = True) -> None:
    """Run a worker until it is stopped (signal or cancellation), then close it cleanly."""
    worker = build_worker(settings, handle_signals=handle_signals)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # arq answers SIGINT/SIGTERM by cancelling its main task: a normal stop, unless we
        # ourselves are being cancelled by whoever runs us.
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    finally:
        await worker.close()
