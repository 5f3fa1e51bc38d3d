"""The API's resources, each in a blocking and an ``Async`` flavour with the same methods.

Every method builds its :class:`~brik._http.Call` through one function shared by both flavours
(``_register``, ``_send`` …), so the two cannot drift apart; the classes only send it.
Mutating methods take ``idempotency_key``: leave it out and one is generated for the call and
reused on each of its retries. A send the server accepted but that leaves devices out (or
reaches nobody) comes back with ``Push.warnings`` (an activity's change, with
``ActivitySent.warnings``), each also logged on the ``brik`` logger.

Ids go into URL paths, where ``../credentials/apns`` would reach another resource (httpx
resolves dot segments) and ``?`` or ``#`` would cut the path short; so an id that cannot be one
of that resource's (``dev_…``, ``psh_…``, ``act_…``, letters and digits) raises
:class:`~brik.errors.InvalidRequestError` before anything is sent; so does a state key or a
widget kind with a character they never hold or a leading ``.``. An answer of another shape
than the call's (a proxy's page, a path that reached something else) is an
:class:`~brik.errors.APIError` saying so, never a ``KeyError``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

from brik._http import (
    AsyncTransport,
    Call,
    SyncTransport,
    event_data,
    logger,
    new_idempotency_key,
)
from brik.errors import APIError, InvalidRequestError, NotFoundError
from brik.signatures import DEFAULT_TOLERANCE_SECONDS, verify_signature
from brik.types import (
    Activity,
    ActivityDetail,
    ActivitySent,
    ActivityToken,
    BatchMessage,
    Deleted,
    Delivery,
    Device,
    Export,
    Page,
    Platform,
    Push,
    PushBatch,
    PushDetail,
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

__all__ = [
    "Activities",
    "AsyncActivities",
    "AsyncDevices",
    "AsyncExports",
    "AsyncLiveActivities",
    "AsyncPushes",
    "AsyncState",
    "AsyncUsers",
    "AsyncWebhooks",
    "AsyncWidgets",
    "Devices",
    "Exports",
    "LiveActivities",
    "Pushes",
    "State",
    "Users",
    "Webhooks",
    "Widgets",
]

ItemT = TypeVar("ItemT")
Priority = Literal["high", "normal"]


# The server's ids are a type prefix and base32 (controlplane/models/ids.py); the length is
# left open, so an id minted by a newer server is never refused here.
_ID_SHAPE = re.compile(r"[a-z]{3}_[a-z0-9]{1,64}")
_ID_KINDS = {
    "dev": ("device_id", "a device id"),
    "psh": ("push_id", "a push id"),
    "act": ("activity_id", "an activity id"),
    "whk": ("webhook_endpoint_id", "a webhook endpoint id"),
    "whd": ("webhook_delivery_id", "a webhook delivery id"),
    "exp": ("export_id", "an export id"),
}


def _path(prefix: str, object_id: str, *, collection: str, action: str = "") -> str:
    """``/v1/<collection>/<object_id><action>``, once ``object_id`` is shaped like an id of
    ``prefix``; otherwise :class:`InvalidRequestError` (param ``device_id``, ``push_id`` or
    ``activity_id``) and nothing is sent."""
    param, noun = _ID_KINDS[prefix]
    if (
        not isinstance(object_id, str)
        or _ID_SHAPE.fullmatch(object_id) is None
        or not object_id.startswith(f"{prefix}_")
    ):
        raise InvalidRequestError(
            f"{object_id!r} is not {noun} ({prefix}_ and letters or digits); nothing was sent.",
            status=400, type="invalid_request_error", code="invalid_id", param=param,
        )  # fmt: skip
    return f"/v1/{collection}/{object_id}{action}"


_Built = TypeVar("_Built")


def _read(build: Callable[[dict[str, Any]], _Built], body: Any, what: str | None = None) -> _Built:
    """``build(body)``, or an :class:`APIError` when the answer is not shaped like what the
    call returns (not an object, a missing field, a field of the wrong type)."""
    what = what or build.__qualname__.partition(".")[0]
    try:
        if not isinstance(body, dict):
            raise TypeError(f"{type(body).__name__}, not an object")
        return build(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise APIError(
            f"Brik answered with unexpected JSON for a {what} ({type(exc).__name__}: {exc}).",
            status=200, body=body,
        ) from None  # fmt: skip


def _page(body: dict[str, Any], item: Callable[[dict[str, Any]], Any]) -> Page[Any]:
    def build(body: dict[str, Any]) -> Page[Any]:
        entries = body.get("data", [])
        if not isinstance(entries, list):
            raise TypeError("data is not a list")
        return Page(data=[item(entry) for entry in entries], has_more=bool(body.get("has_more")))

    return _read(build, body, f"page of {item.__qualname__.partition('.')[0]}")


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the arguments left out, so the server applies its defaults."""
    return {key: value for key, value in values.items() if value is not None}


def _accepted(body: dict[str, Any]) -> Push:
    """An accepted push; each of its warnings is logged, so a send that reaches nobody is heard
    even by code that never looks at ``Push.warnings``."""
    push = _read(Push.from_json, body)
    for warning in push.warnings:
        logger.warning("brik: push %s: %s: %s", push.id, warning.code, warning.message)
    return push


def _iso(moment: datetime | None) -> str | None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError("give send_at / stale_date / dismissal_date with a timezone")
    return None if moment is None else moment.isoformat()


# --- calls, shared by both flavours ---------------------------------------------------------


def _register(
    token: str, platform: Platform, user_id: str | None, tags: list[str] | None,
    live_activity_token: str | None, push_to_start_token: str | None,
    widget_push_token: str | None, key: str | None,
) -> Call:  # fmt: skip
    body = _compact({"token": token, "platform": platform, "user_id": user_id, "tags": tags,
                     "live_activity_token": live_activity_token,
                     "push_to_start_token": push_to_start_token,
                     "widget_push_token": widget_push_token})  # fmt: skip
    return Call.mutating("POST", "/v1/devices", body, key)


def _list_devices(
    user_id: str | None, tag: str | None, platform: Platform | None, status: str | None,
    limit: int | None, starting_after: str | None,
) -> Call:  # fmt: skip
    return Call("GET", "/v1/devices", params={
        "user_id": user_id, "tag": tag, "platform": platform, "status": status,
        "limit": limit, "starting_after": starting_after,
    })  # fmt: skip


def _push_call(
    to: Target, kind: str, *, alert: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None, live_activity: Mapping[str, Any] | None = None,
    priority: Priority | None = None, ttl: int | None = None, collapse_id: str | None = None,
    send_at: datetime | None = None, idempotency_key: str | None = None,
    apns: Mapping[str, Any] | None = None, android: Mapping[str, Any] | None = None,
) -> Call:  # fmt: skip
    body = _compact({
        "to": dict(to), "kind": kind, "alert": dict(alert) if alert else None,
        "data": dict(data) if data is not None else None,
        "live_activity": _compact(live_activity) if live_activity else None,
        "priority": priority, "ttl": ttl, "collapse_id": collapse_id, "send_at": _iso(send_at),
        "apns": dict(apns) if apns else None, "android": dict(android) if android else None,
    })  # fmt: skip
    return Call.mutating("POST", "/v1/pushes", body, idempotency_key)


def _send(
    to: Target, alert: Mapping[str, Any] | None, data: Mapping[str, Any] | None,
    priority: Priority | None, ttl: int | None, collapse_id: str | None,
    send_at: datetime | None, idempotency_key: str | None,
    apns: Mapping[str, Any] | None = None, android: Mapping[str, Any] | None = None,
) -> Call:  # fmt: skip
    if not alert and not data:
        # Refused here, before anything is sent: it would be an empty background push to
        # every device `to` names.
        raise ValueError("pushes.send() needs alert or data (or both)")
    kind = "alert" if alert else "background"
    return _push_call(to, kind, alert=alert, data=data, priority=priority, ttl=ttl,
                      collapse_id=collapse_id, send_at=send_at,
                      idempotency_key=idempotency_key, apns=apns, android=android)  # fmt: skip


