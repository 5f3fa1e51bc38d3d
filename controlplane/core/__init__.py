"""The shared core: what the API and the workers agree on, and nothing else.

Both sides import it; it imports neither (only itself and third-party libraries), so it sits
below everything else in the import graph (``tests/test_layers.py`` keeps it there):

- :mod:`controlplane.core.queue` — the job names and the one way jobs get into the queue;
- :mod:`controlplane.core.connections` — how either side connects to Redis;
- :mod:`controlplane.core.keyspace` — the Redis names one side writes and the other reads.
"""
