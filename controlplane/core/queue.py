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

Jobs due now also ring the queue's wake channel (:func:`wake_channel`): an idle worker takes
them at once instead of at its next poll (``workers/worker.py``); polling remains the way
deferred jobs and a missed wake-up are found.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from arq.connections import ArqRedis
from arq.jobs import Job

HEARTBEAT_JOB = "heartbeat"
DELIVER_JOB = "deliver_batch"
DELIVERY_BATCH_SIZE = 500  # deliveries per job; see loadtests/ for how it was chosen
WEBHOOK_JOB = "deliver_webhook"
EXPORT_JOB = "build_export"


def wake_channel(queue_name: str) -> str:
    """The Redis pub/sub channel that tells a queue's idle workers new work is due."""
    return f"{queue_name}:wake"


async def _wake(redis: ArqRedis) -> None:
    await redis.publish(wake_channel(redis.default_queue_name), "1")


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
    same origin twice is the same jobs, enqueued once. Returns the number of jobs. Raises
    whatever Redis raises; callers decide what an unreachable Redis means for them.
    """
    deferral = timedelta(seconds=defer_by) if defer_by else None
    jobs = 0
    for number, start in enumerate(range(0, len(delivery_ids), DELIVERY_BATCH_SIZE)):
        await redis.enqueue_job(
            DELIVER_JOB, push_id, list(delivery_ids[start : start + DELIVERY_BATCH_SIZE]),
            _job_id=f"deliver:{push_id}:{origin}:{number}",
            _defer_until=defer_until, _defer_by=deferral,
        )  # fmt: skip
        jobs += 1
    if jobs and defer_until is None and not deferral:
        await _wake(redis)
    return jobs


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
    job = await redis.enqueue_job(
        WEBHOOK_JOB, delivery_id, _job_id=f"webhook:{delivery_id}:{attempts}{suffix}",
        _defer_by=timedelta(seconds=defer_by) if defer_by else None,
    )  # fmt: skip
    if job is not None and not defer_by:
        await _wake(redis)
    return job is not None


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
    job = await redis.enqueue_job(
        EXPORT_JOB, export_id, _job_id=f"export:{export_id}:{attempts}{suffix}",
        _defer_by=timedelta(seconds=defer_by) if defer_by else None,
    )  # fmt: skip
    if job is not None and not defer_by:
        await _wake(redis)
    return job is not None
