"""Reading request bodies: JSON only, validated by pydantic, every failure a clear 400."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from controlplane.errors import InvalidRequest

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_json(request: Request) -> Any:
    """The body as JSON, or 400 ``invalid_json`` / 415 ``unsupported_media_type``."""
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
    try:
        # RFC 8259: JSON between systems is UTF-8; json.loads(bytes) would guess UTF-16/32.
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} "
            f"at line {exc.lineno} column {exc.colno}.",
            code="invalid_json",
        ) from None
    reject_nul_characters(data)
    return data


def reject_nul_characters(value: Any, path: str = "") -> None:
    """400 for a NUL character anywhere (keys included): no text column can store one."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRequest(
                f"{path or 'The body'}: NUL characters are not allowed.",
                code="parameter_invalid",
                param=path or None,
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul_characters(key, path)
            reject_nul_characters(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_nul_characters(item, f"{path}.{index}" if path else str(index))


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    """The body validated into ``model``; the first problem is reported with its ``param``."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> InvalidRequest:
    """A pydantic failure as a 400 naming the first offending parameter."""
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    return InvalidRequest(
        f"{param}: {first['msg']}" if param else str(first["msg"]),
        code="parameter_invalid" if first["type"] != "missing" else "parameter_missing",
        param=param,
    )
