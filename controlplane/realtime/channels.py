"""Channel names, who may read them, and where a channel lives in Redis.

A name is 1 to 100 characters: letters, digits and ``_ - . : @ =``, starting with a letter or
digit (``scores``, ``room:42``, ``user:u_123``). What its prefix says:

- ``private:…`` and ``user:…`` are **private**: subscribing needs, besides a key of the
  project, a subscribe token the tenant's server minted for it (:mod:`.tokens`);
- ``activity:{id}`` is Brik's: every update and end of the Live Activity ``{id}`` is published
  there. Servers cannot publish on it; any key of the project reads it, as any key reads
  ``/v1/state/activity:{id}`` — the activity's id, unguessable, is the capability;
- every other name is **public**: any key of the project subscribes.

Channels are per project *and* mode: ``scores`` of a test key and ``scores`` of a live key (or
of another project) are different channels, so the Redis names carry both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.models import KeyMode

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@=-]{0,99}$"
NAME_RULE = "1 to 100 characters: letters, digits and _ - . : @ =, starting with a letter or digit"
PRIVATE_PREFIXES = ("private:", "user:")
ACTIVITY_PREFIX = "activity:"
_NAME = re.compile(NAME_PATTERN)


def is_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def is_private(name: str) -> bool:
    return name.startswith(PRIVATE_PREFIXES)


def is_reserved(name: str) -> bool:
    """Brik publishes on it; a server may not."""
    return name.startswith(ACTIVITY_PREFIX)


def activity_channel(activity_id: str) -> str:
    return ACTIVITY_PREFIX + activity_id


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel of one project and mode."""

    project_id: str
    mode: KeyMode
    name: str

    @property
    def topic(self) -> str:
        """Its Redis pub/sub channel."""
        return f"brik:realtime:{self.project_id}:{self.mode.value}:{self.name}"

    @property
    def history_key(self) -> str:
        """Its Redis stream of recent messages."""
        return f"brik:realtime-history:{self.project_id}:{self.mode.value}:{self.name}"
