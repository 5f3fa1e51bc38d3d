"""Everything the SDK raises, one tree (each class is exported as ``brik.<Name>``)::

    BrikError                      anything raised by this SDK
    ├── ConfigurationError         no API key (set BRIK_API_KEY), or not a Brik key
    ├── SignatureVerificationError a webhook's Brik-Signature does not verify (wrong secret,
    │                              changed body, too old), or its body is not an event
    ├── APIConnectionError         could not reach Brik, or the connection dropped (after retries)
    └── APIError                   Brik answered with an error: status, type, code, message,
        │                          param and request_id (quote it when asking for help)
        ├── InvalidRequestError    400, 405, 413, 415: the request is wrong (see ``param``);
        │                          also raised before sending for an id (code ``invalid_id``)
        │                          or a state key (``parameter_invalid``) that cannot be one
        ├── AuthenticationError    401: missing, unknown or revoked API key
        ├── PermissionError        403: the key's kind or scopes do not allow this
        ├── NotFoundError          404: no such object (or it belongs to another project)
        ├── IdempotencyError       409/422: the Idempotency-Key is in use or was used differently
        ├── ConflictError          409: what the call acts on is in a state that forbids it
        │                          (``activity_ended``: the Live Activity has ended)
        ├── PreconditionFailedError
        │                          412: the state entry changed since the ETag given as
        │                          ``if_match`` was read (``etag``: its ETag now)
        ├── RateLimitError         429 rate_limit_error: too fast; ``retry_after`` seconds
        ├── QuotaExceededError     429 quota_exceeded: the month's pushes, or the state
        │                          storage (``state_quota_exceeded``), are used up
        └── ServerError            5xx: Brik failed (after retries)

Retries happen before anything is raised: connection errors, 429 ``rate_limit_error``, 409
``idempotency_key_in_use`` and 5xx are retried up to ``max_retries`` times.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BrikError",
    "ConfigurationError",
    "ConflictError",
    "IdempotencyError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionError",
    "PreconditionFailedError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "SignatureVerificationError",
]


class BrikError(Exception):
    """Base of every error this SDK raises."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request id {self.request_id})"
        return self.message


class ConfigurationError(BrikError):
    """The SDK is not set up: no API key, or a key that is not a Brik project key."""


class SignatureVerificationError(BrikError):
    """A request claiming to be a Brik webhook is not: its ``Brik-Signature`` is missing, does
    not sign this body with the secret given, or is older than the tolerance (a replay) — or the
    body is not an event. Answer such a request 400 and do nothing with it."""


class APIConnectionError(BrikError):
    """Brik could not be reached, or the connection dropped, on every attempt."""


class APIError(BrikError):
    """Brik answered with an error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.body = body


class InvalidRequestError(APIError):
    """The request is malformed or breaks a rule; ``param`` names the offending field."""


class AuthenticationError(APIError):
    """The API key is missing, unknown, revoked or expired."""


class PermissionError(APIError):
    """The key may not do this (a publishable key sending pushes, a missing scope)."""


class NotFoundError(APIError):
    """No such object within the key's project."""


class IdempotencyError(APIError):
    """The Idempotency-Key is still in use by another request, or was used with another body."""


class ConflictError(APIError):
    """The request is well formed, but what it acts on is in a state that forbids it: ``code``
    ``activity_ended`` when a Live Activity that has ended (by your server, or by Apple 8 hours
    after it started) is updated, ended or given a token. Start a new activity instead."""


class PreconditionFailedError(APIError):
    """A conditional write did not apply: the state entry changed since the ETag passed as
    ``if_match`` was read (or was deleted), or exists when ``create_only`` was asked. Read it
    again and decide; ``etag`` is its current ETag when there is an entry."""

    def __init__(self, message: str, *, etag: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.etag = etag


class RateLimitError(APIError):
    """Too many requests; wait ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class QuotaExceededError(APIError):
    """A plan quota is used up: the month's pushes (retrying will not help until it resets), or
    the organization's state storage (``code`` ``state_quota_exceeded``: delete entries)."""


class ServerError(APIError):
    """Brik failed to answer (5xx), on every attempt."""
