"""``/v1/widgets``: reload one kind of an app's widgets on devices, users or tags.

``POST /v1/widgets/{kind}/reload`` (secret key, ``pushes:write``) stores the widget's new data
(optional) as the public state entry ``widget:{kind}`` and accepts a ``widget`` push to the
devices ``to`` names — both in one transaction, so the push never goes out without its data
(what the two are, and why widgets work this way: ``controlplane/widgets.py``). The push is a
tracked push like any other (``GET /v1/pushes/{id}``, counted against the month's quota,
``Idempotency-Key`` honoured); iOS devices without a widget push token are left out and the
202 says how many in ``warnings``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controlplane import state, widgets
from controlplane.api.pushes import PushSent, Target, send_content
from controlplane.api.routing import Auth, Call, Operation
from controlplane.api.state import StateEntry
from controlplane.errors import InvalidRequest
from controlplane.payloads import WIDGET_KIND_PATTERN, WIDGET_KIND_RULE
from controlplane.plans import limits_for

_KIND = re.compile(WIDGET_KIND_PATTERN.removesuffix("$") + r"\Z")


class WidgetReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Target
    data: dict[str, Any] | None = Field(
        default=None,
        description=f"The widget's new data, a JSON object of up to "
        f"{state.MAX_VALUE_BYTES:,} bytes as compact JSON: stored as the public state entry "
        "`widget:{kind}` (counted against the plan's state bytes) in the same transaction as "
        "the push. Left out, the entry stays as it is.",
    )


class WidgetReloaded(PushSent):
    widget_kind: str
    state: StateEntry | None = Field(
        description="The state entry written (`widget:{kind}`), or null when no `data` was given."
    )


def _kind(call: Call) -> str:
    kind = call.path_name("kind")
    if _KIND.match(kind) is None:
        raise InvalidRequest(f"kind: {WIDGET_KIND_RULE}.", code="parameter_invalid", param="kind")
    return kind


async def reload_widgets(call: Call) -> WidgetReloaded:
    kind = _kind(call)
    body = call.body_as(WidgetReloadRequest)
    written = None
    if body.data is not None:
        project = call.tenant.project
        assert project is not None, "an API key's tenant has its project"
        space = state.Namespace(project.id, call.tenant.organization.id, call.key.mode)
        limits = limits_for(call.tenant.organization.plan, call.settings)
        written = await widgets.store_data(
            space, kind, body.data, limit=limits.state_bytes, now=datetime.now(UTC)
        )
    sent = await send_content(call, widgets.reload_content(kind), body.to)
    entry = None if written is None else StateEntry.of(written.entry)
    return WidgetReloaded(**sent.model_dump(), widget_kind=kind, state=entry)


KEY = Auth.API_KEY
operations = [
    Operation("POST", "/v1/widgets/{kind}/reload", reload_widgets,
              "Reload a kind of widget on devices, with its new data (202 once committed)",
              "Widgets", auth=KEY, scope="pushes:write", secret_key_only=True,
              body=WidgetReloadRequest, response=WidgetReloaded, status_code=202,
              idempotent=True,
              description="Stores `data` (when given) as the public state entry "
              "`widget:{kind}`, then sends a `widget` push: iOS 26+ devices get a WidgetKit "
              "push (`apns-push-type: widgets`, `aps.content-changed`) on their widget push "
              "token, Android devices an FCM data message `brik_widget_reload: <kind>`. iOS "
              "devices without a widget push token are skipped (`warnings`: "
              "`no_widget_push_token`). The push is counted against the month's quota like "
              "any other; the data against the plan's state bytes (429 "
              "`state_quota_exceeded`, nothing written); over 65,536 bytes is a 413 "
              "`value_too_large`."),
]  # fmt: skip
