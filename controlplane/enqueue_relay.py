"""Handing a committed push to the queue without ever turning its 202 into an error.

``POST /v1/pushes`` answers 202 once the push and its deliveries are committed in the database;
only then are jobs enqueued in Redis. If Redis is unreachable at that moment the push is still
accepted — answering 500 would invite a client to send it again — so the batch stays here and
a background task hands it over as soon as Redis answers: seconds after it is back, not the
reconciler's one to two minutes (its grace, then its next run). Handing a batch over twice is
harmless (same job ids, see :func:`controlplane.core.queue.enqueue_deliveries`), and a batch
this process never managed to hand over (it was stopped first, or :data:`MAX_PENDING`
overflowed) is still in PostgreSQL, where the worker's reconciler finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import RedisError

from controlplane.core.queue import enqueue_deliveries, enqueue_deliveries_of

logger = logging.getLogger("brik.enqueue")

MAX_PENDING = 100_000  # batches kept in memory; beyond that the reconciler picks them up
FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Handover:
    push_id: str
    delivery_ids: list[str]
    defer_until: datetime | None = None


class EnqueueRelay:
    def __init__(self, redis: ArqRedis, registry: CollectorRegistry) -> None:
        self._redis = redis
        self._pending: deque[Handover] = deque()
        self._task: asyncio.Task[None] | None = None
        self._gauge = Gauge(
            "brik_enqueue_pending",
            "Accepted pushes whose jobs wait for Redis to come back before they are enqueued.",
            registry=registry,
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def hand_over(self, handover: Handover) -> None:
        """Enqueue now, or keep it and retry in the background; never raises for Redis."""
        await self.hand_over_many([handover])

    async def hand_over_many(self, handovers: Sequence[Handover]) -> None:
        """:meth:`hand_over` for several pushes (a batch's): one round trip per moment they
        are due (as few as their jobs allow), or all kept and retried."""
        if not self._pending:
            due: dict[datetime | None, list[Handover]] = defaultdict(list)
            for handover in handovers:
                due[handover.defer_until].append(handover)
            try:
                for defer_until, group in due.items():
                    await enqueue_deliveries_of(
                        self._redis, [(h.push_id, h.delivery_ids) for h in group],
                        origin="accept", defer_until=defer_until,
                    )  # fmt: skip
                return
            except (RedisError, OSError):
                logger.warning(
                    "Redis is unreachable: %d accepted pushes (the first %s) will be enqueued "
                    "when it is back", len(handovers), handovers[0].push_id, exc_info=True,
                )  # fmt: skip
        for handover in handovers:  # again in full: the same job ids are enqueued once
            self._keep(handover)

    def _keep(self, handover: Handover) -> None:
        if len(self._pending) >= MAX_PENDING:
            dropped = self._pending.popleft()
            logger.error("enqueue backlog full: push %s left to the reconciler", dropped.push_id)
        self._pending.append(handover)
        self._gauge.set(len(self._pending))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._relay(), name="brik-enqueue-relay")

    async def _relay(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while self._pending:
            await asyncio.sleep(delay)
            try:
                while self._pending:
                    await self._enqueue(self._pending[0])
                    self._pending.popleft()
                    self._gauge.set(len(self._pending))
            except (RedisError, OSError):
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            logger.info("Redis is back: every accepted push is enqueued")

    async def _enqueue(self, handover: Handover) -> None:
        await enqueue_deliveries(
            self._redis, handover.push_id, handover.delivery_ids, origin="accept",
            defer_until=handover.defer_until,
        )  # fmt: skip

    async def close(self) -> None:
        """Stop relaying; what is left waits in the database for the reconciler."""
        if self._pending:
            logger.warning(
                "stopping with %d accepted pushes not yet enqueued: the worker's reconciler "
                "will pick them up", len(self._pending),
            )  # fmt: skip
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
