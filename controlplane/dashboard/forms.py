"""Reading a posted form into the JSON an operation takes.

Form values are text; operations validate JSON strictly. Each page says what type each field
is with these helpers, and the result goes through the operation's own validation, so a value
the API would refuse is refused here with the same message, shown beside its field.
"""

from __future__ import annotations

import functools
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from controlplane.api.bodies import NotJSON, load_json
from controlplane.errors import InvalidRequest, PayloadTooLarge

MAX_FORM_FIELDS = 200
MAX_UPLOAD_BYTES = 64 * 1024  # an APNs .p8 is ~250 bytes, an FCM service account ~2.5 KB
IDEMPOTENCY_FIELD = "idempotency_key"
_LOCAL_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?")


async def read_form(request: Request) -> FormData:
    """The posted form, or 400 for one that is not a form."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise InvalidRequest("Send the form from the dashboard.", code="unsupported_media_type")
    return await request.form(max_files=4, max_fields=MAX_FORM_FIELDS)


Endpoint = Callable[[Request], Awaitable[Response]]


def closes_form(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, with the files of the form it read closed once it has answered: Starlette
    leaves them open (spooled to disk past 1 MB) until the garbage collector finds them."""

    @functools.wraps(endpoint)
    async def closing(request: Request) -> Response:
        try:
            return await endpoint(request)
        finally:
            await request.close()

    return closing


def text(form: FormData, name: str) -> str | None:
    """A text field, stripped; None when absent or blank."""
    value = form.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def lines(form: FormData, name: str) -> list[str]:
    """A textarea (or comma-separated field) as its non-blank entries."""
    raw = text(form, name) or ""
    return [item.strip() for item in raw.replace(",", "\n").splitlines() if item.strip()]


def checked(form: FormData, name: str) -> bool:
    return form.get(name) is not None


def integer(form: FormData, name: str) -> int | str | None:
    """An integer field; text that is not one is passed on for the operation to refuse."""
    raw = text(form, name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def number(form: FormData, name: str) -> int | float | str | None:
    """A number field (a relevance score); text that is not one is passed on, to be refused."""
    raw = text(form, name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


def utc_moment(form: FormData, name: str) -> str | None:
    """An ``<input type="datetime-local">`` field, read as UTC (the pages say so), as the RFC 3339
    moment operations take; other text is passed on for the operation to refuse, named."""
    raw = text(form, name)
    if raw is None or _LOCAL_MOMENT.fullmatch(raw) is None:
        return raw
    return raw + ("Z" if raw.count(":") == 2 else ":00Z")


def new_idempotency_key() -> str:
    """The key a form carries from the moment it is drawn (hidden field ``idempotency_key``):
    sent twice — a double click, a reload that posts again — it does its work once."""
    return f"dashboard_{secrets.token_urlsafe(24)}"


def idempotency_key(form: FormData) -> str | None:
    return text(form, IDEMPOTENCY_FIELD)


def json_object(form: FormData, name: str) -> Any:
    """A field holding JSON (content state, custom data); 400 naming the field if it is not,
    by the API's own rules for JSON (nesting, numbers: ``controlplane/api/bodies.py``)."""
    raw = text(form, name)
    if raw is None:
        return None
    try:
        return load_json(raw.encode("utf-8", "surrogatepass"))
    except NotJSON as exc:
        raise InvalidRequest(f"{name}: not valid JSON ({exc}).", param=name) from None


async def upload_or_text(form: FormData, file_field: str, text_field: str) -> str | None:
    """A credential given as a file (picker) or pasted: the file wins when both are given."""
    upload = form.get(file_field)
    if isinstance(upload, UploadFile) and upload.filename:
        content = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(content) > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"{file_field}: the file is larger than 64 KB.", param=file_field)
        try:
            return content.decode("utf-8").strip() or None
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"{file_field}: the file is not text (UTF-8).", param=file_field
            ) from None
    value = form.get(text_field)
    return value.strip() or None if isinstance(value, str) else None
