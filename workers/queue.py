"""What the API and the workers agree on: the Redis connection and the job names."""

from __future__ import annotations

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


def redis_settings(redis_url: str) -> RedisSettings:
    """arq's connection settings for the worker; fail fast rather than retry for a minute."""
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = int(CONNECT_TIMEOUT_SECONDS)
    settings.conn_retries = 3
    settings.conn_retry_delay = 1
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
