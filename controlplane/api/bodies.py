"""Reading request bodies: JSON only, validated by pydantic, every failure a clear 400.

:func:`parse_json` is the one place untrusted JSON becomes Python values (request bodies here,
Stripe's webhook in ``controlplane/api/stripe_webhook.py``; a dashboard form's JSON field goes
through its :func:`load_json`, so a page takes no JSON the API would refuse). Beyond
``json.loads`` it refuses, as ``invalid_json``:

- nesting deeper than :data:`MAX_DEPTH` arrays and objects, measured on the raw bytes before
  parsing: ``json`` and pydantic recurse once per level, and 5,000 levels overflow the stack;
- numbers JSON cannot carry: ``NaN``, ``Infinity``, ``-Infinity`` (Python's extensions to
  JSON) and numbers beyond an IEEE 754 double (``1e999``, which Python reads as infinity).
  Accepted, they would be stored and sent as ``null``, or refused by PostgreSQL as a 500.

:func:`validation_error` renders pydantic's first complaint as a 400 naming its parameter;
model validators name theirs with :func:`controlplane.validation.field_error`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from controlplane.errors import APIError, InvalidRequest

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_DEPTH = 64

# A string from its opening quote to its closing one — or to the end, for one left open, so
# every quote is consumed once and the scan stays linear whatever the bytes.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEP = [0] * 256
for _byte in b"[{":
    _STEP[_byte] = 1
for _byte in b"]}":
    _STEP[_byte] = -1
_MAX_DIGITS = len(str(int(sys.float_info.max)))


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in the JSON text ``raw``, counted without parsing it."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


class _NotAJSONNumber(ValueError):
    pass


def _refuse_constant(name: str) -> NoReturn:
    raise _NotAJSONNumber(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotAJSONNumber(f"{text[:32]} is out of range for a JSON number (a double)")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_DIGITS or abs(value := int(text)) > sys.float_info.max:
        raise _NotAJSONNumber(
            f"an integer of {digits} digits is out of range for a JSON number (a double)"
        )
    return value


class NotJSON(ValueError):
    """Text that is not JSON as this module accepts it; the message says why, in a few words."""


def load_json(raw: bytes) -> Any:
    """``raw`` as JSON (UTF-8) under the rules of the module docstring, or :class:`NotJSON`.

    For JSON that is not a request body (a dashboard form's JSON field, which names itself).
    """
    if (depth := nesting_depth(raw)) > MAX_DEPTH:
        raise NotJSON(
            f"arrays and objects nest {depth} levels deep, at most {MAX_DEPTH} levels are accepted"
        )
    try:
        # RFC 8259: JSON between systems is UTF-8; json.loads(bytes) would guess UTF-16/32.
        return json.loads(
            raw.decode("utf-8"),
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except UnicodeDecodeError:
        raise NotJSON("it is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise NotJSON(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _NotAJSONNumber as exc:
        raise NotJSON(str(exc)) from None


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON (UTF-8), or 400 ``invalid_json`` saying what is wrong with it."""
    try:
        return load_json(raw)
    except NotJSON as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from None


async def read_json(request: Request, items_alone: str | None = None) -> Any:
    """The body as JSON, or 400 ``invalid_json`` / 415 ``unsupported_media_type``.

    ``items_alone``: the top-level list whose items a batch checks one by one — text no column
    can store refuses that item alone (its handler calls :func:`reject_unstorable_text` on
    it), not the whole body.
    """
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidRequest(
            "Send the request body as JSON with Content-Type: application/json.",
            code="unsupported_media_type",
            status_code=415,
        )
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequest(
            "The request body is empty; a JSON object is required.", code="invalid_json"
        )
    data = parse_json(raw)
    if may_hold_unstorable_text(raw):  # the walk is most of the cost of a large body
        if items_alone and isinstance(data, dict) and isinstance(data.get(items_alone), list):
            reject_unstorable_text({k: v for k, v in data.items() if k != items_alone})
            reject_unstorable_text(list(data[items_alone]), items_alone, items_only=True)
        else:
            reject_unstorable_text(data)
    return data


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# JSON text can spell a NUL or a surrogate only as an escape (\u0000, \ud800): a raw one is not
# valid JSON, or not UTF-8. A body without such an escape holds neither, and is not walked.
_MAY_BE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def may_hold_unstorable_text(raw: bytes) -> bool:
    """Whether the JSON text ``raw`` may spell text no column can store (else it cannot)."""
    return _MAY_BE_UNSTORABLE.search(raw) is not None


def reject_unstorable_text(value: Any, path: str = "", *, items_only: bool = False) -> None:
    """400 for text no column can store or UTF-8 encode, anywhere (keys included): a NUL, or a
    lone UTF-16 surrogate (JSON can spell ``"\\ud800"``; it is not a character).

    ``items_only``: ``value`` is a batch's list, whose objects are checked one by one by its
    handler; only its other items (text, numbers: refused by the batch's own rules) are here.
    """
    if items_only:
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                reject_unstorable_text(item, f"{path}.{index}")
        return
    if isinstance(value, str):
        if found := _UNSTORABLE.search(value):
            what = "NUL characters are" if found.group() == "\x00" else "lone surrogates are"
            raise InvalidRequest(
                f"{path or 'The body'}: {what} not allowed in text.",
                code="parameter_invalid",
                param=path or None,
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_unstorable_text(key, path)
            reject_unstorable_text(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_unstorable_text(item, f"{path}.{index}" if path else str(index))


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    """The body validated into ``model``; the first problem is reported with its ``param``.

    Validated as JSON, strictly: a number where the schema says string, ``true`` or ``"60"``
    where it says integer, is refused rather than converted — the OpenAPI document says what
    each field takes, and the server takes exactly that.
    """
    data = await read_json(request, getattr(model, "ITEMS_CHECKED_ALONE", None))
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate_json(await request.body(), strict=True)
    except ValidationError as exc:
        raise validation_error(exc) from None


def item_refusal(where: str, error: APIError) -> tuple[str, str]:
    """The ``param`` and message of ``error`` refusing one item of a batch (``where``:
    ``events.3``, ``messages.3``): its param from the batch's top (``events.3.timestamp``),
    and the message led by it, as every error's is."""
    param = f"{where}.{error.param}" if error.param else where
    message = error.message
    if error.param and message.startswith(f"{error.param}: "):
        message = message[len(error.param) + 2 :]
    return param, f"{param}: {message}"


def validation_error(exc: ValidationError) -> InvalidRequest:
    """A pydantic failure as a 400 naming the first offending parameter.

    A model validator names the field it refuses in its error's context
    (:func:`controlplane.validation.field_error`); a plain ``ValueError`` is reported by its
    own words, without pydantic's ``"Value error, "`` in front.
    """
    first = exc.errors(include_url=False)[0]
    context = first.get("ctx") or {}
    location = [str(part) for part in first["loc"]]
    if isinstance(context.get("param"), str):
        location.append(context["param"])
    param = ".".join(location) or None
    message = str(first["msg"])
    if first["type"] == "value_error" and isinstance(context.get("error"), Exception):
        message = str(context["error"])
    return InvalidRequest(
        f"{param}: {message}" if param else message,
        code="parameter_invalid" if first["type"] != "missing" else "parameter_missing",
        param=param,
    )
