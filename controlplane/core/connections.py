"""How the API and the workers connect to Redis: quick to fail, never blocking start-up.

Both sides outlive a Redis outage (the API answers 503 naming Redis, the worker waits and polls
again), so a connection attempt gives up within :data:`CONNECT_TIMEOUT_SECONDS` instead of
hanging a request or a start-up.
"""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool

CONNECT_TIMEOUT_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 10.0


def redis_settings(redis_url: str) -> RedisSettings:
    """arq's connection settings for the worker: one quick try per connect; the worker itself
    waits and tries again for as long as Redis is away (workers/worker.py)."""
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = int(CONNECT_TIMEOUT_SECONDS)
    settings.conn_retries = 0
    return settings


def queue_client(redis_url: str, queue_name: str) -> ArqRedis:
    """A lazily connecting client for enqueueing jobs (and everything else the API keeps in Redis).

    Unlike ``arq.create_pool`` it does not ping at creation, so the API starts while Redis is
    down and ``/readyz`` reports it instead of the process crash-looping.
    """
    pool = ConnectionPool.from_url(
        redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
    )
    return ArqRedis(connection_pool=pool, default_queue_name=queue_name)