def _batch(messages: Sequence[BatchMessage]) -> Call:
    """``POST /v1/pushes/batch``; a message without an ``idempotency_key`` gets one, so a
    retried batch replays what was accepted instead of sending it twice (the batch itself
    takes no Idempotency-Key)."""
    if not messages:
        raise ValueError("pushes.send_batch() needs at least one message")
    body = []
    for message in messages:
        item: dict[str, Any] = {key: value for key, value in message.items() if value is not None}
        if "kind" not in item:
            if not item.get("alert") and not item.get("data"):
                raise ValueError("each message needs alert or data (or a kind)")
            item["kind"] = "alert" if item.get("alert") else "background"
        if isinstance(item.get("send_at"), datetime):
            item["send_at"] = _iso(item["send_at"])
        item.setdefault("idempotency_key", new_idempotency_key())
        body.append(item)
    return Call("POST", "/v1/pushes/batch", json={"messages": body})


def _batch_answer(body: Any) -> PushBatch:
    """The batch's results; each accepted push's warnings are logged, as ``send``'s are."""
    batch = _read(PushBatch.from_json, body)
    for result in batch.results:
        if result.push is not None:
            for warning in result.push.warnings:
                logger.warning("brik: push %s: %s: %s", result.push.id, warning.code,
                               warning.message)  # fmt: skip
    return batch


def _live_activity(
    event: str, to: Target, content_state: Mapping[str, Any], *,
    attributes_type: str | None = None, attributes: Mapping[str, Any] | None = None,
    alert: Mapping[str, Any] | None = None, stale_date: datetime | None = None,
    dismissal_date: datetime | None = None, relevance_score: float | None = None,
    priority: Priority | None = None, idempotency_key: str | None = None,
) -> Call:  # fmt: skip
    live_activity = {
        "event": event, "content_state": dict(content_state),
        "attributes_type": attributes_type,
        "attributes": dict(attributes) if attributes is not None else None,
        "alert": dict(alert) if alert else None, "stale_date": _iso(stale_date),
        "dismissal_date": _iso(dismissal_date), "relevance_score": relevance_score,
    }  # fmt: skip
    return _push_call(to, "liveactivity", live_activity=live_activity, priority=priority,
                      idempotency_key=idempotency_key)  # fmt: skip


def _widget(
    to: Target, data: Mapping[str, Any], ttl: int | None, collapse_id: str | None,
    idempotency_key: str | None,
) -> Call:  # fmt: skip
    return _push_call(to, "background", data=data, ttl=ttl, collapse_id=collapse_id,
                      idempotency_key=idempotency_key)  # fmt: skip


# A widget kind as the server takes it in its path (docs/api.md, "Widgets").
_WIDGET_KIND = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def _widget_reload(
    kind: str, to: Target, data: Mapping[str, Any] | None, idempotency_key: str | None
) -> Call:
    if not isinstance(kind, str) or _WIDGET_KIND.fullmatch(kind) is None:
        raise InvalidRequestError(
            f"{kind!r} is not a widget kind (1 to 128 of A-Z a-z 0-9 . _ -, not starting with "
            "'.' or '-'); nothing was sent.",
            status=400, type="invalid_request_error", code="parameter_invalid", param="kind",
        )  # fmt: skip
    body = _compact({"to": dict(to), "data": dict(data) if data is not None else None})
    return Call.mutating("POST", f"/v1/widgets/{kind}/reload", body, idempotency_key)


def _reloaded(body: dict[str, Any]) -> WidgetReload:
    """An accepted reload; its warnings are logged as a push's are."""
    reload = _read(WidgetReload.from_json, body)
    for warning in reload.warnings:
        logger.warning("brik: push %s: %s: %s", reload.id, warning.code, warning.message)
    return reload


def _deliveries(
    push_id: str, status: str | None, limit: int | None, starting_after: str | None
) -> Call:
    params = {"status": status, "limit": limit, "starting_after": starting_after}
    return Call("GET", _path("psh", push_id, collection="pushes", action="/deliveries"),
                params=params)  # fmt: skip


def _unregister(token: str, platform: Platform, key: str | None) -> Call:
    body = {"token": token, "platform": platform}
    return Call.mutating("POST", "/v1/devices/unregister", body, key)


def _stream_call(push_id: str) -> Call:
    return Call("GET", _path("psh", push_id, collection="pushes", action="/events"))


def _device_call(method: str, device_id: str, key: str | None = None) -> Call:
    path = _path("dev", device_id, collection="devices")
    return Call(method, path) if method == "GET" else Call.mutating(method, path, None, key)


def _push_get(push_id: str) -> Call:
    return Call("GET", _path("psh", push_id, collection="pushes"))


def _cancel(push_id: str, key: str | None) -> Call:
    return Call.mutating("POST", _path("psh", push_id, collection="pushes", action="/cancel"),
                         None, key)  # fmt: skip


# --- blocking --------------------------------------------------------------------------------


class Devices:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def register(
        self, *, token: str, platform: Platform, user_id: str | None = None,
        tags: list[str] | None = None, live_activity_token: str | None = None,
        push_to_start_token: str | None = None, idempotency_key: str | None = None,
        widget_push_token: str | None = None,
    ) -> Device:  # fmt: skip
        """Add a device, or update the one with this token (registering again is safe; it
        replaces the whole registration). ``widget_push_token``: iOS 26+, the app's WidgetKit
        push token, which ``widgets.reload`` pushes go to."""
        call = _register(token, platform, user_id, tags, live_activity_token,
                         push_to_start_token, widget_push_token, idempotency_key)  # fmt: skip
        return _read(Device.from_json, self._transport.request(call))

    def retrieve(self, device_id: str) -> Device:
        return _read(Device.from_json, self._transport.request(_device_call("GET", device_id)))

    def list(
        self, *, user_id: str | None = None, tag: str | None = None,
        platform: Platform | None = None, status: str | None = None, limit: int | None = None,
        starting_after: str | None = None,
    ) -> Page[Device]:  # fmt: skip
        call = _list_devices(user_id, tag, platform, status, limit, starting_after)
        return _page(self._transport.request(call), Device.from_json)

    def iterate(
        self, *, user_id: str | None = None, tag: str | None = None,
        platform: Platform | None = None, status: str | None = None, page_size: int = 100,
    ) -> Iterator[Device]:  # fmt: skip
        """Every matching device, fetching page after page as the loop goes."""
        after: str | None = None
        while True:
            page = self.list(user_id=user_id, tag=tag, platform=platform, status=status,
                             limit=page_size, starting_after=after)  # fmt: skip
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    def delete(self, device_id: str, *, idempotency_key: str | None = None) -> Deleted:
        """Delete a device by id: needs a secret key (an app uses :meth:`unregister`)."""
        call = _device_call("DELETE", device_id, idempotency_key)
        return _read(Deleted.from_json, self._transport.request(call))

    def unregister(
        self, *, token: str, platform: Platform, idempotency_key: str | None = None
    ) -> Deleted:
        """Remove the device registered with ``token``; a publishable key may (it proves the
        token). ``NotFoundError`` when no device of the project has it."""
        call = _unregister(token, platform, idempotency_key)
        return _read(Deleted.from_json, self._transport.request(call))


