"""Analytics: what apps report about their widgets, Live Activities and pushes, in bulk.

The request path never writes a database row per event: ``POST /v1/events`` checks each event
and appends the batch to a Redis stream; workers load the stream into PostgreSQL in bulk and
count each new event into hourly and daily rollups; the summaries read the rollups.

- ``events.py``    — the event vocabulary (names, fields, limits) and the rules one event passes.
- ``buffer.py``    — the Redis stream between the API and the workers: append, take, acknowledge,
  bounded without ever trimming what is not loaded.
- ``loading.py``   — bulk insert with deduplication by event id, rollups counted from what was
  inserted: a redelivered batch is counted once.
- ``retention.py`` — how long raw events (per plan) and rollups are kept, and the purge.
- ``reading.py``   — summaries from the rollups, raw events page by page and for CSV.

How it holds on a bad day is in docs/analytics.md, "How events are loaded".
"""
