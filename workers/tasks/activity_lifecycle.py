"""Writing down Apple's Live Activity limits once a minute, and closing broadcast channels.

Reads and updates already apply the limits at once — an activity started 8 hours ago answers
``ended`` and refuses updates — but lists filter on the stored status: this sweep moves past
their limits the activities nobody touched (ended after 8 hours, stale past their stale date,
dismissed once off the Lock Screen); see ``controlplane/activities.py``.

Then it deletes at Apple the broadcast channel of each dismissed activity whose last update has
gone (an app may hold 10,000 channels per environment). A channel Apple could not delete now is
tried again on the next run; one already gone counts as deleted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from controlplane import activities
from controlplane.activities import BroadcastChannels, ChannelUnavailable
from controlplane.crypto import KeyRing
from workers.providers.apns_channels import ChannelAdmin

logger = logging.getLogger("brik.activities")


async def scheduled_activity_sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Move activities past their limits and close their channels; returns how many moved,
    by new status, and how many channels were closed."""
    now = datetime.now(UTC)
    moved = dict(await activities.sweep(now))
    channels: BroadcastChannels = ctx.get("channels") or ChannelAdmin(ctx["settings"])
    keyring: KeyRing = ctx["keyring"]
    closed = 0
    for channel in await activities.channels_to_close():
        try:
            await channels.close(
                channel.project_id, channel.channel_id, keyring, test_mode=channel.test_mode
            )
        except ChannelUnavailable as exc:
            logger.warning("broadcast channel of %s not closed yet: %s", channel.activity_id, exc)
            continue
        await activities.channel_closed(channel.activity_id, now)
        closed += 1
    return {**moved, "channels_closed": closed}
