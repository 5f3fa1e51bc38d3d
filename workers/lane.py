"""The lane: a worker takes small pushes due now many at a time, not one arq job each.

The API hands each small push due now (:data:`controlplane.core.queue.LANE_MAX_DELIVERIES`
deliveries at most) to a Redis stream, the lane, and rings the queue's wake channel. Every
worker reads the lane through one consumer group: a read takes up to :data:`READ_COUNT`
entries, and :func:`workers.tasks.deliver.deliver_pushes` claims, sends and records all of
their deliveries together. Up to :data:`RUNS_AT_ONCE` reads are being delivered at a time, so
new pushes are taken while earlier ones are on the wire.

What keeps a push from being lost or sent twice is the same as for a job: the delivery rows in
PostgreSQL are the truth, and a row is only sent by the run that claimed it.

- An entry is acknowledged (and deleted) once its deliveries are recorded.
- When a run of many pushes fails, each is delivered again on its own at once, so a push that
  cannot be delivered holds back no other; what fails alone too is left pending. A worker
  killed mid-run leaves its entries pending too. Pending entries are taken over by whichever
  worker next looks for entries idle for ``delivery_lease_seconds`` (the rows' own lease:
  before it runs out nobody may send them).
- A worker told to stop hands the entries it had not finished back to the lane at once, as
  new entries, for the others.
- The reconciler still enqueues rows left ``queued`` for its grace period, whatever happened
  to their entry (Redis restarted without its data).

Through a Redis outage the lane waits and tries again, as the worker's poll does; each read that
reaches Redis tells the worker (``redis_answered``), so its readiness comes back with the first
one rather than with the poll's next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from controlplane.core.queue import LANE_GROUP, lane_stream

logger = logging.getLogger("brik.worker")

READ_COUNT = 200  # entries taken by one read
# Reads being delivered at the same time. Two: while one run sends, the other reads and claims,
# and what arrives meanwhile waits for the next read — many pushes per read under load (each
# read, claim and write is shared by all), one at once when the lane is quiet.
RUNS_AT_ONCE = 2
# A read waits this long for an entry, then the reader looks about (is it stopping? entries to
# take over?) and reads again: short, so a stopping worker is not kept waiting.
WAIT_MS = 250
TAKE_OVER_EVERY_SECONDS = 5.0  # how often a worker looks for entries a dead one left
STOP_READING_SECONDS = 1.0  # more than one read's wait: the reader sees it is stopping
HAND_BACK_SECONDS = 2.0  # what a stopping worker spends handing entries back
FORGET_AFTER_SECONDS = 3600.0  # a consumer idle this long, holding nothing, is a gone worker
# After a run of many pushes failed and this many, delivered alone, failed too (and none went
# out), the failure is taken for an outage: the rest are not tried one by one.
ALONE_FAILING_IS_AN_OUTAGE = 3
FIRST_RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 5.0

Deliver = Callable[[Sequence[tuple[str, Sequence[str]]]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Entry:
    """One push's deliveries, as the API handed them over."""

    entry_id: str
    push_id: str
    delivery_ids: tuple[str, ...]


