"""What a push says, whatever carries it, and the accept-time checks that need its carriers.

One request body (:class:`PushContent`) describes the push once, for every platform:

================  ==========================================================================
kind              what the device does with it
================  ==========================================================================
``alert``         shows a notification (title, subtitle, body, sound, badge, and the
                  notification options of :class:`Alert`) and hands the app ``data``
``background``    wakes the app silently with ``data`` (also how widgets are refreshed on
                  iOS before 26); never shown
``liveactivity``  starts, updates or ends a Live Activity (on Android: a data message the
                  app renders as an ongoing notification)
``widget``        tells the app's widgets of ``widget.kind`` that their content changed
                  (iOS 26+: a WidgetKit push to the widget push token; Android: a data
                  message the app's AppWidget handles); it carries no ``data`` — the widget
                  reads what changed from state, ``widget:{kind}`` (``controlplane/widgets.py``)
================  ==========================================================================

Options: ``priority`` (``high`` or ``normal``), ``ttl`` seconds, counted from when the push is
due — ``send_at`` if scheduled, else when it was accepted — and ``collapse_id`` (a newer push
with it replaces the older one on the device). ``apns`` (:class:`ApnsOverride`) and ``android``
are raw parts laid over what the providers build, for what Brik does not spell itself.

How each kind and option is spelled for Apple or Google is each provider's business (its module
in ``workers/providers/``); the API only asks the providers, through a :class:`ProviderCatalog`
(the worker's registry, handed to the app by ``controlplane/app.py``), which provider sends to
a platform, which of a device's tokens a push goes to there (:meth:`ProviderCatalog.token_slot`)
and how many bytes a push takes on each wire, so :func:`check_sizes` refuses at accept time what
a provider would refuse (4 KB each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from controlplane.errors import InvalidRequest
from controlplane.models.devices import TokenSlot
from controlplane.validation import WHOLE_NUMBER, Moment, field_error

Data = Annotated[
    dict[str, Any],
    Field(
        max_length=100,
        description="Custom keys for the app; not `aps`, which APNs reserves.",
        json_schema_extra={"not": {"required": ["aps"]}},
    ),
]


def _one_of_them_is_said(*names: str) -> JsonDict:
    """JSON Schema for "at least one of ``names`` is there and not empty"."""
    return {
        "anyOf": [
            {"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
            for name in names
        ]
    }


def _kind_is(kind: str, then: JsonDict, otherwise: JsonDict | None = None) -> JsonDict:
    rule: JsonDict = {"if": {"properties": {"kind": {"const": kind}}}, "then": then}
    return rule if otherwise is None else {**rule, "else": otherwise}


IMAGE_KEY = "brik_image_url"
"""Where an APNs notification service extension finds ``alert.image_url`` (top-level key)."""

_PRESENT: JsonDict = {"type": "object"}
_ABSENT: JsonDict = {"type": "null"}


_Name = Annotated[str, Field(min_length=1, max_length=200)]
_LocArgs = Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=20)]
# Printable ASCII without spaces, spelled as a range: JSON Schema's \S and Python's disagree on
# some Unicode spaces (U+0085), so the document and the server would judge a URL differently.
_Url = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^https://[!-~]+$")]


_LOCALIZED = ("title", "subtitle", "body")


def _args_need_their_key(part: str) -> JsonDict:
    """JSON Schema for "``<part>_loc_args`` (not null) needs ``<part>_loc_key`` (not null)"."""
    args, key = f"{part}_loc_args", f"{part}_loc_key"
    return {
        "if": {"required": [args], "properties": {args: {"type": "array"}}},
        "then": {"required": [key], "properties": {key: {"type": "string"}}},
    }


class ActivityAlert(BaseModel):
    """A Live Activity's alert: what Apple documents there (its text and sound)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=_one_of_them_is_said("title", "body")
    )
    title: str | None = Field(default=None, max_length=1000)
    subtitle: str | None = Field(default=None, max_length=1000)
    body: str | None = Field(default=None, max_length=4000)
    sound: str | None = Field(default=None, max_length=200)
    badge: Annotated[int, Field(ge=0, le=1_000_000), WHOLE_NUMBER] | None = None

    @model_validator(mode="after")
    def _says_something(self) -> ActivityAlert:
        if not (self.title or self.body):
            raise field_error("title", "an alert needs a title or a body")
        return self