class Pushes:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def send(
        self, *, to: Target, alert: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None, priority: Priority | None = None,
        ttl: int | None = None, collapse_id: str | None = None, send_at: datetime | None = None,
        idempotency_key: str | None = None, apns: Mapping[str, Any] | None = None,
        android: Mapping[str, Any] | None = None,
    ) -> Push:  # fmt: skip
        """Send an alert (with ``alert``, which takes the notification options of docs/api.md)
        or a background data push (``data`` only); neither is a ``ValueError``. ``apns`` and
        ``android``: raw per-platform overrides (docs/api.md)."""
        call = _send(to, alert, data, priority, ttl, collapse_id, send_at, idempotency_key,
                     apns, android)  # fmt: skip
        return _accepted(self._transport.request(call))

    def send_batch(self, messages: Sequence[BatchMessage]) -> PushBatch:
        """Send up to 500 independent pushes in one request, each to ``to`` or one raw
        ``device_token``: one result per message, in order — a refused message does not stop
        the others (``MessageResult.error`` says why, as ``send`` would have raised it)."""
        return _batch_answer(self._transport.request(_batch(messages)))

    def retrieve(self, push_id: str) -> PushDetail:
        return _read(PushDetail.from_json, self._transport.request(_push_get(push_id)))

    def list(self, *, limit: int | None = None, starting_after: str | None = None) -> Page[Push]:
        call = Call("GET", "/v1/pushes", params={"limit": limit, "starting_after": starting_after})
        return _page(self._transport.request(call), Push.from_json)

    def iterate(self, *, page_size: int = 100) -> Iterator[Push]:
        """Every push, newest first, fetching page after page as the loop goes."""
        after: str | None = None
        while True:
            page = self.list(limit=page_size, starting_after=after)
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    def deliveries(
        self, push_id: str, *, status: str | None = None, limit: int | None = None,
        starting_after: str | None = None,
    ) -> Page[Delivery]:  # fmt: skip
        call = _deliveries(push_id, status, limit, starting_after)
        return _page(self._transport.request(call), Delivery.from_json)

    def cancel(self, push_id: str, *, idempotency_key: str | None = None) -> PushDetail:
        call = _cancel(push_id, idempotency_key)
        return _read(PushDetail.from_json, self._transport.request(call))

    def stream(self, push_id: str) -> Iterator[PushDetail]:
        """The push on every change (server-sent events), ending once it is final."""
        for event in self._transport.events(_stream_call(push_id)):
            if event.event == "end":
                return
            if event.event == "push":
                detail = _read(PushDetail.from_json, event_data(event))
                yield detail
                if detail.final:
                    return


class LiveActivities:
    """Start, update and end iOS Live Activities (``liveactivity`` pushes)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def start(
        self, *, to: Target, attributes_type: str, attributes: Mapping[str, Any],
        content_state: Mapping[str, Any], alert: Mapping[str, Any] | None = None,
        stale_date: datetime | None = None, relevance_score: float | None = None,
        idempotency_key: str | None = None,
    ) -> Push:  # fmt: skip
        call = _live_activity("start", to, content_state, attributes_type=attributes_type,
                              attributes=attributes, alert=alert, stale_date=stale_date,
                              relevance_score=relevance_score,
                              idempotency_key=idempotency_key)  # fmt: skip
        return _accepted(self._transport.request(call))

    def update(
        self, *, to: Target, content_state: Mapping[str, Any],
        alert: Mapping[str, Any] | None = None, stale_date: datetime | None = None,
        relevance_score: float | None = None, priority: Priority | None = None,
        idempotency_key: str | None = None,
    ) -> Push:  # fmt: skip
        call = _live_activity("update", to, content_state, alert=alert, stale_date=stale_date,
                              relevance_score=relevance_score, priority=priority,
                              idempotency_key=idempotency_key)  # fmt: skip
        return _accepted(self._transport.request(call))

    def end(
        self, *, to: Target, content_state: Mapping[str, Any],
        dismissal_date: datetime | None = None, alert: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Push:  # fmt: skip
        call = _live_activity("end", to, content_state, dismissal_date=dismissal_date,
                              alert=alert, idempotency_key=idempotency_key)  # fmt: skip
        return _accepted(self._transport.request(call))


class Widgets:
    """Refresh home-screen widgets (docs/api.md, "Widgets"): ``reload`` on iOS 26+ and Android,
    ``update`` — a background push carrying the data — for apps on older iOS."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def reload(
        self, kind: str, *, to: Target, data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> WidgetReload:  # fmt: skip
        """Store ``data`` (a JSON object) as the public state entry ``widget:{kind}`` and tell
        the app's widgets of ``kind`` to reload: a WidgetKit push on iOS 26+ (devices that
        registered a ``widget_push_token``), an FCM data message on Android. Without ``data``
        the entry stays as it is. Safe to retry (one ``Idempotency-Key`` per call)."""
        call = _widget_reload(kind, to, data, idempotency_key)
        return _reloaded(self._transport.request(call))

    def update(
        self, *, to: Target, data: Mapping[str, Any], ttl: int | None = None,
        collapse_id: str | None = None, idempotency_key: str | None = None,
    ) -> Push:  # fmt: skip
        """A background push carrying ``data``, for widgets on iOS before 26 (their app reloads
        them) and for apps that refresh widgets from their own data messages."""
        call = _widget(to, data, ttl, collapse_id, idempotency_key)
        return _accepted(self._transport.request(call))


# --- async -----------------------------------------------------------------------------------


class AsyncDevices:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def register(
        self, *, token: str, platform: Platform, user_id: str | None = None,
        tags: list[str] | None = None, live_activity_token: str | None = None,
        push_to_start_token: str | None = None, idempotency_key: str | None = None,
        widget_push_token: str | None = None,
    ) -> Device:  # fmt: skip
        """Add a device, or update the one with this token (registering again is safe; it
        replaces the whole registration). ``widget_push_token``: iOS 26+, the app's WidgetKit
        push token, which ``widgets.reload`` pushes go to."""
        call = _register(token, platform, user_id, tags, live_activity_token,
                         push_to_start_token, widget_push_token, idempotency_key)  # fmt: skip
        return _read(Device.from_json, await self._transport.request(call))

    async def retrieve(self, device_id: str) -> Device:
        call = _device_call("GET", device_id)
        return _read(Device.from_json, await self._transport.request(call))

    async def list(
        self, *, user_id: str | None = None, tag: str | None = None,
        platform: Platform | None = None, status: str | None = None, limit: int | None = None,
        starting_after: str | None = None,
    ) -> Page[Device]:  # fmt: skip
        call = _list_devices(user_id, tag, platform, status, limit, starting_after)
        return _page(await self._transport.request(call), Device.from_json)

    async def iterate(
        self, *, user_id: str | None = None, tag: str | None = None,
        platform: Platform | None = None, status: str | None = None, page_size: int = 100,
    ) -> AsyncIterator[Device]:  # fmt: skip
        """Every matching device, fetching page after page as the loop goes."""
        after: str | None = None
        while True:
            page = await self.list(user_id=user_id, tag=tag, platform=platform, status=status,
                                   limit=page_size, starting_after=after)  # fmt: skip
            for device in page.data:
                yield device
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    async def delete(self, device_id: str, *, idempotency_key: str | None = None) -> Deleted:
        """Delete a device by id: needs a secret key (an app uses :meth:`unregister`)."""
        call = _device_call("DELETE", device_id, idempotency_key)
        return _read(Deleted.from_json, await self._transport.request(call))

    async def unregister(
        self, *, token: str, platform: Platform, idempotency_key: str | None = None
    ) -> Deleted:
        """Remove the device registered with ``token``; a publishable key may (it proves the
        token). ``NotFoundError`` when no device of the project has it."""
        call = _unregister(token, platform, idempotency_key)
        return _read(Deleted.from_json, await self._transport.request(call))


