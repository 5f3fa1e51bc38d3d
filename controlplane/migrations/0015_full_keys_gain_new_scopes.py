"""Secret keys that held every scope there was gain the scopes issue 16 added.

A secret key created without ``scopes`` holds every scope that exists at its creation
(``controlplane/auth/api_keys.py``), stored as a list. Keys made before analytics, webhooks and
realtime channels existed would otherwise need replacing before they could read analytics,
manage webhook endpoints or publish on a channel after an upgrade — a surprise for a tenant
whose code did not change. So a secret key that held every scope of issue 13 (the full set
before this issue) is given the new ones; a key narrowed on purpose keeps exactly its scopes.
"""

import json
from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

FULL_BEFORE = {
    "devices:read", "devices:write", "pushes:read", "pushes:write", "credentials:read",
    "credentials:write", "usage:read", "state:read", "state:write",
}  # fmt: skip
ADDED = {"analytics:read", "analytics:write", "webhooks:read", "webhooks:write", "realtime:write"}


async def _widen_full_keys(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    rows = await client.execute_query_dict("SELECT id, scopes FROM api_keys WHERE kind = 'secret'")
    placeholder = "$1" if client.capabilities.dialect == "postgres" else "?"
    second = "$2" if client.capabilities.dialect == "postgres" else "?"
    for row in rows:
        scopes = row["scopes"]
        held = set(json.loads(scopes) if isinstance(scopes, str) else scopes or [])
        if held >= FULL_BEFORE and not held >= ADDED:
            await client.execute_query(
                f"UPDATE api_keys SET scopes = {placeholder} WHERE id = {second}",
                [json.dumps(sorted(held | ADDED)), row["id"]],
            )


class Migration(migrations.Migration):
    dependencies = [("brik", "0014_webhooks")]

    initial = False

    operations = [ops.RunPython(_widen_full_keys)]
