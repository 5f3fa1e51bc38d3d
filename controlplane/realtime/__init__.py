"""Realtime channels: servers publish JSON messages, apps hold server-sent-event streams.

- :mod:`.channels` — what a channel name may be, which names are private, Redis names per
  project and mode (tenants never share a channel, nor do test and live keys);
- :mod:`.tokens` — the short-lived subscribe tokens a tenant's server mints for private channels;
- :mod:`.messages` — publishing (one Redis round trip: history stream + pub/sub) and reading the
  bounded history a reconnecting client resumes from (``Last-Event-ID``);
- :mod:`.hub` — one Redis pub/sub connection per API process, one subscription per channel,
  fanned out to every local stream;
- :mod:`.limits` — open streams per project, counted across API processes by plan.

The HTTP side is ``controlplane/api/realtime.py``; docs/realtime.md is the user's guide.
"""
