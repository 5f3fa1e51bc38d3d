"""What the API handed to the workers: the lane's entries (small pushes due now)."""

from __future__ import annotations

from redis.asyncio import Redis

from controlplane.core.queue import lane_stream


async def lane_entries(redis: Redis, queue_name: str) -> list[tuple[str, list[str]]]:
    """Each entry of the queue's lane, oldest first: its push id and delivery ids."""
    return [
        (fields[b"p"].decode(), fields[b"d"].decode().split(","))
        for _, fields in await redis.xrange(lane_stream(queue_name))
    ]
