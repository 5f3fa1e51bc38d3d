"""Public identifiers: a type prefix plus 20 random base32 characters (``org_3kq…``).

Prefixed ids tell a reader (and a support engineer reading a log line) what an id names,
and never reveal row counts the way sequential integers do.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid

ID_PATTERN = r"^[a-z]{3}_[a-z2-7]{24}$"
_ID = re.compile(ID_PATTERN)


def is_well_formed_id(value: str) -> bool:
    """True for strings shaped like our ids; anything else cannot name a row (no query needed)."""
    return _ID.fullmatch(value) is not None


def new_id(prefix: str) -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()
    return f"{prefix}_{raw}"


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids at once, from one read of the random source (a batch's, a fan-out's):
    15 random bytes are exactly 24 base32 characters, so one encoding slices into ids."""
    raw = base64.b32encode(secrets.token_bytes(15 * count)).decode("ascii").lower()
    return [f"{prefix}_{raw[start : start + 24]}" for start in range(0, 24 * count, 24)]


def new_uuids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs, from one read of the random source."""
    raw = secrets.token_bytes(16 * count)
    return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * count, 16)]


# Module-level factories: migrations serialise field defaults by import path.
def new_user_id() -> str:
    return new_id("usr")


def new_org_id() -> str:
    return new_id("org")


def new_membership_id() -> str:
    return new_id("mem")


def new_project_id() -> str:
    return new_id("prj")


def new_key_id() -> str:
    return new_id("key")


def new_session_id() -> str:
    return new_id("ses")


def new_access_token_id() -> str:
    return new_id("pat")


def new_invitation_id() -> str:
    return new_id("inv")


def new_audit_event_id() -> str:
    return new_id("evt")


def new_notification_id() -> str:
    return new_id("ntf")


def new_credential_id() -> str:
    return new_id("crd")


def new_device_id() -> str:
    return new_id("dev")


def new_push_id() -> str:
    return new_id("psh")


def new_delivery_id() -> str:
    return new_id("dlv")


def new_state_entry_id() -> str:
    return new_id("ste")


def new_activity_id() -> str:
    return new_id("act")


def new_webhook_endpoint_id() -> str:
    return new_id("whk")


def new_webhook_event_id() -> str:
    return new_id("wev")


def new_webhook_delivery_id() -> str:
    return new_id("whd")


def new_export_id() -> str:
    return new_id("exp")