class Alert(ActivityAlert):
    """What a notification shows, and how (see docs/api.md, "Notification options").

    Beside the text, the options OneSignal and Expo users expect; each is spelled by the
    providers (``workers/providers/``) and only where the platform has it: ``thread_id`` …
    ``target_content_id`` are APNs only, ``channel_id`` … ``visibility`` Android only, the
    localization keys and ``image_url`` both. The app's localized strings may stand in for the
    text: an alert needs a title or a body, as text or as a localization key.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **_one_of_them_is_said("title", "body", "title_loc_key", "body_loc_key"),
            "allOf": [_args_need_their_key(part) for part in _LOCALIZED],
        },
    )
    # Localization (both platforms; subtitle: APNs only).
    title_loc_key: _Name | None = None
    title_loc_args: _LocArgs | None = None
    subtitle_loc_key: _Name | None = None
    subtitle_loc_args: _LocArgs | None = None
    body_loc_key: _Name | None = None
    body_loc_args: _LocArgs | None = None
    image_url: _Url | None = Field(
        default=None,
        description="An image shown with the notification (https). APNs: needs the app's "
        "notification service extension, which finds it as the payload's top-level "
        "`brik_image_url` (the push is sent with mutable-content); Android: shown by FCM.",
    )
    # APNs only.
    thread_id: _Name | None = None
    category: _Name | None = None
    mutable_content: bool | None = None
    interruption_level: Literal["passive", "active", "time-sensitive", "critical"] | None = None
    relevance_score: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    target_content_id: _Name | None = None
    # Android (FCM) only.
    channel_id: _Name | None = None
    icon: _Name | None = None
    color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")
    click_action: _Name | None = None
    tag: _Name | None = Field(
        default=None, description="Replaces the shown notification with this tag (default: "
        "the collapse id)."
    )  # fmt: skip
    notification_priority: Literal["min", "low", "default", "high", "max"] | None = None
    visibility: Literal["private", "public", "secret"] | None = None

    @model_validator(mode="after")
    def _says_something(self) -> Alert:  # more ways to say it than the text
        if not (self.title or self.body or self.title_loc_key or self.body_loc_key):
            raise field_error(
                "title", "an alert needs a title or a body (or title_loc_key or body_loc_key)"
            )
        for part in _LOCALIZED:
            key, args = f"{part}_loc_key", f"{part}_loc_args"
            if getattr(self, args) is not None and getattr(self, key) is None:
                raise field_error(args, f"{args} needs {key}")
        return self


class LiveActivity(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"event": {"const": "start"}}},
            "then": {
                "required": ["attributes_type", "attributes"],
                "properties": {"attributes_type": {"type": "string"}, "attributes": _PRESENT},
            },
            "else": {"properties": {"attributes_type": _ABSENT, "attributes": _ABSENT}},
        },
    )
    event: Literal["start", "update", "end"]
    content_state: dict[str, Any] = Field(max_length=200)
    attributes_type: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] | None = Field(default=None, max_length=200)
    alert: ActivityAlert | None = None
    dismissal_date: Moment | None = None
    stale_date: Moment | None = None
    relevance_score: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    # Set by Brik when it accepts the push, never by the tenant (the API refuses them): the
    # aps.timestamp every attempt carries, the activity it addresses by id, and the broadcast
    # channel a push-to-start subscribes the new activity to (controlplane/activities.py).
    timestamp: SkipJsonSchema[int | None] = None
    activity_id: SkipJsonSchema[str | None] = None
    channel_id: SkipJsonSchema[str | None] = None

    @model_validator(mode="after")
    def _start_names_its_attributes(self) -> LiveActivity:
        if self.event == "start" and (self.attributes_type is None or self.attributes is None):
            missing = "attributes_type" if self.attributes_type is None else "attributes"
            raise field_error(missing, "a start event needs attributes_type and attributes")
        if self.event != "start" and (
            self.attributes_type is not None or self.attributes is not None
        ):
            extra = "attributes_type" if self.attributes_type is not None else "attributes"
            raise field_error(extra, "attributes_type and attributes are only sent on start")
        return self


# WidgetKit's kind strings are the app's own (`StaticConfiguration(kind: "OrderWidget", …)`);
# Apple sets no rule beyond "a string", so Brik takes what a path segment and a state key can
# hold unchanged: reverse-DNS names ("com.example.app.OrderWidget") and plain identifiers.
WIDGET_KIND_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
WIDGET_KIND_RULE = (
    "1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.' or '-'"
)
WidgetKind = Annotated[
    str,
    Field(
        pattern=WIDGET_KIND_PATTERN,
        description=f"The widget's kind, as the app's widget configuration names it: "
        f"{WIDGET_KIND_RULE}.",
    ),
]


class WidgetReload(BaseModel):
    """Which widgets a ``widget`` push reloads."""

    model_config = ConfigDict(extra="forbid")
    kind: WidgetKind


# APNs headers Brik sets itself: the delivery's own id (the same on every retry, which is how
# Apple and our logs tell one push from another), the bundle id of the project's credential,
# the push type its kind needs, the provider token. Expiry is the push's `ttl`.
_BRIK_APNS_HEADERS = {
    "apns-id": "Brik sets apns-id: the delivery's own id, the same on every retry",
    "apns-topic": "Brik sets apns-topic from the project's APNs credential",
    "apns-push-type": "Brik sets apns-push-type from the push's kind",
    "authorization": "Brik signs every request with the project's APNs key",
    "apns-expiration": "use the push's ttl",
}


# aps keys Brik sets itself: a Live Activity's ordering (a late retry never rolls the Lock
# Screen back) and its lifecycle.
_BRIK_APS_KEYS = {
    "timestamp": "Brik sets aps.timestamp (a Live Activity's newest state wins)",
    "event": "use live_activity.event",
}


class ApnsHeaders(BaseModel):
    """The APNs request headers a push may set itself (the rest are Brik's)."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)  # stored as sent
    priority: Literal[1, 5, 10] | None = Field(default=None, alias="apns-priority")
    collapse_id: str | None = Field(
        default=None, alias="apns-collapse-id", min_length=1, max_length=64
    )

    @model_validator(mode="before")
    @classmethod
    def _not_brik_s(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in data:
                reason = _BRIK_APNS_HEADERS.get(str(name).lower())
                if reason is not None:
                    raise field_error(str(name), reason)
        return data


class ApnsOverride(BaseModel):
    """Raw APNs parts laid over what Brik spells (docs/api.md, "Raw per-platform overrides")."""

    model_config = ConfigDict(extra="forbid")
    headers: ApnsHeaders | None = None
    payload: dict[str, Any] | None = Field(
        default=None,
        max_length=100,
        description="Deep-merged into the APNs payload: `aps` key by key into Brik's `aps`, "
        "other keys beside it (over `data`); the override wins.",
        json_schema_extra={
            "properties": {
                "aps": {
                    "type": "object",
                    "not": {"anyOf": [{"required": [key]} for key in _BRIK_APS_KEYS]},
                }
            }
        },
    )

    @model_validator(mode="after")
    def _aps_is_an_object(self) -> ApnsOverride:
        aps = {} if self.payload is None else self.payload.get("aps", {})
        if not isinstance(aps, dict):
            raise field_error("payload.aps", "aps is an object")
        for key in _BRIK_APS_KEYS:
            if key in aps:
                raise field_error(f"payload.aps.{key}", _BRIK_APS_KEYS[key])
        return self


class PushContent(BaseModel):
    """The provider-independent content of a push (the body of ``POST /v1/pushes`` minus ``to``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                _kind_is("alert", {"required": ["alert"], "properties": {"alert": _PRESENT}}),
                _kind_is("background", {"properties": {"alert": _ABSENT}}),
                _kind_is(
                    "liveactivity",
                    {"required": ["live_activity"], "properties": {"live_activity": _PRESENT}},
                    {"properties": {"live_activity": _ABSENT}},
                ),
                _kind_is(
                    "widget",
                    {
                        "required": ["widget"],
                        "properties": {"widget": _PRESENT, "alert": _ABSENT, "data": _ABSENT},
                    },
                    {"properties": {"widget": _ABSENT}},
                ),
            ]
        },
    )
    kind: Literal["alert", "background", "liveactivity", "widget"]
    alert: Alert | None = None
    data: Data | None = None
    live_activity: LiveActivity | None = None
    widget: WidgetReload | None = Field(
        default=None,
        description="Kind `widget`: the widgets to reload (they read their data from state, "
        "`widget:{kind}`).",
    )
    priority: Literal["high", "normal"] | None = None
    ttl: Annotated[int, Field(ge=0, le=28 * 24 * 3600), WHOLE_NUMBER] | None = Field(
        default=None, description="Seconds."
    )
    collapse_id: str | None = Field(default=None, min_length=1, max_length=64)
    apns: ApnsOverride | None = Field(
        default=None, description="Raw APNs headers and payload keys, laid over Brik's."
    )
    android: dict[str, Any] | None = Field(
        default=None,
        max_length=50,
        description="Deep-merged into the FCM message's `android` config (AndroidConfig); "
        "the override wins.",
    )

    @model_validator(mode="after")
    def _fits_its_kind(self) -> PushContent:
        if self.kind == "alert" and self.alert is None:
            raise field_error("alert", "kind 'alert' needs alert")
        if self.kind == "liveactivity" and self.live_activity is None:
            raise field_error("live_activity", "kind 'liveactivity' needs live_activity")
        if self.kind != "liveactivity" and self.live_activity is not None:
            raise field_error("live_activity", "live_activity is only for kind 'liveactivity'")
        if self.kind == "background" and self.alert is not None:
            raise field_error("alert", "a background push has no alert; use kind 'alert'")
        if self.kind == "widget" and self.widget is None:
            raise field_error("widget", "kind 'widget' needs widget")
        if self.kind != "widget" and self.widget is not None:
            raise field_error("widget", "widget is only for kind 'widget'")
        if self.kind == "widget" and self.alert is not None:
            raise field_error("alert", "a widget push has no alert; use kind 'alert'")
        if self.kind == "widget" and self.data is not None:
            raise field_error(
                "data", "a widget push carries no data: the widget reads it from state "
                "(POST /v1/widgets/{kind}/reload stores it as widget:{kind})",
            )  # fmt: skip
        if self.data and "aps" in self.data:
            raise field_error("data.aps", "APNs reserves this key")
        if self.data and self.alert and self.alert.image_url and IMAGE_KEY in self.data:
            raise field_error(f"data.{IMAGE_KEY}", "alert.image_url is sent under this key")
        return self


@dataclass(frozen=True, slots=True)
class WireSize:
    """How many bytes a push takes on one provider's wire, and how many that provider takes."""

    provider: str  # as a tenant would call it: "APNs", "FCM"
    size: int
    limit: int


@dataclass(frozen=True, slots=True)
class WirePreview:
    """A push as one provider would receive it (its device token left out), and its size."""

    provider: str
    body: dict[str, Any]
    size: int
    limit: int


class ProviderCatalog(Protocol):
    """What the API asks of the push providers (``workers/providers/registry.py`` answers)."""

    def provider_for(self, platform: str, *, test_mode: bool) -> str:
        """The name of the provider that sends to ``platform`` (test-mode keys: the sandbox)."""
        ...

    def token_slot(self, content: PushContent, platform: str) -> TokenSlot:
        """Which of a ``platform`` device's tokens ``content`` goes to (the sandbox sends to
        the same one as the live provider)."""
        ...

    def wire_sizes(self, content: PushContent) -> list[WireSize]:
        """``content`` measured as each provider that can send it would receive it."""
        ...

    def previews(self, content: PushContent) -> list[WirePreview]:
        """``content`` as each provider that can send it would receive it, and its size."""
        ...


def check_sizes(content: PushContent, providers: ProviderCatalog) -> None:
    """400 ``payload_too_large`` when any provider's form of the push is over its limit."""
    for wire in providers.wire_sizes(content):
        if wire.size > wire.limit:
            raise InvalidRequest(
                f"The push is {wire.size} bytes as {wire.provider} would receive it; the limit "
                f"is {wire.limit}. Send less data (or a reference the app fetches).",
                code="payload_too_large",
            )