class Lane:
    """One worker's reader of the lane: takes entries and delivers them until stopped."""

    def __init__(
        self, redis: Redis, queue_name: str, consumer: str, deliver: Deliver, *,
        take_over_idle_seconds: float, take_over_every_seconds: float = TAKE_OVER_EVERY_SECONDS,
        redis_answered: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._stream = lane_stream(queue_name)
        self._consumer = consumer
        self._deliver = deliver
        self._take_over_idle_ms = int(take_over_idle_seconds * 1000)
        self._take_over_every = take_over_every_seconds
        self._redis_answered = redis_answered
        self._slots = asyncio.Semaphore(RUNS_AT_ONCE)
        self._runs: set[asyncio.Task[None]] = set()
        self._looked_for_abandoned = -math.inf
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Start taking and delivering entries, until :meth:`stop`."""
        self._reader = asyncio.create_task(self._read(), name="brik-lane")

    async def _read(self) -> None:
        retry_in = FIRST_RETRY_SECONDS
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self._forget_gone_consumers()
        while not self._stopping:
            await self._slots.acquire()
            try:
                entries = await self.take()
            except (RedisError, OSError, TimeoutError) as exc:
                self._slots.release()
                logger.debug("the lane could not be read (%s); trying again", exc)
                await asyncio.sleep(retry_in)
                retry_in = min(retry_in * 2, MAX_RETRY_SECONDS)
                continue
            except BaseException:
                self._slots.release()
                raise
            retry_in = FIRST_RETRY_SECONDS
            self._redis_answered()
            if not entries or self._stopping:  # waited its while (read again), or stopping
                self._slots.release()
                if entries:
                    await self._hand_back(entries)
                continue
            run = asyncio.create_task(self._deliver_entries(entries), name="brik-lane-run")
            self._runs.add(run)
            run.add_done_callback(self._run_ended)

    def _run_ended(self, run: asyncio.Task[None]) -> None:
        self._runs.discard(run)
        self._slots.release()

    async def take(self) -> list[Entry]:
        """Up to :data:`READ_COUNT` entries: new ones, and every few seconds those another
        worker took and left idle too long (it died)."""
        try:
            return await self._take()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        # First use, or Redis lost the stream: the group reads it from its very beginning.
        with contextlib.suppress(ResponseError):  # BUSYGROUP: another worker was first
            await self._redis.xgroup_create(self._stream, LANE_GROUP, id="0", mkstream=True)
        return await self._take()

    async def _take(self) -> list[Entry]:
        found: list[tuple[bytes, dict[bytes, bytes]]] = []
        now = time.monotonic()
        if now - self._looked_for_abandoned >= self._take_over_every:
            self._looked_for_abandoned = now
            claimed = await self._redis.xautoclaim(
                self._stream, LANE_GROUP, self._consumer, min_idle_time=self._take_over_idle_ms,
                start_id="0-0", count=READ_COUNT,
            )  # fmt: skip
            found += claimed[1]
        if len(found) < READ_COUNT:
            # Blocking (only when nothing was taken over): returns as soon as an entry is added.
            fresh = await self._redis.xreadgroup(
                LANE_GROUP, self._consumer, {self._stream: ">"}, count=READ_COUNT - len(found),
                block=None if found else WAIT_MS,
            )  # fmt: skip
            for _stream, entries in fresh:
                found += entries
        entries = [(raw[0], _entry(raw)) for raw in found]
        unreadable = [entry_id for entry_id, entry in entries if entry is None]
        if unreadable:  # dropped, said loudly; their rows, if any, are the reconciler's
            logger.error("unreadable lane entries dropped: %s", unreadable)
            await self._remove(unreadable)
        return [entry for _, entry in entries if entry is not None]

    async def _deliver_entries(self, entries: list[Entry]) -> None:
        try:
            await self._deliver([(entry.push_id, entry.delivery_ids) for entry in entries])
        except asyncio.CancelledError:
            # Stopping: what was recorded stays recorded; the rest goes back for the others.
            await self._hand_back(entries)
            raise
        except Exception as exc:
            if len(entries) == 1:
                # Left pending: taken over once idle for the rows' lease, by any worker.
                logger.exception("delivering push %s from the lane failed", entries[0].push_id)
                return
            await self._deliver_one_at_a_time(entries, exc)
            return
        await self._acknowledge(entries)

    async def _deliver_one_at_a_time(self, entries: list[Entry], failure: Exception) -> None:
        """After a run of many pushes failed: each push again on its own, so one push that
        cannot be delivered (whatever the reason) holds back no other. Those that fail alone
        too are left pending, for a take-over once their lease has run out."""
        left: list[Entry] = []
        for at, entry in enumerate(entries):
            if len(left) == at == ALONE_FAILING_IS_AN_OUTAGE:
                # Every one failed alone too: not one push's failure but the database's (or
                # the network's); the rest wait for a take-over rather than each for its time-out.
                left += entries[at:]
                break
            try:
                await self._deliver([(entry.push_id, entry.delivery_ids)])
            except asyncio.CancelledError:
                await self._hand_back([entry, *entries[at + 1 :]])
                raise
            except Exception:
                left.append(entry)
                continue
            await self._acknowledge([entry])
        # One line for the lot: a database outage fails every push the same way. An error only
        # when some are left: when each went out on its own, nothing waits on anyone.
        (logger.error if left else logger.warning)(
            "delivering %d pushes from the lane together failed (%s: %s); one at a time, "
            "%d went out and %d are left for a later take-over: %s",
            len(entries), type(failure).__name__, failure, len(entries) - len(left), len(left),
            [entry.push_id for entry in left],
        )  # fmt: skip

    async def _acknowledge(self, entries: list[Entry]) -> None:
        try:
            await self._remove([entry.entry_id for entry in entries])
        except (RedisError, OSError, TimeoutError) as exc:
            # Read again later, it finds its deliveries recorded and sends nothing.
            logger.warning("lane entries delivered but not acknowledged (%s)", exc)

    async def _remove(self, entry_ids: list[str], *, again: list[Entry] | None = None) -> None:
        """Acknowledge and delete ``entry_ids`` — after adding ``again`` as new entries, in the
        same transaction, when they go back for another worker."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry in again or []:
                pipe.xadd(self._stream, {"p": entry.push_id, "d": ",".join(entry.delivery_ids)})
            pipe.xack(self._stream, LANE_GROUP, *entry_ids)
            pipe.xdel(self._stream, *entry_ids)
            await pipe.execute()

    async def _hand_back(self, entries: list[Entry]) -> None:
        """Put ``entries`` back as new entries so another worker takes them now rather than
        once their lease runs out."""
        try:
            async with asyncio.timeout(HAND_BACK_SECONDS):
                await self._remove([entry.entry_id for entry in entries], again=entries)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("lane entries not handed back (%s): taken over later", exc)

    async def stop(self) -> None:
        """Stop taking entries, cancel the runs under way (each finishes the chunk it is
        sending) and wait for them; the entries they had not finished go back to the lane."""
        self._stopping = True
        if self._reader is not None:
            # Not cancelled mid-read: entries Redis handed out in a reply never read would wait
            # in this worker's name for a lease. Its blocking read ends within WAIT_MS, and the
            # reader hands back what that read returned.
            await asyncio.wait([self._reader], timeout=STOP_READING_SECONDS)
            self._reader.cancel()
            await asyncio.wait([self._reader], timeout=STOP_READING_SECONDS)
        runs = list(self._runs)
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self._forget_gone_consumers(self._consumer)

    async def _forget_gone_consumers(self, *also: str) -> None:
        """Remove from the group the consumers (workers) that hold nothing: ``also`` (this
        one, stopping), and those idle for :data:`FORGET_AFTER_SECONDS` (workers long gone).
        One holding entries is kept: removing it would lose them."""
        try:
            consumers = await self._redis.xinfo_consumers(self._stream, LANE_GROUP)
        except ResponseError:
            return  # no lane or no group yet
        for consumer in consumers:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            gone = name in also or int(consumer["idle"]) >= FORGET_AFTER_SECONDS * 1000
            if gone and int(consumer["pending"]) == 0:
                await self._redis.xgroup_delconsumer(self._stream, LANE_GROUP, name)


def _entry(raw: tuple[bytes, dict[bytes, bytes]]) -> Entry | None:
    entry_id, fields = raw
    try:
        return Entry(
            entry_id=entry_id.decode(),
            push_id=fields[b"p"].decode(),
            delivery_ids=tuple(fields[b"d"].decode().split(",")),
        )
    except (KeyError, UnicodeDecodeError):
        return None