class AsyncPushes:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def send(
        self, *, to: Target, alert: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None, priority: Priority | None = None,
        ttl: int | None = None, collapse_id: str | None = None, send_at: datetime | None = None,
        idempotency_key: str | None = None, apns: Mapping[str, Any] | None = None,
        android: Mapping[str, Any] | None = None,
    ) -> Push:  # fmt: skip
        """Send an alert (with ``alert``, which takes the notification options of docs/api.md)
        or a background data push (``data`` only); neither is a ``ValueError``. ``apns`` and
        ``android``: raw per-platform overrides (docs/api.md)."""
        call = _send(to, alert, data, priority, ttl, collapse_id, send_at, idempotency_key,
                     apns, android)  # fmt: skip
        return _accepted(await self._transport.request(call))

    async def send_batch(self, messages: Sequence[BatchMessage]) -> PushBatch:
        """Send up to 500 independent pushes in one request, each to ``to`` or one raw
        ``device_token``: one result per message, in order — a refused message does not stop
        the others (``MessageResult.error`` says why, as ``send`` would have raised it)."""
        return _batch_answer(await self._transport.request(_batch(messages)))

    async def retrieve(self, push_id: str) -> PushDetail:
        return _read(PushDetail.from_json, await self._transport.request(_push_get(push_id)))

    async def list(
        self, *, limit: int | None = None, starting_after: str | None = None
    ) -> Page[Push]:
        call = Call("GET", "/v1/pushes", params={"limit": limit, "starting_after": starting_after})
        return _page(await self._transport.request(call), Push.from_json)

    async def iterate(self, *, page_size: int = 100) -> AsyncIterator[Push]:
        """Every push, newest first, fetching page after page as the loop goes."""
        after: str | None = None
        while True:
            page = await self.list(limit=page_size, starting_after=after)
            for push in page.data:
                yield push
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    async def deliveries(
        self, push_id: str, *, status: str | None = None, limit: int | None = None,
        starting_after: str | None = None,
    ) -> Page[Delivery]:  # fmt: skip
        call = _deliveries(push_id, status, limit, starting_after)
        return _page(await self._transport.request(call), Delivery.from_json)

    async def cancel(self, push_id: str, *, idempotency_key: str | None = None) -> PushDetail:
        call = _cancel(push_id, idempotency_key)
        return _read(PushDetail.from_json, await self._transport.request(call))

    async def stream(self, push_id: str) -> AsyncIterator[PushDetail]:
        """The push on every change (server-sent events), ending once it is final."""
        async for event in self._transport.events(_stream_call(push_id)):
            if event.event == "end":
                return
            if event.event == "push":
                detail = _read(PushDetail.from_json, event_data(event))
                yield detail
                if detail.final:
                    return


class AsyncLiveActivities:
    """Start, update and end iOS Live Activities (``liveactivity`` pushes)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def start(
        self, *, to: Target, attributes_type: str, attributes: Mapping[str, Any],
        content_state: Mapping[str, Any], alert: Mapping[str, Any] | None = None,
        stale_date: datetime | None = None, relevance_score: float | None = None,
        idempotency_key: str | None = None,
    ) -> Push:  # fmt: skip
        call = _live_activity("start", to, content_state, attributes_type=attributes_type,
                              attributes=attributes, alert=alert, stale_date=stale_date,
                              relevance_score=relevance_score,
                              idempotency_key=idempotency_key)  # fmt: skip
        return _accepted(await self._transport.request(call))

    async def update(
        self, *, to: Target, content_state: Mapping[str, Any],
        alert: Mapping[str, Any] | None = None, stale_date: datetime | None = None,
        relevance_score: float | None = None, priority: Priority | None = None,
        idempotency_key: str | None = None,
    ) -> Push:  # fmt: skip
        call = _live_activity("update", to, content_state, alert=alert, stale_date=stale_date,
                              relevance_score=relevance_score, priority=priority,
                              idempotency_key=idempotency_key)  # fmt: skip
        return _accepted(await self._transport.request(call))

    async def end(
        self, *, to: Target, content_state: Mapping[str, Any],
        dismissal_date: datetime | None = None, alert: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Push:  # fmt: skip
        call = _live_activity("end", to, content_state, dismissal_date=dismissal_date,
                              alert=alert, idempotency_key=idempotency_key)  # fmt: skip
        return _accepted(await self._transport.request(call))


class AsyncWidgets:
    """The same as :class:`Widgets`, for asyncio."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def reload(
        self, kind: str, *, to: Target, data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> WidgetReload:  # fmt: skip
        """Store ``data`` (a JSON object) as the public state entry ``widget:{kind}`` and tell
        the app's widgets of ``kind`` to reload: a WidgetKit push on iOS 26+ (devices that
        registered a ``widget_push_token``), an FCM data message on Android. Without ``data``
        the entry stays as it is. Safe to retry (one ``Idempotency-Key`` per call)."""
        call = _widget_reload(kind, to, data, idempotency_key)
        return _reloaded(await self._transport.request(call))

    async def update(
        self, *, to: Target, data: Mapping[str, Any], ttl: int | None = None,
        collapse_id: str | None = None, idempotency_key: str | None = None,
    ) -> Push:  # fmt: skip
        """A background push carrying ``data``, for widgets on iOS before 26 (their app reloads
        them) and for apps that refresh widgets from their own data messages."""
        call = _widget(to, data, ttl, collapse_id, idempotency_key)
        return _accepted(await self._transport.request(call))


# --- state -------------------------------------------------------------------------------------

# The characters state keys are made of (docs/state.md); a leading '.' would make a path segment
# httpx resolves. The server checks the rest (length, first character).
_STATE_KEY = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9._:-]*")


def _state_path(key: str) -> str:
    if not isinstance(key, str) or _STATE_KEY.fullmatch(key) is None:
        raise InvalidRequestError(
            f"{key!r} is not a state key (A-Z a-z 0-9 . _ : -, not starting with '.'); "
            "nothing was sent.",
            status=400, type="invalid_request_error", code="parameter_invalid", param="key",
        )  # fmt: skip
    return f"/v1/state/{key}"


def _conditions(if_match: str | None, create_only: bool) -> dict[str, str]:
    if if_match is not None and create_only:
        raise ValueError("if_match needs the entry to exist and create_only needs it not to")
    if if_match is not None:
        return {"If-Match": if_match}
    return {"If-None-Match": "*"} if create_only else {}


def _state_set(
    key: str, value: Any, ttl: int | None, public: bool | None, if_match: str | None,
    create_only: bool, idempotency_key: str | None,
) -> Call:  # fmt: skip
    body = {"value": value, **_compact({"ttl_seconds": ttl, "public": public})}
    return Call("PUT", _state_path(key), json=body,
                idempotency_key=idempotency_key or new_idempotency_key(),
                conditions=_conditions(if_match, create_only))  # fmt: skip


def _state_delete(key: str, if_match: str | None, idempotency_key: str | None) -> Call:
    return Call("DELETE", _state_path(key),
                idempotency_key=idempotency_key or new_idempotency_key(),
                conditions=_conditions(if_match, False))  # fmt: skip


def _state_list(prefix: str | None, limit: int | None, starting_after: str | None) -> Call:
    return Call("GET", "/v1/state", params={"prefix": prefix, "limit": limit,
                                            "starting_after": starting_after})  # fmt: skip


def _absent(error: NotFoundError) -> bool:
    """A 404 that means "no such entry" (not, say, a wrong base URL's missing route)."""
    return error.code == "resource_missing"


