"""Writing down Apple's Live Activity limits once a minute (``controlplane/activities.py``).

Reads and updates already apply the limits at once — an activity started 8 hours ago answers
``ended`` and refuses updates — but lists filter on the stored status: this sweep moves past
their limits the activities nobody touched (ended after 8 hours, stale past their stale date,
dismissed once off the Lock Screen).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane import activities


async def scheduled_activity_sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Move activities past their limits; returns how many moved, by new status."""
    return dict(await activities.sweep(datetime.now(UTC)))
