"""What a push says, whatever carries it, and the accept-time checks that need its carriers.

One request body (:class:`PushContent`) describes the push once, for every platform:

================  ==========================================================================
kind              what the device does with it
================  ==========================================================================
``alert``         shows a notification (title, subtitle, body, sound, badge) and hands the
                  app ``data``
``background``    wakes the app silently with ``data`` (a widget update); never shown
``liveactivity``  starts, updates or ends a Live Activity (on Android: a data message the
                  app renders as an ongoing notification)
================  ==========================================================================

Options: ``priority`` (``high`` or ``normal``), ``ttl`` seconds, counted from when the push is
due — ``send_at`` if scheduled, else when it was accepted — and ``collapse_id`` (a newer push
with it replaces the older one on the device).

How each kind and option is spelled for Apple or Google is each provider's business (its module
in ``workers/providers/``); the API only asks the providers, through a :class:`ProviderCatalog`
(the worker's registry, handed to the app by ``controlplane/app.py``), which provider sends to
a platform and how many bytes a push takes on each wire, so :func:`check_sizes` refuses at
accept time what a provider would refuse (4 KB each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from controlplane.errors import InvalidRequest
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


_PRESENT: JsonDict = {"type": "object"}
_ABSENT: JsonDict = {"type": "null"}


class Alert(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=_one_of_them_is_said("title", "body")
    )
    title: str | None = Field(default=None, max_length=1000)
    subtitle: str | None = Field(default=None, max_length=1000)
    body: str | None = Field(default=None, max_length=4000)
    sound: str | None = Field(default=None, max_length=200)
    badge: Annotated[int, Field(ge=0, le=1_000_000), WHOLE_NUMBER] | None = None

    @model_validator(mode="after")
    def _says_something(self) -> Alert:
        if not (self.title or self.body):
            raise field_error("title", "an alert needs a title or a body")
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
    alert: Alert | None = None
    dismissal_date: Moment | None = None
    stale_date: Moment | None = None
    relevance_score: float | None = Field(default=None, ge=0, allow_inf_nan=False)

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
            ]
        },
    )
    kind: Literal["alert", "background", "liveactivity"]
    alert: Alert | None = None
    data: Data | None = None
    live_activity: LiveActivity | None = None
    priority: Literal["high", "normal"] | None = None
    ttl: Annotated[int, Field(ge=0, le=28 * 24 * 3600), WHOLE_NUMBER] | None = Field(
        default=None, description="Seconds."
    )
    collapse_id: str | None = Field(default=None, min_length=1, max_length=64)

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
        if self.data and "aps" in self.data:
            raise field_error("data.aps", "APNs reserves this key")
        return self


@dataclass(frozen=True, slots=True)
class WireSize:
    """How many bytes a push takes on one provider's wire, and how many that provider takes."""

    provider: str  # as a tenant would call it: "APNs", "FCM"
    size: int
    limit: int


class ProviderCatalog(Protocol):
    """What the API asks of the push providers (``workers/providers/registry.py`` answers)."""

    def provider_for(self, platform: str, *, test_mode: bool) -> str:
        """The name of the provider that sends to ``platform`` (test-mode keys: the sandbox)."""
        ...

    def wire_sizes(self, content: PushContent) -> list[WireSize]:
        """``content`` measured as each provider that can send it would receive it."""
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
