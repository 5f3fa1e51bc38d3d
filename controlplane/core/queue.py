"""The job names, and the one way jobs get into the queue.

Every path that hands deliveries to a worker — the API after it commits a push
(:mod:`controlplane.enqueue_relay`), a retry, a delivery held by the egress limit, the
reconciler — calls :func:`enqueue_deliveries`. It alone knows how deliveries are batched into
jobs and how those jobs are named, so a job id always reads ``deliver:<push>:<origin>:<batch>``.
arq refuses a second job under an id it still holds, which makes handing over the same batch
twice (a relay retrying an enqueue whose answer was lost) harmless. Webhook deliveries go in
through :func:`enqueue_webhook_delivery`, one job per attempt. The pipeline probe's
heartbeat goes in through :func:`enqueue_heartbeat`, a project export's build through
:func:`enqueue_export`; the worker registers its functions under
the same names (``workers/worker.py``).

Small pushes due now — up to :data:`LANE_MAX_DELIVERIES` deliveries, the everyday send to one
user or device — skip arq and go into the *lane* (:func:`lane_stream`), a Redis stream each
worker reads through one consumer group, many pushes per read (``workers/lane.py``): one read,
one claim, one send of them all and one write of the outcomes instead of one job per push, each
with arq's own half-dozen Redis round trips. An entry names a push and its deliveries, as a
job does; reading it twice (a worker that died before acknowledging it) finds nothing left to
claim. Deferred handovers (a scheduled push, a retry, a held row) and large fan-outs, which are
spread over the workers 500 deliveries at a time, stay arq jobs.

Jobs due now also ring the queue's wake channel (:func:`wake_channel`): an idle worker takes
them at once instead of at its next poll (``workers/worker.py``); polling remains the way
deferred jobs and a missed wake-up are found. The lane needs no bell: workers wait on it with
a blocking read, which returns as soon as an entry is added.

A handover is one Redis round trip (:func:`_enqueue_jobs`; one per :data:`JOBS_PER_SCRIPT` jobs
of a large fan-out, so no single script holds Redis for long): one script checks each job id is
free, stores the jobs in arq's format, queues them and rings the wake channel. arq's own
``enqueue_job`` takes three per job (WATCH, EXISTS, MULTI…EXEC) and the wake-up a fourth, and
on the everyday one-device send they were a third of the API's round trips
(``loadtests/one_to_one.py``). The script does what ``enqueue_job`` does, atomically, so the
worker (plain arq) cannot tell the difference.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job, serialize_job
from redis.exceptions import NoScriptError

HEARTBEAT_JOB = "heartbeat"
DELIVER_JOB = "deliver_batch"
DELIVERY_BATCH_SIZE = 500  # deliveries per job; see loadtests/ for how it was chosen
JOBS_PER_SCRIPT = 100  # jobs handed over by one call of the enqueue script
WEBHOOK_JOB = "deliver_webhook"
EXPORT_JOB = "build_export"


LANE_MAX_DELIVERIES = 100  # a push with more deliveries than this goes as arq jobs
LANE_GROUP = "workers"  # the lane's consumer group: every worker reads through it


def wake_channel(queue_name: str) -> str:
    """The Redis pub/sub channel that tells a queue's idle workers new work is due."""
    return f"{queue_name}:wake"


def lane_stream(queue_name: str) -> str:
    """The Redis stream of small pushes due now, beside the queue (see the module's doc)."""
    return f"{queue_name}:lane"


