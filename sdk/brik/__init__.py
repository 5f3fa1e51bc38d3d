"""Brik Cloud for Python: push notifications, widget updates and Live Activities.

::

    import brik
    brik.init()                                   # reads BRIK_API_KEY (and BRIK_API_URL)
    brik.devices.register(token=..., platform="ios", user_id="u_42")
    push = brik.pushes.send(to={"user_ids": ["u_42"]}, alert={"title": "Order shipped"})
    for update in brik.pushes.stream(push.id):    # until every delivery is final
        print(update.status, update.deliveries)
    entry = brik.state.set("order:A-1", {"eta_minutes": 12})   # entry.etag for if_match
    order = brik.activities.start(to={"user_ids": ["u_42"]}, activity_type="OrderTracking",
                                  content_state={"eta": 30})  # a Live Activity, by id
    brik.activities.update(order.id, content_state={"eta": 12})
    brik.events.track("widget.click", widget="OrderWidget", action="open_order")  # batched
    brik.realtime.publish("order:A-1", {"eta": 12})    # to apps holding an SSE stream

``brik.init()`` makes a default :class:`Client` that ``brik.devices``, ``brik.pushes``,
``brik.activities``, ``brik.live_activities``, ``brik.widgets``, ``brik.state``,
``brik.events``, ``brik.realtime`` and ``brik.webhooks`` use (it is closed at interpreter exit,
sending buffered events; ``brik.webhooks.verify_signature`` needs no client); create
:class:`Client` or :class:`AsyncClient` instances for several projects or for asyncio. Errors
are in :mod:`brik.errors` (the tree is drawn there) and exported here.
"""

from __future__ import annotations

import atexit
from typing import Any, cast

from brik.client import AsyncClient, Client
from brik.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BrikError,
    ConfigurationError,
    ConflictError,
    IdempotencyError,
    InvalidRequestError,
    NotFoundError,
    PermissionError,
    PreconditionFailedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    SignatureVerificationError,
)
from brik.events import Events
from brik.realtime import Realtime
from brik.resources import (
    Activities,
    Devices,
    Exports,
    LiveActivities,
    Pushes,
    State,
    Users,
    Webhooks,
    Widgets,
)
from brik.signatures import verify_signature
from brik.types import (
    Activity,
    ActivityDetail,
    ActivitySent,
    ActivityToken,
    BatchMessage,
    Deleted,
    Delivery,
    Device,
    DeviceToken,
    EventBatch,
    Export,
    MessageRefusal,
    MessageResult,
    Page,
    Push,
    PushBatch,
    PushDetail,
    PushWarning,
    RealtimeMessage,
    RealtimeToken,
    RefusedEvent,
    StateDeleted,
    StateEntry,
    Target,
    UserErasure,
    UserExport,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WidgetReload,
)
from brik.version import VERSION

__version__ = VERSION
__all__ = [
    "APIConnectionError",
    "APIError",
    "Activity",
    "ActivityDetail",
    "ActivitySent",
    "ActivityToken",
    "AsyncClient",
    "AuthenticationError",
    "BatchMessage",
    "BrikError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "Deleted",
    "Delivery",
    "Device",
    "DeviceToken",
    "EventBatch",
    "Export",
    "IdempotencyError",
    "InvalidRequestError",
    "MessageRefusal",
    "MessageResult",
    "NotFoundError",
    "Page",
    "PermissionError",
    "PreconditionFailedError",
    "Push",
    "PushBatch",
    "PushDetail",
    "PushWarning",
    "QuotaExceededError",
    "RateLimitError",
    "RealtimeMessage",
    "RealtimeToken",
    "RefusedEvent",
    "ServerError",
    "SignatureVerificationError",
    "StateDeleted",
    "StateEntry",
    "Target",
    "UserErasure",
    "UserExport",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WidgetReload",
    "activities",
    "devices",
    "events",
    "exports",
    "init",
    "live_activities",
    "pushes",
    "realtime",
    "state",
    "users",
    "webhooks",
    "widgets",
]

_default: Client | None = None
_closes_at_exit = False


def init(
    api_key: str | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 30.0,
    max_retries: int = 2,
) -> Client:
    """Set up the default client (``brik.devices``, ``brik.pushes`` …) and return it.

    With no ``api_key`` it reads ``BRIK_API_KEY``; with no ``base_url``, ``BRIK_API_URL``
    (default ``http://localhost:8000``). Calling it again replaces the default client.
    """
    global _default, _closes_at_exit
    client = Client(api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
    previous, _default = _default, client
    if previous is not None:
        previous.close()
    if not _closes_at_exit:
        atexit.register(_close_default)
        _closes_at_exit = True
    return client


def _close_default() -> None:
    """At interpreter exit: send the default client's buffered events, close it."""
    global _default
    if _default is not None:
        _default.close()
        _default = None


def default_client() -> Client:
    if _default is None:
        raise ConfigurationError(
            "Call brik.init() first (it reads BRIK_API_KEY), or use brik.Client(api_key)."
        )
    return _default


class _DefaultResource:
    """``brik.pushes`` and friends: the resource of whatever client ``init()`` set up."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(getattr(default_client(), self._name), attribute)

    def __repr__(self) -> str:
        return f"<brik.{self._name} of the default client>"


devices = cast(Devices, _DefaultResource("devices"))
activities = cast(Activities, _DefaultResource("activities"))
pushes = cast(Pushes, _DefaultResource("pushes"))
live_activities = cast(LiveActivities, _DefaultResource("live_activities"))
widgets = cast(Widgets, _DefaultResource("widgets"))
state = cast(State, _DefaultResource("state"))
events = cast(Events, _DefaultResource("events"))
realtime = cast(Realtime, _DefaultResource("realtime"))
exports = cast(Exports, _DefaultResource("exports"))
users = cast(Users, _DefaultResource("users"))


class _DefaultWebhooks(_DefaultResource):
    """``brik.webhooks``: the default client's, except ``verify_signature``, which needs no
    client (a receiver of webhooks has no API key to init with)."""

    verify_signature = staticmethod(verify_signature)


webhooks = cast(Webhooks, _DefaultWebhooks("webhooks"))
