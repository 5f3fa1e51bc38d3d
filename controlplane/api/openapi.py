"""``GET /v1/openapi.json``: the OpenAPI 3.1 document, generated from the operations.

Every path, method, parameter, request body and response comes from the
:class:`~controlplane.api.routing.Operation` declarations the router itself serves, and the
schemas from their pydantic models — so the document cannot drift from the API.

The document promises both ways: every status an operation can answer is listed (those of
its kind here, its own in ``Operation.errors``), and every rule a request must follow that JSON
Schema can say is in the schemas (patterns, per-kind ``if``/``then``, ``anyOf`` for "one of
these"), so what the schema allows the server accepts. What no schema can say — a cursor must
name an existing object, an expiry must be in the future, a PEM must hold a real key — is in
the descriptions, and is what ``tests/controlplane/api/test_openapi_conformance.py`` excuses,
one named refusal at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.responses import JSONResponse, Response

from controlplane.api.routing import Auth, Call, Operation
from controlplane.models.ids import ID_PATTERN
from controlplane.tenancy import PATH_NAMES

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{(\w+)}")
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "param"],
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
_SECURITY_SCHEMES = {
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "brik_session",
        "description": "Dashboard session, set by POST /v1/auth/login.",
    },
    "accessToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "bk_pat_…",
        "description": "Personal access token (management API).",
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "bk_sk_… / bk_pk_…",
        "description": "Project API key (tenant API).",
    },
}
_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.ADMIN: [{"sessionCookie": []}, {"accessToken": []}],
    Auth.API_KEY: [{"apiKey": []}],
    Auth.NONE: [],
}


_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {
        "description": "The buckets this request drew from (draft-ietf-httpapi-ratelimit-headers)"
        ': `"api_key";q=<tokens>;w=<seconds>, "project";q=…;w=…`',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'Tokens left and seconds until full, per bucket: `"api_key";r=…;t=…, …`',
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait (on 429)",
        "schema": {"type": "integer"},
    },
}


_DESCRIPTION = """\
Management API (session or personal access token) and tenant API (project API keys). Errors
share one JSON body: `{"error": {"type", "code", "message", "param"}}`, where `param` names the
parameter at fault (`alert.title`, `to.tags.0`) and the message starts with it.

Each query parameter is given at most once: `limit=10&limit=20` is a 400 `parameter_invalid`
naming `limit`.

Rules for every JSON body, beyond the schemas:
- Strings are Unicode text without U+0000 (NUL) and without lone UTF-16 surrogates such as
  `"\\ud800"`: no column stores them (400 `parameter_invalid`, naming where).
- Arrays and objects nest at most 64 levels (400 `invalid_json`).
- Numbers are JSON numbers: no `NaN`, `Infinity` or `-Infinity`, nor any beyond an IEEE 754
  double such as `1e999` (400 `invalid_json`).
"""


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def _error_responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "400": _error("Invalid parameters or body, or a request this state does not allow"),
        "413": _error("Body too large"),
        "500": _error("Internal error (logged with the request id)"),
        "503": _error("A dependency (database, Redis, encryption keys, Stripe) is unavailable"),
    }
    if operation.body:
        responses["415"] = _error("Body is not JSON")
    if operation.auth is not Auth.NONE:
        responses["401"] = _error("Missing, invalid, revoked or expired credentials")
        responses["403"] = _error("Role or scope does not allow this")
    if (
        _PATH_PARAM.search(operation.path)
        or operation.auth is Auth.NONE
        or (operation.method == "DELETE")
    ):
        responses["404"] = _error("Not found (or belongs to another tenant)")
    if operation.idempotent:
        responses["409"] = _error(
            "A request with this Idempotency-Key is still being processed (`Retry-After`)"
        )
        responses["422"] = _error("This Idempotency-Key was used with a different request")
    if operation.auth is Auth.API_KEY:
        responses["429"] = {
            **_error(
                "Rate limited (`rate_limit_error`, with `Retry-After`) or a plan's quota is "
                "used up (`quota_exceeded`): the month's pushes when sending, the state bytes "
                "when writing state (`state_quota_exceeded`)"
            ),
            "headers": _RATE_LIMIT_HEADERS,
        }
    for status, description in operation.errors.items():
        responses[str(status)] = _error(description)
    return responses


def _parameters(operation: Operation, query_schema: dict[str, Any] | None) -> list[Any]:
    parameters: list[Any] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": operation.path_schemas.get(name)
            or PATH_NAMES.get(name, {"type": "string", "pattern": ID_PATTERN}),
        }
        for name in _PATH_PARAM.findall(operation.path)
    ]
    if query_schema:
        required = set(query_schema.get("required", []))
        for name, schema in query_schema.get("properties", {}).items():
            parameter = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": {k: v for k, v in schema.items() if k != "title"},
            }
            if "description" in schema:
                parameter["description"] = schema["description"]
            parameters.append(parameter)
    return parameters


def build_document(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for operation in operations:
        if operation.body:
            wanted.append((operation.body, "validation"))
        if operation.query:
            wanted.append((operation.query, "validation"))
        if operation.response:
            wanted.append((operation.response, "serialization"))
    refs, definitions = models_json_schema(list(dict.fromkeys(wanted)), ref_template=_REF)
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    schemas["Error"] = _ERROR_SCHEMA

    def inline(ref: dict[str, Any]) -> dict[str, Any]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        schema: dict[str, Any] = schemas[name]
        return schema

    paths: dict[str, Any] = {}
    for operation in operations:
        query_schema = inline(refs[(operation.query, "validation")]) if operation.query else None
        entry: dict[str, Any] = {
            "operationId": operation.operation_id,
            "summary": operation.summary,
            "tags": [operation.tag],
            "security": _SECURITY[operation.auth],
            "parameters": _parameters(operation, query_schema),
        }
        if operation.description:
            entry["description"] = operation.description
        if operation.body:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(operation.body, "validation")]}},
            }
        success: dict[str, Any] = {"description": operation.summary}
        if operation.response:
            success["content"] = {
                "application/json": {"schema": refs[(operation.response, "serialization")]}
            }
        elif operation.response_media_type != "application/json":
            success["content"] = {operation.response_media_type: {"schema": {"type": "string"}}}
        elif operation.status_code in (302, 303):
            success["headers"] = {"Location": {"schema": {"type": "string"}}}
        for name, meaning in operation.response_headers.items():
            header = {"description": meaning, "schema": {"type": "string"}}
            success.setdefault("headers", {})[name] = header
        entry["responses"] = {str(operation.status_code): success, **_error_responses(operation)}
        paths.setdefault(operation.path, {})[operation.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Brik Cloud API",
            "version": version,
            "description": _DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": _SECURITY_SCHEMES},
    }


async def openapi_document(call: Call) -> Response:
    app_state = call.request.app.state
    if getattr(app_state, "openapi", None) is None:
        app_state.openapi = build_document(app_state.operations, app_state.version)
    return JSONResponse(app_state.openapi)


operations = [
    Operation(
        "GET",
        "/v1/openapi.json",
        openapi_document,
        "This document: the OpenAPI 3.1 description of every /v1 operation",
        "Meta",
        auth=Auth.NONE,
    ),
]