# KEYS: the queue, the lane, then each job's key and result key. ARGV: the wake channel ('' for
# none), the number of lane entries, each entry's push id and delivery ids (comma-separated),
# then each job's id, score (ms), lifetime (ms) and serialized body. Returns 1/0 per job (0:
# arq already holds a job or a result under that id, as enqueue_job's None).
_ENQUEUE = """
local taken = {}
local entries = tonumber(ARGV[2])
local due = false
for i = 0, entries - 1 do
  redis.call('XADD', KEYS[2], '*', 'p', ARGV[3 + 2 * i], 'd', ARGV[4 + 2 * i])
end
local first = 3 + 2 * entries
for i = 0, (#ARGV - first + 1) / 4 - 1 do
  local job_key, result_key = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local at = first + 4 * i
  local id, score, ttl, body = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  if redis.call('EXISTS', job_key, result_key) > 0 then
    taken[i + 1] = 0
  else
    redis.call('PSETEX', job_key, ttl, body)
    redis.call('ZADD', KEYS[1], score, id)
    taken[i + 1] = 1
    due = true
  end
end
if due and ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], '1')
end
return taken
"""
_ENQUEUE_SHA = hashlib.sha1(_ENQUEUE.encode()).hexdigest()


@dataclass(frozen=True)
class _Job:
    function: str
    args: tuple[Any, ...]
    job_id: str


async def _enqueue_jobs(
    redis: ArqRedis,
    jobs: Sequence[_Job],
    *,
    defer_until: datetime | None = None,
    defer_by: float | None = None,
    lane: Sequence[tuple[str, Sequence[str]]] = (),
) -> list[bool]:
    """arq's ``enqueue_job`` for each of ``jobs``, in one round trip per
    :data:`JOBS_PER_SCRIPT`; True where enqueued. ``lane`` (pushes due now: push id, delivery
    ids) goes into the lane in the first round trip. Jobs due now ring the wake channel."""
    now_ms = int(time.time() * 1000)
    if defer_until is not None:
        score = int(defer_until.timestamp() * 1000)
    elif defer_by:
        score = now_ms + int(defer_by * 1000)
    else:
        score = now_ms
    lifetime = score - now_ms + redis.expires_extra_ms
    queue = redis.default_queue_name
    deferred = defer_until is not None or bool(defer_by)
    wake = "" if deferred else wake_channel(queue)
    taken: list[bool] = []
    for first in range(0, max(len(jobs), 1 if lane else 0), JOBS_PER_SCRIPT):
        keys: list[str] = [queue, lane_stream(queue)]
        entries = lane if first == 0 else ()
        args: list[Any] = [wake, len(entries)]
        for push_id, delivery_ids in entries:
            args += [push_id, ",".join(delivery_ids)]
        for job in jobs[first : first + JOBS_PER_SCRIPT]:
            keys += [job_key_prefix + job.job_id, result_key_prefix + job.job_id]
            body = serialize_job(job.function, job.args, {}, None, now_ms,
                                 serializer=redis.job_serializer)  # fmt: skip
            args += [job.job_id, score, lifetime, body]
        taken += await _run_enqueue_script(redis, keys, args)
    return taken


async def _run_enqueue_script(redis: ArqRedis, keys: list[str], args: list[Any]) -> list[bool]:
    try:
        flags = await redis.evalsha(_ENQUEUE_SHA, len(keys), *keys, *args)  # type: ignore[misc]
    except NoScriptError:  # a Redis that has not seen it yet (or was restarted): send it whole
        flags = await redis.eval(_ENQUEUE, len(keys), *keys, *args)  # type: ignore[misc]
    return [bool(flag) for flag in flags]


async def enqueue_deliveries(
    redis: ArqRedis,
    push_id: str,
    delivery_ids: Sequence[str],
    *,
    origin: str,
    defer_until: datetime | None = None,
    defer_by: float | None = None,
) -> int:
    """Enqueue delivery jobs for ``delivery_ids``, :data:`DELIVERY_BATCH_SIZE` per job.

    ``origin`` names who hands them over (``accept``, ``retry:…``, ``egress:…``,
    ``reconcile:…``) and must make the job ids unique among the handovers of one push: the
    same origin twice is the same jobs, enqueued once (a lane entry handed over twice is read
    twice and its deliveries claimed once). Returns the number of jobs and lane entries. Raises
    whatever Redis raises; callers decide what an unreachable Redis means for them.
    """
    return await enqueue_deliveries_of(
        redis, [(push_id, delivery_ids)], origin=origin, defer_until=defer_until,
        defer_by=defer_by,
    )  # fmt: skip


