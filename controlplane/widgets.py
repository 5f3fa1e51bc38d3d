"""Widgets: reloading one kind of an app's home-screen widgets, with the data they show.

A reload is two things in one transaction (the caller's): the widget's new data, stored as the
state entry ``widget:{kind}`` — public, so the widget reads it with the app's publishable key,
and counted against the plan's state bytes like any entry — and a ``widget`` push to the
devices named (:class:`controlplane.payloads.WidgetReload`). How that push reaches a phone is
the providers' business (``workers/providers/``): on iOS 26+ a WidgetKit push
(``apns-push-type: widgets``, ``aps.content-changed``) to the device's widget push token, after
which WidgetKit reloads the app's widget timelines and the widget fetches the entry; on Android
an FCM data message (``brik_widget_reload: <kind>``) whose receiver updates the app's
AppWidget of that kind.

iOS before 26 has no widget pushes, so such an app registers no widget push token and its
devices are left out of a reload (with a warning); its widgets are refreshed the older way, a
``background`` push whose app calls ``WidgetCenter.reloadTimelines(ofKind:)`` (docs/api.md,
"Widgets").

The ``widget:`` prefix is reserved in :data:`controlplane.state.RESERVED_PREFIXES`: tenants read
the entry through ``GET /v1/state/widget:{kind}`` but cannot write it there, so what a widget
shows is always what the last reload said.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controlplane import state
from controlplane.payloads import PushContent, WidgetReload

STATE_PREFIX = state.WIDGET_PREFIX


def state_key(kind: str) -> str:
    """Where a widget kind's data lives in state."""
    return f"{STATE_PREFIX}{kind}"


def reload_content(kind: str) -> PushContent:
    """The push that tells the app's widgets of ``kind`` to reload."""
    return PushContent(kind="widget", widget=WidgetReload(kind=kind))


async def store_data(
    space: state.Namespace, kind: str, data: dict[str, Any], *, limit: int | None, now: datetime
) -> state.Written:
    """Write ``data`` as the widget's public entry (no expiry), within the plan's ``limit``.

    Call it inside the transaction that accepts the push. 413 ``value_too_large`` (``data``)
    over a state value's size, 429 ``state_quota_exceeded`` when it does not fit: the caller's
    transaction rolls back and neither the entry nor the push is written.
    """
    text = state.storable_value(data, param="data")
    return await state.write(
        space, state_key(kind), text, public=True, expires_at=None,
        conditions=state.Conditions(), limit=limit, now=now,
    )  # fmt: skip