class State:
    """JSON values by key, per project and mode (docs/state.md): ``set``, ``get``, ``delete``,
    ``list`` / ``iterate``. Writes carry the entry's ETag back as ``if_match`` to apply only to
    the version they were based on (:class:`~brik.errors.PreconditionFailedError` otherwise)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def set(
        self, key: str, value: Any, *, ttl: int | None = None, public: bool | None = None,
        if_match: str | None = None, create_only: bool = False,
        idempotency_key: str | None = None,
    ) -> StateEntry:  # fmt: skip
        """Create or replace ``key`` with ``value`` (any JSON), expiring after ``ttl`` seconds
        if given; ``public`` makes it readable with publishable keys. ``if_match``: only if the
        entry still has this ETag; ``create_only``: only if there is no entry."""
        call = _state_set(key, value, ttl, public, if_match, create_only, idempotency_key)
        return _read(StateEntry.from_json, self._transport.request(call))

    def get(self, key: str) -> StateEntry | None:
        """The entry, or None when there is none (or it expired; for a publishable key, or it
        is private)."""
        try:
            body = self._transport.request(Call("GET", _state_path(key)))
        except NotFoundError as error:
            if _absent(error):
                return None
            raise
        return _read(StateEntry.from_json, body)

    def delete(
        self, key: str, *, if_match: str | None = None, idempotency_key: str | None = None
    ) -> StateDeleted:
        """Delete ``key`` (``NotFoundError`` when there is none); ``if_match`` as for ``set``."""
        call = _state_delete(key, if_match, idempotency_key)
        return _read(StateDeleted.from_json, self._transport.request(call))

    def list(
        self, *, prefix: str | None = None, limit: int | None = None,
        starting_after: str | None = None,
    ) -> Page[StateEntry]:  # fmt: skip
        """One page of entries in key order; for the next, ``starting_after=page.data[-1].key``."""
        call = _state_list(prefix, limit, starting_after)
        return _page(self._transport.request(call), StateEntry.from_json)

    def iterate(self, *, prefix: str | None = None, page_size: int = 100) -> Iterator[StateEntry]:
        """Every entry (under ``prefix``), in key order, page after page as the loop goes."""
        after: str | None = None
        while True:
            page = self.list(prefix=prefix, limit=page_size, starting_after=after)
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.data[-1].key


class AsyncState:
    """The same as :class:`State`, for asyncio."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def set(
        self, key: str, value: Any, *, ttl: int | None = None, public: bool | None = None,
        if_match: str | None = None, create_only: bool = False,
        idempotency_key: str | None = None,
    ) -> StateEntry:  # fmt: skip
        """Create or replace ``key`` with ``value`` (any JSON), expiring after ``ttl`` seconds
        if given; ``public`` makes it readable with publishable keys. ``if_match``: only if the
        entry still has this ETag; ``create_only``: only if there is no entry."""
        call = _state_set(key, value, ttl, public, if_match, create_only, idempotency_key)
        return _read(StateEntry.from_json, await self._transport.request(call))

    async def get(self, key: str) -> StateEntry | None:
        """The entry, or None when there is none (or it expired; for a publishable key, or it
        is private)."""
        try:
            body = await self._transport.request(Call("GET", _state_path(key)))
        except NotFoundError as error:
            if _absent(error):
                return None
            raise
        return _read(StateEntry.from_json, body)

    async def delete(
        self, key: str, *, if_match: str | None = None, idempotency_key: str | None = None
    ) -> StateDeleted:
        """Delete ``key`` (``NotFoundError`` when there is none); ``if_match`` as for ``set``."""
        call = _state_delete(key, if_match, idempotency_key)
        return _read(StateDeleted.from_json, await self._transport.request(call))

    async def list(
        self, *, prefix: str | None = None, limit: int | None = None,
        starting_after: str | None = None,
    ) -> Page[StateEntry]:  # fmt: skip
        """One page of entries in key order; for the next, ``starting_after=page.data[-1].key``."""
        call = _state_list(prefix, limit, starting_after)
        return _page(await self._transport.request(call), StateEntry.from_json)

    async def iterate(
        self, *, prefix: str | None = None, page_size: int = 100
    ) -> AsyncIterator[StateEntry]:
        """Every entry (under ``prefix``), in key order, page after page as the loop goes."""
        after: str | None = None
        while True:
            page = await self.list(prefix=prefix, limit=page_size, starting_after=after)
            for entry in page.data:
                yield entry
            if not page.has_more or not page.data:
                return
            after = page.data[-1].key


# --- activities (Live Activities by id) --------------------------------------------------------

ActivityPriority = Literal[5, 10]


def _activity_path(activity_id: str, action: str = "") -> str:
    return _path("act", activity_id, collection="activities", action=action)


def _sent(body: dict[str, Any]) -> ActivitySent:
    """An activity's change as accepted; each warning is logged, as a push's are."""
    sent = _read(ActivitySent.from_json, body)
    for warning in sent.warnings:
        logger.warning("brik: activity %s (push %s): %s: %s", sent.id, sent.push_id,
                       warning.code, warning.message)  # fmt: skip
    return sent


def _activity_start(
    to: Target | None, activity_type: str, content_state: Mapping[str, Any],
    attributes: Mapping[str, Any] | None, broadcast: bool, broadcast_keeps_latest: bool,
    alert: Mapping[str, Any] | None, stale_date: datetime | None,
    relevance_score: float | None, priority: ActivityPriority | None, ttl: int | None,
    key: str | None,
) -> Call:  # fmt: skip
    body = _compact({
        "to": dict(to) if to is not None else None, "activity_type": activity_type,
        "broadcast": broadcast or None, "broadcast_keeps_latest": broadcast_keeps_latest or None,
        "attributes": dict(attributes) if attributes is not None else None,
        "content_state": dict(content_state), "alert": dict(alert) if alert else None,
        "stale_date": _iso(stale_date), "relevance_score": relevance_score,
        "priority": priority, "ttl": ttl,
    })  # fmt: skip
    return Call.mutating("POST", "/v1/activities", body, key)


def _activity_register(
    device_id: str, token: str | None, activity_type: str, content_state: Mapping[str, Any],
    attributes: Mapping[str, Any] | None, stale_date: datetime | None,
    relevance_score: float | None, key: str | None,
) -> Call:  # fmt: skip
    body = _compact({
        "device_id": device_id, "token": token, "activity_type": activity_type,
        "attributes": dict(attributes) if attributes is not None else None,
        "content_state": dict(content_state), "stale_date": _iso(stale_date),
        "relevance_score": relevance_score,
    })  # fmt: skip
    return Call.mutating("POST", "/v1/activities/register", body, key)


def _activity_token(activity_id: str, device_id: str, token: str | None, key: str | None) -> (
    Call
):  # fmt: skip
    body = _compact({"device_id": device_id, "token": token})
    return Call.mutating("POST", _activity_path(activity_id, "/tokens"), body, key)


def _activity_change(
    activity_id: str, event: Literal["update", "end"], content_state: Mapping[str, Any] | None,
    alert: Mapping[str, Any] | None, stale_date: datetime | None,
    dismissal_date: datetime | None, relevance_score: float | None,
    priority: ActivityPriority | None, ttl: int | None, key: str | None,
) -> Call:  # fmt: skip
    body = _compact({
        "content_state": dict(content_state) if content_state is not None else None,
        "alert": dict(alert) if alert else None, "stale_date": _iso(stale_date),
        "dismissal_date": _iso(dismissal_date), "relevance_score": relevance_score,
        "priority": priority, "ttl": ttl,
    })  # fmt: skip
    return Call.mutating("POST", _activity_path(activity_id, f"/{event}"), body, key)