async def enqueue_deliveries_of(
    redis: ArqRedis,
    pushes: Sequence[tuple[str, Sequence[str]]],
    *,
    origin: str,
    defer_until: datetime | None = None,
    defer_by: float | None = None,
) -> int:
    """:func:`enqueue_deliveries` for several pushes' deliveries (a batch's), in as few round
    trips as their jobs allow. Small pushes due now go into the lane, one entry each."""
    due_now = defer_until is None and not defer_by
    lane: list[tuple[str, Sequence[str]]] = []
    jobs: list[_Job] = []
    for push_id, delivery_ids in pushes:
        if due_now and 0 < len(delivery_ids) <= LANE_MAX_DELIVERIES:
            lane.append((push_id, delivery_ids))
            continue
        jobs += [
            _Job(DELIVER_JOB, (push_id, list(delivery_ids[start : start + DELIVERY_BATCH_SIZE])),
                 f"deliver:{push_id}:{origin}:{number}")
            for number, start in enumerate(range(0, len(delivery_ids), DELIVERY_BATCH_SIZE))
        ]  # fmt: skip
    if jobs or lane:
        await _enqueue_jobs(redis, jobs, defer_until=defer_until, defer_by=defer_by, lane=lane)
    return len(jobs) + len(lane)


async def queue_depth(redis: ArqRedis) -> int:
    """Work waiting for the workers: arq's jobs (due or deferred) and the lane's entries (small
    pushes due now, taken and not yet acknowledged included)."""
    queue = redis.default_queue_name
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue)
        pipe.xlen(lane_stream(queue))
        jobs, entries = await pipe.execute()
    return int(jobs) + int(entries)


async def enqueue_webhook_delivery(
    redis: ArqRedis, delivery_id: str, attempts: int, *, late: str | None = None,
    defer_by: float | None = None,
) -> bool:  # fmt: skip
    """Enqueue the attempt of webhook delivery ``delivery_id`` that follows its ``attempts``.

    The job id is ``webhook:<delivery>:<attempts>``: whoever hands over the same attempt (the
    dispatcher each second, a delivery whose turn came, a retry) enqueues one job. ``late``
    (the reconciler's stamp) makes a new id for an attempt whose job went missing. False when
    arq already holds the job.
    """
    suffix = f":late:{late}" if late else ""
    job = _Job(WEBHOOK_JOB, (delivery_id,), f"webhook:{delivery_id}:{attempts}{suffix}")
    [taken] = await _enqueue_jobs(redis, [job], defer_by=defer_by)
    return taken


async def enqueue_heartbeat(redis: ArqRedis, probe_id: str, *, expires: float) -> Job | None:
    """Enqueue a heartbeat for the pipeline probe; one nobody takes within ``expires`` seconds
    expires instead of running late. None only if its (random) id were already taken."""
    return await redis.enqueue_job(HEARTBEAT_JOB, probe_id, _expires=expires)


async def enqueue_export(
    redis: ArqRedis, export_id: str, attempts: int, *, late: str | None = None,
    defer_by: float | None = None,
) -> bool:  # fmt: skip
    """Enqueue the build of export ``export_id`` that follows its ``attempts``.

    The job id is ``export:<export>:<attempts>``: the API after the commit and the sweep
    handing over the same attempt enqueue one job. ``late`` (the sweep's stamp) makes a new id
    for an attempt whose job went missing. False when arq already holds the job.
    """
    suffix = f":late:{late}" if late else ""
    job = _Job(EXPORT_JOB, (export_id,), f"export:{export_id}:{attempts}{suffix}")
    [taken] = await _enqueue_jobs(redis, [job], defer_by=defer_by)
    return taken
