"""The Redis names one side writes and the other reads.

The API counts into these and a worker flushes them to PostgreSQL (or the other way round), so
both must spell them alike. Names only one side uses stay next to the code that uses them.
"""

from __future__ import annotations

# API-key last-used stamps: the API writes one per request, a worker flushes them once a minute
# (controlplane/auth/api_key_cache.py, workers/tasks/api_key_usage.py). Field: key id.
LAST_USED_HASH = "brik:api-keys:last-used"

# Accepted API requests per organization and day, counted by the rate limiter and flushed into
# the usage table by a worker (controlplane/rate_limits.py, workers/tasks/usage_flush.py).
REQUESTS_HASH = "brik:usage:api-requests"  # field "<organization>:<mode>:<YYYY-MM-DD>"


# Analytics events waiting to be loaded: the API appends each accepted batch to this stream,
# workers read it through the consumer group and delete what they loaded; the counter holds
# the JSON bytes still in the stream, which the API keeps under a bound
# (controlplane/analytics/buffer.py).
ANALYTICS_STREAM = "brik:analytics:events"
ANALYTICS_GROUP = "loaders"
ANALYTICS_BUFFERED_BYTES = "brik:analytics:buffered-bytes"


def events_channel(push_id: str) -> str:
    """The channel workers notify when a push's deliveries change (read by the API's SSE)."""
    return f"brik:push-events:{push_id}"