def _activity_list(
    status: str | None, activity_type: str | None, user_id: str | None, limit: int | None,
    starting_after: str | None,
) -> Call:  # fmt: skip
    return Call("GET", "/v1/activities", params={
        "status": status, "activity_type": activity_type, "user_id": user_id, "limit": limit,
        "starting_after": starting_after,
    })  # fmt: skip


class Activities:
    """Live Activities addressed by id (docs/activities.md). Your server starts one for users
    or devices, then updates and ends it by id; the app (a publishable key is enough) registers
    one it started itself and reports each activity's push token. Each change is a push
    (``push_id``), and the newest state wins. An activity that has ended answers
    :class:`~brik.errors.ConflictError` (``activity_ended``)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def start(
        self, *, activity_type: str, content_state: Mapping[str, Any],
        to: Target | None = None, attributes: Mapping[str, Any] | None = None,
        broadcast: bool = False, broadcast_keeps_latest: bool = False,
        alert: Mapping[str, Any] | None = None, stale_date: datetime | None = None,
        relevance_score: float | None = None, priority: ActivityPriority | None = None,
        ttl: int | None = None, idempotency_key: str | None = None,
    ) -> ActivitySent:  # fmt: skip
        """Start an activity of ``activity_type`` (the app's ``ActivityAttributes`` type) on
        ``to``'s devices: a push-to-start on iOS 17.2+ (devices registered with a push-to-start
        token), a data message on Android. ``priority`` is 10 unless you ask for 5.

        ``broadcast`` (iOS 18): Brik opens an APNs broadcast channel (``channel_id``) and sends
        each update once to it; ``to`` is then optional, and ``broadcast_keeps_latest`` asks
        APNs to keep the newest update for devices that are offline."""
        call = _activity_start(to, activity_type, content_state, attributes, broadcast,
                               broadcast_keeps_latest, alert, stale_date, relevance_score,
                               priority, ttl, idempotency_key)  # fmt: skip
        return _sent(self._transport.request(call))

    def register(
        self, *, device_id: str, activity_type: str, content_state: Mapping[str, Any],
        token: str | None = None, attributes: Mapping[str, Any] | None = None,
        stale_date: datetime | None = None, relevance_score: float | None = None,
        idempotency_key: str | None = None,
    ) -> Activity:  # fmt: skip
        """Register an activity the app started itself on ``device_id``, with its push
        ``token`` (iOS, hex; none on Android). Publishable keys may."""
        call = _activity_register(device_id, token, activity_type, content_state, attributes,
                                  stale_date, relevance_score, idempotency_key)  # fmt: skip
        return _read(Activity.from_json, self._transport.request(call))

    def report_token(
        self, activity_id: str, *, device_id: str, token: str | None = None,
        idempotency_key: str | None = None,
    ) -> ActivityToken:  # fmt: skip
        """Report (or rotate) the activity's push ``token`` on ``device_id`` (iOS; none on
        Android); a ``starting`` activity becomes ``active``. Publishable keys may."""
        call = _activity_token(activity_id, device_id, token, idempotency_key)
        return _read(ActivityToken.from_json, self._transport.request(call))

    def update(
        self, activity_id: str, *, content_state: Mapping[str, Any],
        alert: Mapping[str, Any] | None = None, stale_date: datetime | None = None,
        relevance_score: float | None = None, priority: ActivityPriority | None = None,
        ttl: int | None = None, idempotency_key: str | None = None,
    ) -> ActivitySent:  # fmt: skip
        """Send the activity its new content state; the newest wins (an earlier update still
        queued is superseded). ``priority`` is 5 unless you ask for 10 (Apple throttles 10s)."""
        call = _activity_change(activity_id, "update", content_state, alert, stale_date, None,
                                relevance_score, priority, ttl, idempotency_key)  # fmt: skip
        return _sent(self._transport.request(call))

    def end(
        self, activity_id: str, *, content_state: Mapping[str, Any] | None = None,
        alert: Mapping[str, Any] | None = None, dismissal_date: datetime | None = None,
        priority: ActivityPriority | None = None, ttl: int | None = None,
        idempotency_key: str | None = None,
    ) -> ActivitySent:  # fmt: skip
        """End the activity, with an optional final content state; it leaves the Lock Screen
        at ``dismissal_date`` (at most 4 hours on; one already past: at once)."""
        call = _activity_change(activity_id, "end", content_state, alert, None, dismissal_date,
                                None, priority, ttl, idempotency_key)  # fmt: skip
        return _sent(self._transport.request(call))

    def retrieve(self, activity_id: str) -> ActivityDetail:
        """The activity, its token on each device and its 20 newest deliveries."""
        call = Call("GET", _activity_path(activity_id))
        return _read(ActivityDetail.from_json, self._transport.request(call))

    def list(
        self, *, status: str | None = None, activity_type: str | None = None,
        user_id: str | None = None, limit: int | None = None, starting_after: str | None = None,
    ) -> Page[Activity]:  # fmt: skip
        call = _activity_list(status, activity_type, user_id, limit, starting_after)
        return _page(self._transport.request(call), Activity.from_json)

    def iterate(
        self, *, status: str | None = None, activity_type: str | None = None,
        user_id: str | None = None, page_size: int = 100,
    ) -> Iterator[Activity]:  # fmt: skip
        """Every matching activity, fetching page after page as the loop goes."""
        after: str | None = None
        while True:
            page = self.list(status=status, activity_type=activity_type, user_id=user_id,
                             limit=page_size, starting_after=after)  # fmt: skip
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id


class AsyncActivities:
    """The same as :class:`Activities`, for asyncio."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def start(
        self, *, activity_type: str, content_state: Mapping[str, Any],
        to: Target | None = None, attributes: Mapping[str, Any] | None = None,
        broadcast: bool = False, broadcast_keeps_latest: bool = False,
        alert: Mapping[str, Any] | None = None, stale_date: datetime | None = None,
        relevance_score: float | None = None, priority: ActivityPriority | None = None,
        ttl: int | None = None, idempotency_key: str | None = None,
    ) -> ActivitySent:  # fmt: skip
        """As :meth:`Activities.start`."""
        call = _activity_start(to, activity_type, content_state, attributes, broadcast,
                               broadcast_keeps_latest, alert, stale_date, relevance_score,
                               priority, ttl, idempotency_key)  # fmt: skip
        return _sent(await self._transport.request(call))

    async def register(
        self, *, device_id: str, activity_type: str, content_state: Mapping[str, Any],
        token: str | None = None, attributes: Mapping[str, Any] | None = None,
        stale_date: datetime | None = None, relevance_score: float | None = None,
        idempotency_key: str | None = None,
    ) -> Activity:  # fmt: skip
        """As :meth:`Activities.register`."""
        call = _activity_register(device_id, token, activity_type, content_state, attributes,
                                  stale_date, relevance_score, idempotency_key)  # fmt: skip
        return _read(Activity.from_json, await self._transport.request(call))

    async def report_token(
        self, activity_id: str, *, device_id: str, token: str | None = None,
        idempotency_key: str | None = None,
    ) -> ActivityToken:  # fmt: skip
        """As :meth:`Activities.report_token`."""
        call = _activity_token(activity_id, device_id, token, idempotency_key)
        return _read(ActivityToken.from_json, await self._transport.request(call))

    async def update(
        self, activity_id: str, *, content_state: Mapping[str, Any],
        alert: Mapping[str, Any] | None = None, stale_date: datetime | None = None,
        relevance_score: float | None = None, priority: ActivityPriority | None = None,
        ttl: int | None = None, idempotency_key: str | None = None,
    ) -> ActivitySent:  # fmt: skip
        """As :meth:`Activities.update`."""
        call = _activity_change(activity_id, "update", content_state, alert, stale_date, None,
                                relevance_score, priority, ttl, idempotency_key)  # fmt: skip
        return _sent(await self._transport.request(call))

    async def end(
        self, activity_id: str, *, content_state: Mapping[str, Any] | None = None,
        alert: Mapping[str, Any] | None = None, dismissal_date: datetime | None = None,
        priority: ActivityPriority | None = None, ttl: int | None = None,
        idempotency_key: str | None = None,
    ) -> ActivitySent:  # fmt: skip
        """As :meth:`Activities.end`."""
        call = _activity_change(activity_id, "end", content_state, alert, None, dismissal_date,
                                None, priority, ttl, idempotency_key)  # fmt: skip
        return _sent(await self._transport.request(call))

    async def retrieve(self, activity_id: str) -> ActivityDetail:
        """As :meth:`Activities.retrieve`."""
        call = Call("GET", _activity_path(activity_id))
        return _read(ActivityDetail.from_json, await self._transport.request(call))

    async def list(
        self, *, status: str | None = None, activity_type: str | None = None,
        user_id: str | None = None, limit: int | None = None, starting_after: str | None = None,
    ) -> Page[Activity]:  # fmt: skip
        call = _activity_list(status, activity_type, user_id, limit, starting_after)
        return _page(await self._transport.request(call), Activity.from_json)

    async def iterate(
        self, *, status: str | None = None, activity_type: str | None = None,
        user_id: str | None = None, page_size: int = 100,
    ) -> AsyncIterator[Activity]:  # fmt: skip
        """Every matching activity, fetching page after page as the loop goes."""
        after: str | None = None
        while True:
            page = await self.list(status=status, activity_type=activity_type, user_id=user_id,
                                   limit=page_size, starting_after=after)  # fmt: skip
            for activity in page.data:
                yield activity
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id


