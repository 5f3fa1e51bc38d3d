"""What an analytics event is: its names, its fields, and the rules one event must pass.

Apps report what their users saw and did — a widget shown or tapped, a Live Activity's
lifecycle, a push opened, an error — plus events of their own. Each event is checked on its own
(:class:`TrackedEvent`): a batch from an app is kept event by event, so one malformed event
from an old app version does not cost the rest of its batch.

Names are a closed set plus custom ones. Brik's own names (``widget.click`` …) carry typed fields
the summaries count by (the widget, the push id); any other event is named ``custom.<name>``,
so a name Brik adds later never collides with one an app already uses. A typed field on an
event whose name does not take it is refused rather than stored and ignored; free-form data
goes in ``properties`` (bounded).

The timestamp is the moment on the phone. Phones queue events while offline, so an event may
be up to :data:`MAX_EVENT_AGE` old; beyond that, or more than :data:`MAX_CLOCK_SKEW` ahead of
the server's clock, it is refused. The age bound is also what makes deduplication complete:
raw events are kept at least that long (``controlplane/settings.py``), so a late retry of an
event always finds its first copy.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from controlplane.payloads import WIDGET_KIND_PATTERN, WIDGET_KIND_RULE
from controlplane.settings import MAX_EVENT_AGE_DAYS
from controlplane.validation import Moment, field_error

MAX_EVENTS_PER_BATCH = 500
MAX_EVENT_AGE = timedelta(days=MAX_EVENT_AGE_DAYS)
MAX_CLOCK_SKEW = timedelta(minutes=10)
MAX_PROPERTIES = 50
MAX_PROPERTIES_BYTES = 4096

WIDGET_IMPRESSION = "widget.impression"
WIDGET_CLICK = "widget.click"
ACTIVITY_START = "activity.start"
ACTIVITY_UPDATE = "activity.update"
ACTIVITY_END = "activity.end"
PUSH_OPENED = "push.opened"
ERROR = "error"
CUSTOM_PREFIX = "custom."

# Each of Brik's names: the typed fields it requires, and those it may carry besides.
TYPED_FIELDS = ("widget", "action", "activity_id", "push_id", "error_code", "error_message")
_ACTIVITY = (("activity_id",), ())
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    WIDGET_IMPRESSION: (("widget",), ()),
    WIDGET_CLICK: (("widget", "action"), ()),
    ACTIVITY_START: _ACTIVITY,
    ACTIVITY_UPDATE: _ACTIVITY,
    ACTIVITY_END: _ACTIVITY,
    PUSH_OPENED: (("push_id",), ()),
    ERROR: (("error_message",), ("error_code", "widget", "activity_id")),
}
BUILT_IN_NAMES = tuple(RULES)

EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
EVENT_ID_RULE = "1 to 64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit (a UUID fits)"
CUSTOM_NAME_PATTERN = r"^custom\.[A-Za-z0-9_][A-Za-z0-9_.:-]{0,72}$"
NAME_PATTERN = (
    "^(" + "|".join(name.replace(".", r"\.") for name in BUILT_IN_NAMES) + ")$|"
    + CUSTOM_NAME_PATTERN
)  # fmt: skip
NAME_RULE = f"one of {', '.join(BUILT_IN_NAMES)}, or custom.<name> (1 to 73 of A-Z a-z 0-9 _ . : -)"
PUSH_ID_PATTERN = r"^psh_[a-z2-7]{24}$"
ACTIVITY_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,63}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"
LOCALE_PATTERN = r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8}){0,4}$"

Text = Annotated[str, Field(min_length=1)]  # an empty string says nothing


class TrackedEvent(BaseModel):
    """One event as an app reports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=EVENT_ID_PATTERN,
        description=f"Your id for this event, {EVENT_ID_RULE}. Sent again (a retried batch), "
        "the event is counted once per project and mode.",
    )
    name: str = Field(pattern=NAME_PATTERN, description=f"What happened: {NAME_RULE}.")
    timestamp: Moment = Field(
        description=f"When it happened, on the device: at most {MAX_EVENT_AGE_DAYS} days ago "
        f"and at most {int(MAX_CLOCK_SKEW.total_seconds() // 60)} minutes ahead of the "
        "server's clock."
    )
    device_id: Text | None = Field(
        default=None, max_length=128, description="The device: a Brik device id or your own."
    )
    user_id: Text | None = Field(default=None, max_length=200, description="Your user's id.")
    platform: Literal["ios", "android"] | None = None
    app_version: Text | None = Field(default=None, max_length=32)
    os_version: Text | None = Field(default=None, max_length=32, description="Such as 17.4.")
    device_model: Text | None = Field(
        default=None, max_length=64, description="Such as iPhone15,2 or Pixel 8."
    )
    locale: str | None = Field(
        default=None, max_length=35, pattern=LOCALE_PATTERN, description="Such as en_US or fr-CA."
    )
    country: str | None = Field(
        default=None, pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2, such as DE."
    )
    widget: str | None = Field(
        default=None,
        pattern=WIDGET_KIND_PATTERN,
        description=f"The widget kind ({WIDGET_KIND_RULE}): required by widget.impression and "
        "widget.click; optional on error.",
    )
    action: Text | None = Field(
        default=None, max_length=128, description="What was tapped: required by widget.click."
    )
    activity_id: str | None = Field(
        default=None,
        pattern=ACTIVITY_ID_PATTERN,
        description="The Live Activity (act_…, or your own id): required by activity.start, "
        ".update and .end; optional on error.",
    )
    push_id: str | None = Field(
        default=None,
        pattern=PUSH_ID_PATTERN,
        description="The push that was opened (psh_…): required by push.opened.",
    )
    error_code: Text | None = Field(default=None, max_length=128, description="On error only.")
    error_message: Text | None = Field(
        default=None, max_length=1000, description="Required by error."
    )
    properties: dict[str, Any] | None = Field(
        default=None,
        description=f"Anything else, as a JSON object of at most {MAX_PROPERTIES} keys and "
        f"{MAX_PROPERTIES_BYTES:,} bytes (compact JSON, UTF-8).",
    )

    @model_validator(mode="after")
    def _fits_its_name(self, info: ValidationInfo) -> TrackedEvent:
        required, optional = RULES.get(self.name, ((), ()))
        for name in required:
            if getattr(self, name) is None:
                raise field_error(name, f"{self.name} events need {name}")
        for name in TYPED_FIELDS:
            if getattr(self, name) is not None and name not in required + optional:
                raise field_error(
                    name,
                    f"{self.name} events do not take {name}"
                    + (" (put your own data in properties)" if _is_custom(self.name) else ""),
                )
        if self.properties is not None:
            _check_properties(self.properties)
        now = (info.context or {}).get("now")
        if isinstance(now, datetime):
            if self.timestamp < now - MAX_EVENT_AGE:
                raise field_error(
                    "timestamp", f"more than {MAX_EVENT_AGE_DAYS} days ago: too late to count"
                )
            if self.timestamp > now + MAX_CLOCK_SKEW:
                raise field_error(
                    "timestamp",
                    f"more than {int(MAX_CLOCK_SKEW.total_seconds() // 60)} minutes ahead of "
                    "the server's clock (is the device's clock right?)",
                )
        return self


def _is_custom(name: str) -> bool:
    return name.startswith(CUSTOM_PREFIX)


def _check_properties(properties: dict[str, Any]) -> None:
    if len(properties) > MAX_PROPERTIES:
        raise field_error(
            "properties", f"{len(properties)} keys; at most {MAX_PROPERTIES} are kept per event"
        )
    size = len(json.dumps(properties, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_PROPERTIES_BYTES:
        raise field_error(
            "properties", f"{size:,} bytes as JSON; at most {MAX_PROPERTIES_BYTES:,} per event"
        )
