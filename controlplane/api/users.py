"""``/v1/users/{user_id}``: one end user's data, exported or erased (a data subject's request).

Secret keys only: ``users:read`` exports, ``users:write`` erases (members acting through the
dashboard's gateway hold both from the developer role up; viewers do not — an export carries
push tokens). Everything is within the key's project and mode. What is the user's and what an
erase keeps is ``controlplane/exports/user_data.py``'s to decide and docs/export.md's to tell.

A user id is a name in the tenant's own namespace, not an id of Brik's: a user nobody named
exports empty lists and erases nothing (zero counts), like a user erased before — so an erase
can be repeated safely, and another tenant's users can be neither seen nor touched, only named
in the caller's own project.

The audit log records both, but not the user id (an erase must leave none of it behind): its
details carry ``user_ref``, a keyed hash of the project and the user id (HMAC with
``BRIK_SECRET_KEY``), so support can still answer "was this user erased?" by hashing the id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from controlplane.api.bodies import reject_unstorable_text
from controlplane.api.routing import Auth, Call, Operation
from controlplane.auth.keys import hash_key
from controlplane.errors import InvalidRequest
from controlplane.exports.user_data import EndUser, erase, export
from controlplane.models import KeyMode

Records = list[dict[str, Any]]
MAX_USER_ID = 200


class UserExport(BaseModel):
    object: Literal["user_export"] = "user_export"
    user_id: str
    mode: KeyMode
    exported_at: datetime
    devices: Records = Field(
        description="The user's devices, push tokens in full (they are the user's data)."
    )
    activities: Records = Field(
        description="Live Activities started for the user or on one of their devices."
    )
    activity_tokens: Records = Field(description="Activity tokens on the user's devices.")
    state: Records = Field(description="State entries `user:{user_id}` and `user:{user_id}:…`.")
    events: Records = Field(description="Analytics events naming the user or one of their devices.")
    deliveries: Records = Field(description="Deliveries to the user's devices.")


class UserErasure(BaseModel):
    object: Literal["user_erasure"] = "user_erasure"
    user_id: str
    mode: KeyMode
    erased: dict[str, int] = Field(
        description="How many rows of each kind went or lost the user (all zero when there was "
        "nothing left: erasing again is harmless). Deliveries are kept for counts, without "
        "their device.",
    )


def _end_user(call: Call) -> EndUser:
    assert call.tenant.project is not None
    assert call.tenant.mode is not None
    user_id = call.path_name("user_id")
    reject_unstorable_text(user_id, "user_id")
    if not 1 <= len(user_id) <= MAX_USER_ID:
        raise InvalidRequest(
            f"user_id: 1 to {MAX_USER_ID} characters, as devices take it.",
            code="parameter_invalid", param="user_id",
        )  # fmt: skip
    return EndUser(call.tenant.project.id, call.tenant.mode, user_id)


def user_ref(call: Call, user: EndUser) -> str:
    """The audit log's name for an end user: a keyed hash, never the id itself."""
    assert call.settings.secret_key is not None
    return hash_key(
        f"{user.project_id}:{user.user_id}", call.settings.secret_key.get_secret_value()
    )


async def export_user_data(call: Call) -> UserExport:
    user = _end_user(call)
    data = await export(user, call.keyring)
    # A read, so no transaction of its own: the audit record is its one write.
    await call.audit(
        "end_user.exported", target_type="end_user", target_id=user_ref(call, user),
        project_id=user.project_id, mode=user.mode.value,
        counts={name: len(rows) for name, rows in data.items()},
    )  # fmt: skip
    return UserExport.model_validate(
        {"user_id": user.user_id, "mode": user.mode, "exported_at": datetime.now(UTC), **data}
    )


async def erase_user_data(call: Call) -> UserErasure:
    user = _end_user(call)
    erased = await erase(user)
    await call.audit(
        "end_user.erased", target_type="end_user", target_id=user_ref(call, user),
        project_id=user.project_id, mode=user.mode.value, counts=erased.counts(),
    )  # fmt: skip
    return UserErasure(user_id=user.user_id, mode=user.mode, erased=erased.counts())


KEY = Auth.API_KEY
USER = "/v1/users/{user_id}"
operations = [
    Operation("GET", USER + "/export", export_user_data,
              "Export everything of one end user's (devices with their tokens, activities, "
              "state, events, deliveries)", "Users", auth=KEY, scope="users:read",
              secret_key_only=True, response=UserExport,
              description="Within the key's project and mode. A user id nobody used exports "
              "empty lists. See docs/export.md for what each record holds."),
    Operation("DELETE", USER, erase_user_data,
              "Erase one end user: devices, activity tokens, state, events; deliveries kept "
              "for counts without the user", "Users", auth=KEY, scope="users:write",
              secret_key_only=True, response=UserErasure, transactional=False,
              description="Done in batches beside in-flight deliveries (a send to their device "
              "under way is waited for). Idempotent: erasing again answers zero counts."),
]  # fmt: skip
