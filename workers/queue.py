"""What the API and the workers agree on: the Redis connection, the job names, and the one way
deliveries get into the queue.

Every path that hands deliveries to a worker — the API after it commits a push, a retry, a
delivery held by the egress limit, the reconciler — calls :func:`enqueue_deliveries`. It alone
knows how deliveries are batched into jobs and how those jobs are named, so a job id always
reads ``deliver:<push>:<origin>:<batch>``. arq refuses a second job under an id it still holds,
which makes handing over the same batch twice (a relay retrying an enqueue whose answer was
lost) harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool

HEARTBEAT_JOB = "heartbeat"
DELIVER_JOB = "deliver_batch"
DELIVERY_BATCH_SIZE = 500  # deliveries per job; see loadtests/ for how it was chosen
CONNECT_TIMEOUT_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 10.0


def events_channel(push_id: str) -> str:
    """The Redis channel workers notify when a push's deliveries change (read by the SSE)."""
    return f"brik:push-events:{push_id}"


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
    return jobs


def redis_settings(redis_url: str) -> RedisSettings:
    """arq's connection settings for the worker: one quick try per connect; the worker itself
    waits and tries again for as long as Redis is away (workers/worker.py)."""
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = int(CONNECT_TIMEOUT_SECONDS)
    settings.conn_retries = 0
    return settings


def queue_client(redis_url: str, queue_name: str) -> ArqRedis:
    """A lazily connecting client for enqueueing jobs.

    Unlike ``arq.create_pool`` it does not ping at creation, so the API starts while Redis is
    down and ``/readyz`` reports it instead of the process crash-looping.
    """
    pool = ConnectionPool.from_url(
        redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
    )
    return ArqRedis(connection_pool=pool, default_queue_name=queue_name)
