"""Pydantic building blocks shared by the API's request models and the push content they carry.

- :func:`field_error` is how a model validator refuses a value and still names its field. A
  bare ``ValueError`` there is reported against the whole model — ``"param": null`` and a
  message reading ``"Value error, …"`` — while every field-level refusal names its parameter;
  ``controlplane/api/bodies.py`` turns the name carried here into the error's ``param``.
- :data:`WHOLE_NUMBER` makes an ``int`` field a JSON Schema ``integer``: ``14`` or ``14.0``,
  never ``true`` or ``"14"`` (request bodies are validated strictly, as
  ``controlplane/api/bodies.py`` says). Put it after the field's bounds —
  ``Annotated[int, Field(ge=0), WHOLE_NUMBER]`` — or the bounds leave the schema.
- :data:`Moment` is a date-time as the API takes it: RFC 3339 with a UTC offset, years 1970 to
  2999 as written. Every such moment converts to UTC and back and takes a TTL added to it;
  ``0001-01-01T00:00:00+14:00`` does not (its UTC form falls before year 1, and Python raises
  ``OverflowError``). The rule is also the ``pattern`` in the OpenAPI document, so a client
  generated from the document sends what the server accepts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, TypeAdapter
from pydantic_core import PydanticCustomError

__all__ = ["MOMENT_PATTERN", "WHOLE_NUMBER", "FutureMoment", "Moment", "field_error"]

PARAMETER_INVALID = "parameter_invalid"


def field_error(param: str, message: str) -> PydanticCustomError:
    """A refusal (raise it in a model validator) naming ``param``, relative to the model."""
    return PydanticCustomError(PARAMETER_INVALID, message, {"param": param})


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


WHOLE_NUMBER = BeforeValidator(_integral)


MOMENT_PATTERN = (
    r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_MOMENT = re.compile(MOMENT_PATTERN.removesuffix("$") + r"\Z")
_MOMENT_RULE = (
    "a date-time in RFC 3339 form with a UTC offset and a year from 1970 to 2999, "
    "such as 2030-01-31T09:00:00Z"
)


_PARSE_MOMENT = TypeAdapter(AwareDatetime)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime) and 1970 <= value.year <= 2999:
        return value  # built in Python (a model validated again from its own dump)
    if not isinstance(value, str) or not _MOMENT.match(value):
        raise PydanticCustomError("datetime_format", f"expected {_MOMENT_RULE}")
    # Parsed here, so that strict validation after this sees a datetime, not text.
    return _PARSE_MOMENT.validate_python(value)


Moment = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    Field(json_schema_extra={"pattern": MOMENT_PATTERN}),
]


def _in_future(value: datetime) -> datetime:
    if value <= datetime.now(UTC):
        raise PydanticCustomError("datetime_future", "must be in the future")
    return value


FutureMoment = Annotated[
    Moment,
    AfterValidator(_in_future),
    Field(description="A moment in the future (refused once it has passed)."),
]
