"""The API's error tree and the one JSON error body every failure is rendered as.

::

    APIError                      {"error": {"type", "code", "message", "param"}}
    ├── InvalidRequest            400 invalid_request_error
    │   └── PayloadTooLarge       413 invalid_request_error / body_too_large
    ├── AuthenticationFailed      401 authentication_error
    ├── PermissionDenied          403 permission_error
    ├── NotFound                  404 not_found_error
    ├── MethodNotAllowed          405 invalid_request_error / method_not_allowed
    ├── IdempotencyConflict       409 / 422 idempotency_error
    ├── Conflict                  409 invalid_request_error (the resource's state forbids it:
    │                             an ended Live Activity cannot be updated)
    ├── PreconditionFailed        412 invalid_request_error / precondition_failed (If-Match)
    ├── RateLimited               429 rate_limit_error (Retry-After)
    ├── QuotaExceeded             429 quota_exceeded (the limit, the usage, when it resets)
    └── ServiceUnavailable        503 api_error
        └── DependencyUnavailable 503 api_error / dependency_unavailable, ``param`` names it
                                  ("redis" or "database")

A dependency outage is answered here, in one place, whatever the route: Redis errors
(``redis.exceptions.RedisError``, except a plain command error, which is a bug) and the
database driver's connection failures (``ConnectionError`` and its kin from asyncpg or the
socket) become :class:`DependencyUnavailable`, logged as a warning without a traceback.

Anything else that escapes a handler is a bug: the telemetry middleware logs it with its
traceback and request id and answers with a 500 ``api_error`` body, never an HTML page. (Under
``/dashboard/`` every one of these JSON answers becomes the dashboard's error page, for a
person: ``controlplane/dashboard/answers.py``.)
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Self

import asyncpg  # type: ignore[import-untyped]  # no stubs; only its exception classes
from redis import exceptions as redis_errors
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "Conflict",
    "DependencyUnavailable",
    "IdempotencyConflict",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PreconditionFailed",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "error_body",
    "exception_handlers",
    "internal_error_response",
]

logger = logging.getLogger("brik.errors")


class APIError(Exception):
    """An error a client caused or can act on; rendered as the standard JSON body."""

    status_code = 500
    type = "api_error"
    default_code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code

    def to_response(self) -> JSONResponse:
        return JSONResponse(
            error_body(self.type, self.code, self.message, self.param),
            status_code=self.status_code,
            headers=self.headers,
        )


class InvalidRequest(APIError):
    status_code = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    default_code = "body_too_large"


class AuthenticationFailed(APIError):
    status_code = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(APIError):
    status_code = 403
    type = "permission_error"
    default_code = "forbidden"


class NotFound(APIError):
    status_code = 404
    type = "not_found_error"
    default_code = "resource_missing"


class MethodNotAllowed(APIError):
    status_code = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class IdempotencyConflict(APIError):
    status_code = 409
    type = "idempotency_error"
    default_code = "idempotency_key_in_use"


class Conflict(APIError):
    """The request is well formed, but what it acts on is in a state that forbids it."""

    status_code = 409
    type = "invalid_request_error"
    default_code = "conflict"


class PreconditionFailed(APIError):
    """A conditional request (``If-Match``, ``If-None-Match``) whose condition does not hold:
    the resource changed since the client read it, or exists when it was to be created."""

    status_code = 412
    type = "invalid_request_error"
    default_code = "precondition_failed"


class RateLimited(APIError):
    status_code = 429
    type = "rate_limit_error"
    default_code = "rate_limited"


class QuotaExceeded(APIError):
    """A monthly quota is used up: waiting a second will not help, unlike :class:`RateLimited`."""

    status_code = 429
    type = "quota_exceeded"
    default_code = "quota_exceeded"


class ServiceUnavailable(APIError):
    status_code = 503
    type = "api_error"
    default_code = "service_unavailable"


class DependencyUnavailable(ServiceUnavailable):
    """Redis or the database cannot be reached; ``param`` names which ("redis", "database")."""

    default_code = "dependency_unavailable"

    @classmethod
    def redis(cls, message: str = "Redis is unavailable; try again shortly.") -> Self:
        return cls(message, param="redis")

    @classmethod
    def database(cls, message: str = "The database is unavailable; try again shortly.") -> Self:
        return cls(message, param="database")


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


async def _handle_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.to_response()


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) in our body shape."""
    assert isinstance(exc, HTTPException)
    error: APIError
    if exc.status_code == 404:
        error = NotFound(
            f"No route for {request.method} {request.url.path}", code="route_not_found"
        )
    elif exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        error = MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}"
            + (f"; allowed: {allow}" if allow else ""),
            headers={"Allow": allow} if allow else None,
        )
    else:
        error = APIError(str(exc.detail), code="http_error", status_code=exc.status_code)
        if 400 <= exc.status_code < 500:
            error.type = "invalid_request_error"
    return error.to_response()


# Redis answered, but refused the command for a reason that is not a bug of ours.
_REDIS_OUTAGE_REPLIES = (redis_errors.ReadOnlyError, redis_errors.OutOfMemoryError)
# The database driver could not reach or keep its server (asyncpg's connect raises OSError).
DATABASE_OUTAGES: tuple[type[BaseException], ...] = (
    ConnectionError,
    socket.gaierror,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.TooManyConnectionsError,
)


async def _handle_redis_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, redis_errors.RedisError)
    if isinstance(exc, redis_errors.ResponseError) and not isinstance(exc, _REDIS_OUTAGE_REPLIES):
        raise exc  # a wrong command or script: a bug, logged with its traceback as a 500
    logger.warning(
        "Redis unavailable during %s %s: %s: %s",
        request.method, request.url.path, type(exc).__name__, exc,
    )  # fmt: skip
    return DependencyUnavailable.redis().to_response()


async def _handle_database_outage(request: Request, exc: Exception) -> Response:
    logger.warning(
        "database unavailable during %s %s: %s: %s",
        request.method, request.url.path, type(exc).__name__, exc,
    )  # fmt: skip
    return DependencyUnavailable.database().to_response()


def internal_error_response() -> Response:
    """The body of a 500: says nothing about the bug, which is logged with the request id."""
    return APIError("An internal error occurred; it has been logged.").to_response()


exception_handlers: dict[Any, Any] = {
    APIError: _handle_api_error,
    HTTPException: _handle_http_exception,
    redis_errors.RedisError: _handle_redis_error,
    **dict.fromkeys(DATABASE_OUTAGES, _handle_database_outage),
}
