"""Purging expired state entries once a minute, and snapshotting stored state bytes.

An entry past its ``expires_at`` is invisible the moment it expires (every read filters on
it), but its row and its bytes stay until this job deletes it: in batches of
:data:`controlplane.state.PURGE_BATCH`, each batch one transaction that deletes the entries
and gives their bytes back to their organization's plan (``controlplane/state.py``). Then it
writes every organization's stored bytes into today's usage series, which is what the daily
``state_bytes`` of ``GET /v1/usage`` shows.
"""

from __future__ import annotations

from typing import Any

from controlplane import state


async def scheduled_state_purge(ctx: dict[str, Any]) -> int:
    """Purge what has expired; returns how many entries went."""
    purged = await state.purge_expired()
    await state.record_daily_usage()
    return purged