# --- webhooks ----------------------------------------------------------------------------------


def _endpoint_path(endpoint_id: str, action: str = "") -> str:
    return _path("whk", endpoint_id, collection="webhook_endpoints", action=action)


def _delivery_path(endpoint_id: str, delivery_id: str, action: str = "") -> str:
    _path("whd", delivery_id, collection="-")  # the shape check, before anything is sent
    return _endpoint_path(endpoint_id, f"/deliveries/{delivery_id}{action}")


def _create_endpoint(
    url: str, events: list[str], type: str | None, enabled: bool | None, description: str | None
) -> Call:
    body = _compact({"url": url, "events": list(events), "type": type, "enabled": enabled,
                     "description": description})  # fmt: skip
    # Not replayed by an Idempotency-Key on the server: the answer holds the secret.
    return Call("POST", "/v1/webhook_endpoints", json=body)


_UNSET: Any = object()
_Names = list[str]  # inside the resources, `list` is their method


def _update_endpoint(
    endpoint_id: str, url: str | None, events: list[str] | None, enabled: bool | None,
    description: str | None,
) -> Call:  # fmt: skip
    body = _compact({"url": url, "events": list(events) if events is not None else None,
                     "enabled": enabled})  # fmt: skip
    if description is not _UNSET:
        body["description"] = description
    return Call("PATCH", _endpoint_path(endpoint_id), json=body)


def _list_webhook_deliveries(
    endpoint_id: str, status: str | None, limit: int | None, starting_after: str | None
) -> Call:
    params = {"status": status, "limit": limit, "starting_after": starting_after}
    return Call("GET", _endpoint_path(endpoint_id, "/deliveries"), params=params)


class _Signatures:
    """``verify_signature`` on both flavours: it needs no client, no key, no network."""

    @staticmethod
    def verify_signature(
        payload: bytes | str, header: str | None, secret: str, *,
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    ) -> WebhookEvent:  # fmt: skip
        """The event in ``payload`` (the raw body) if ``header`` (``Brik-Signature``) signs it
        with ``secret``; else :class:`~brik.errors.SignatureVerificationError`."""
        return verify_signature(payload, header, secret, tolerance=tolerance)


class Webhooks(_Signatures):
    """The project's webhook endpoints (in the key's mode) and their delivery logs; a secret
    key with ``webhooks:write`` / ``webhooks:read``. ``create`` and ``rotate_secret`` return
    the endpoint with its ``secret``, shown then only."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(
        self, *, url: str, events: list[str], type: str | None = None,
        enabled: bool | None = None, description: str | None = None,
    ) -> WebhookEndpoint:  # fmt: skip
        """A new endpoint: ``events`` are names (``push.completed``), families (``billing.*``)
        or ``["*"]``; ``type`` ``"slack"`` or ``"discord"`` for a channel's incoming webhook."""
        call = _create_endpoint(url, events, type, enabled, description)
        return _read(WebhookEndpoint.from_json, self._transport.request(call))

    def retrieve(self, endpoint_id: str) -> WebhookEndpoint:
        call = Call("GET", _endpoint_path(endpoint_id))
        return _read(WebhookEndpoint.from_json, self._transport.request(call))

    def list(
        self, *, limit: int | None = None, starting_after: str | None = None
    ) -> Page[WebhookEndpoint]:
        call = Call("GET", "/v1/webhook_endpoints",
                    params={"limit": limit, "starting_after": starting_after})  # fmt: skip
        return _page(self._transport.request(call), WebhookEndpoint.from_json)

    def update(
        self, endpoint_id: str, *, url: str | None = None, events: _Names | None = None,
        enabled: bool | None = None, description: str | None = _UNSET,
    ) -> WebhookEndpoint:  # fmt: skip
        """Change what is given; ``enabled=False`` stops it, ``True`` starts it again with a
        clean record; ``description=None`` clears it."""
        call = _update_endpoint(endpoint_id, url, events, enabled, description)
        return _read(WebhookEndpoint.from_json, self._transport.request(call))

    def delete(self, endpoint_id: str) -> Deleted:
        call = Call("DELETE", _endpoint_path(endpoint_id))
        return _read(Deleted.from_json, self._transport.request(call))

    def rotate_secret(self, endpoint_id: str, *, overlap_hours: int = 24) -> WebhookEndpoint:
        """A new signing secret (in the answer's ``secret``); the old one keeps signing beside
        it for ``overlap_hours`` (0: stops now), so receivers can switch at leisure."""
        call = Call("POST", _endpoint_path(endpoint_id, "/rotate_secret"),
                    json={"overlap_hours": overlap_hours})  # fmt: skip
        return _read(WebhookEndpoint.from_json, self._transport.request(call))

    def send_test(self, endpoint_id: str) -> WebhookDelivery:
        """Send the endpoint a ``webhook.test`` event now; follow it in :meth:`deliveries`."""
        call = Call("POST", _endpoint_path(endpoint_id, "/test"))
        return _read(WebhookDelivery.from_json, self._transport.request(call))

    def deliveries(
        self, endpoint_id: str, *, status: str | None = None, limit: int | None = None,
        starting_after: str | None = None,
    ) -> Page[WebhookDelivery]:  # fmt: skip
        """The endpoint's delivery log, newest first."""
        call = _list_webhook_deliveries(endpoint_id, status, limit, starting_after)
        return _page(self._transport.request(call), WebhookDelivery.from_json)

    def delivery(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        """One delivery, with the ``event`` it carries."""
        call = Call("GET", _delivery_path(endpoint_id, delivery_id))
        return _read(WebhookDelivery.from_json, self._transport.request(call))

    def resend(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivery's event to its endpoint again, at once (a new delivery)."""
        call = Call("POST", _delivery_path(endpoint_id, delivery_id, "/resend"))
        return _read(WebhookDelivery.from_json, self._transport.request(call))


class AsyncWebhooks(_Signatures):
    """:class:`Webhooks`, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
        self, *, url: str, events: list[str], type: str | None = None,
        enabled: bool | None = None, description: str | None = None,
    ) -> WebhookEndpoint:  # fmt: skip
        call = _create_endpoint(url, events, type, enabled, description)
        return _read(WebhookEndpoint.from_json, await self._transport.request(call))

    async def retrieve(self, endpoint_id: str) -> WebhookEndpoint:
        call = Call("GET", _endpoint_path(endpoint_id))
        return _read(WebhookEndpoint.from_json, await self._transport.request(call))

    async def list(
        self, *, limit: int | None = None, starting_after: str | None = None
    ) -> Page[WebhookEndpoint]:
        call = Call("GET", "/v1/webhook_endpoints",
                    params={"limit": limit, "starting_after": starting_after})  # fmt: skip
        return _page(await self._transport.request(call), WebhookEndpoint.from_json)

    async def update(
        self, endpoint_id: str, *, url: str | None = None, events: _Names | None = None,
        enabled: bool | None = None, description: str | None = _UNSET,
    ) -> WebhookEndpoint:  # fmt: skip
        call = _update_endpoint(endpoint_id, url, events, enabled, description)
        return _read(WebhookEndpoint.from_json, await self._transport.request(call))

    async def delete(self, endpoint_id: str) -> Deleted:
        call = Call("DELETE", _endpoint_path(endpoint_id))
        return _read(Deleted.from_json, await self._transport.request(call))

    async def rotate_secret(self, endpoint_id: str, *, overlap_hours: int = 24) -> WebhookEndpoint:
        call = Call("POST", _endpoint_path(endpoint_id, "/rotate_secret"),
                    json={"overlap_hours": overlap_hours})  # fmt: skip
        return _read(WebhookEndpoint.from_json, await self._transport.request(call))

    async def send_test(self, endpoint_id: str) -> WebhookDelivery:
        call = Call("POST", _endpoint_path(endpoint_id, "/test"))
        return _read(WebhookDelivery.from_json, await self._transport.request(call))

    async def deliveries(
        self, endpoint_id: str, *, status: str | None = None, limit: int | None = None,
        starting_after: str | None = None,
    ) -> Page[WebhookDelivery]:  # fmt: skip
        call = _list_webhook_deliveries(endpoint_id, status, limit, starting_after)
        return _page(await self._transport.request(call), WebhookDelivery.from_json)

    async def delivery(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        call = Call("GET", _delivery_path(endpoint_id, delivery_id))
        return _read(WebhookDelivery.from_json, await self._transport.request(call))

    async def resend(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        call = Call("POST", _delivery_path(endpoint_id, delivery_id, "/resend"))
        return _read(WebhookDelivery.from_json, await self._transport.request(call))


# --- exports and end users' data -----------------------------------------------------------


def _export_path(export_id: str) -> str:
    return _path("exp", export_id, collection="exports")


def _link_path(export: Export) -> str:
    """The signed link's path and query, to fetch through this client's base URL."""
    if export.download_url is None:
        raise InvalidRequestError(
            f"Export {export.id} is {export.status}: there is nothing to download.",
            status=400, type="invalid_request_error", code="export_not_ready", param="export_id",
        )  # fmt: skip
    link = urlsplit(export.download_url)
    return f"{link.path}?{link.query}"


def _checked(export: Export, digest: str, target: Path) -> Path:
    if export.sha256 is not None and digest != export.sha256:
        target.unlink(missing_ok=True)
        raise APIError(f"The archive of {export.id} arrived damaged (its SHA-256 differs).",
                       status=200, body=None)  # fmt: skip
    return target


def _user_path(user_id: str, action: str = "") -> str:
    """``/v1/users/<user_id><action>``, the id percent-encoded. A user id the path cannot carry
    (empty, over 200 characters, holding a ``/``, or ``.`` / ``..``) raises
    :class:`InvalidRequestError` and nothing is sent."""
    if (
        not isinstance(user_id, str)
        or not 1 <= len(user_id) <= 200
        or "/" in user_id
        or user_id in (".", "..")
    ):
        raise InvalidRequestError(
            f"{user_id!r} cannot be named in a URL path (1 to 200 characters, no '/', not '.' "
            "or '..'); nothing was sent.",
            status=400, type="invalid_request_error", code="invalid_id", param="user_id",
        )  # fmt: skip
    return f"/v1/users/{quote(user_id, safe='')}{action}"


class Exports:
    """Whole-project exports (a secret key with the ``export`` scope): ``create`` asks for one,
    a worker builds it, ``retrieve`` shows when it has ``succeeded``, ``download`` saves the
    archive (a tar.gz of NDJSON files, docs/export.md)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(self) -> Export:
        return _read(Export.from_json, self._transport.request(Call("POST", "/v1/exports")))

    def retrieve(self, export_id: str) -> Export:
        return _read(
            Export.from_json, self._transport.request(Call("GET", _export_path(export_id)))
        )

    def list(self, *, limit: int | None = None, starting_after: str | None = None) -> Page[Export]:
        call = Call("GET", "/v1/exports", params={"limit": limit, "starting_after": starting_after})
        return _page(self._transport.request(call), Export.from_json)

    def delete(self, export_id: str) -> Export:
        """Delete the archive now (the export stays, ``expired``)."""
        call = Call("DELETE", _export_path(export_id))
        return _read(Export.from_json, self._transport.request(call))

    def download(self, export_id: str, path: str | Path) -> Path:
        """Save the archive of a succeeded export at ``path`` (checked against its SHA-256)."""
        export = self.retrieve(export_id)
        target = Path(path)
        return _checked(export, self._transport.download(_link_path(export), target), target)


class AsyncExports:
    """:class:`Exports`, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(self) -> Export:
        return _read(Export.from_json, await self._transport.request(Call("POST", "/v1/exports")))

    async def retrieve(self, export_id: str) -> Export:
        call = Call("GET", _export_path(export_id))
        return _read(Export.from_json, await self._transport.request(call))

    async def list(
        self, *, limit: int | None = None, starting_after: str | None = None
    ) -> Page[Export]:
        call = Call("GET", "/v1/exports", params={"limit": limit, "starting_after": starting_after})
        return _page(await self._transport.request(call), Export.from_json)

    async def delete(self, export_id: str) -> Export:
        call = Call("DELETE", _export_path(export_id))
        return _read(Export.from_json, await self._transport.request(call))

    async def download(self, export_id: str, path: str | Path) -> Path:
        export = await self.retrieve(export_id)
        target = Path(path)
        digest = await self._transport.download(_link_path(export), target)
        return _checked(export, digest, target)


class Users:
    """Your end users' data, by the ``user_id`` your app gave their devices (a secret key:
    ``users:read`` to export, ``users:write`` to erase). Within the key's project and mode."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def export(self, user_id: str) -> UserExport:
        """Everything of theirs: devices with push tokens, activities, state under
        ``user:{user_id}``, events, deliveries."""
        call = Call("GET", _user_path(user_id, "/export"))
        return _read(UserExport.from_json, self._transport.request(call))

    def erase(self, user_id: str) -> UserErasure:
        """Erase it (deliveries are kept for counts without them); safe to repeat."""
        call = Call("DELETE", _user_path(user_id))
        return _read(UserErasure.from_json, self._transport.request(call))


class AsyncUsers:
    """:class:`Users`, awaited."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def export(self, user_id: str) -> UserExport:
        call = Call("GET", _user_path(user_id, "/export"))
        return _read(UserExport.from_json, await self._transport.request(call))

    async def erase(self, user_id: str) -> UserErasure:
        call = Call("DELETE", _user_path(user_id))
        return _read(UserErasure.from_json, await self._transport.request(call))
