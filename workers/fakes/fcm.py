"""A fake FCM: the HTTP v1 send endpoint and the OAuth2 token endpoint in front of it.

What it checks, as Google does:

* ``POST /token`` (the service account's ``token_uri``): a JWT-bearer grant whose assertion is
  RS256-signed by a registered service account's key (``kid`` = its ``private_key_id``), with
  ``iss`` = the account's email, ``aud`` = Google's token endpoint (google-auth always uses
  that audience, whatever ``token_uri`` says) or this one, the ``firebase.messaging`` scope and a
  lifetime of at most an hour (400 ``invalid_grant`` otherwise); answers an access token;
* ``POST /v1/projects/{project}/messages:send``: a live access token (401 ``UNAUTHENTICATED``,
  with reason ``ACCESS_TOKEN_EXPIRED`` when it expired) issued for that project
  (403 ``PERMISSION_DENIED``); a body ``{"message": {...}}`` with a ``token`` target, an
  ``android.priority`` of ``NORMAL``/``HIGH``, an ``android.ttl`` like ``"3600s"``, string-only
  ``data``, and at most 4096 bytes (400 ``INVALID_ARGUMENT``).

A good request gets 200 ``{"name": "projects/{project}/messages/{id}"}``. Tests script per-token
outcomes (:meth:`FakeFCM.script`): ``UNREGISTERED`` (404), ``INVALID_ARGUMENT`` about the token
(400), ``SENDER_ID_MISMATCH`` (403: a token of another Firebase project), ``QUOTA_EXCEEDED``
(429 with ``Retry-After``), ``INTERNAL`` (500), ``UNAVAILABLE`` (503), ``THIRD_PARTY_AUTH_ERROR``
(401), or a slow answer; :attr:`FakeFCM.outage` answers one of them to every send for as long
as it is set, and :attr:`FakeFCM.default_delay` makes every other answer wait, as a real network
does (:attr:`FakeFCM.peak_in_flight` then shows how many sends a client kept waiting at
once). Every send is recorded in :attr:`FakeFCM.received`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workers.fakes.local_server import LocalServer

MAX_MESSAGE_BYTES = 4096
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_TTL = re.compile(r"^\d+(\.\d{1,9})?s$")


@dataclass(frozen=True)
class FcmOutcome:
    status: int = 200
    error_status: str | None = None
    error_code: str | None = None
    message: str = ""
    retry_after: int | None = None
    delay: float = 0.0

    @classmethod
    def ok(cls, delay: float = 0.0) -> FcmOutcome:
        return cls(delay=delay)


UNREGISTERED = FcmOutcome(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
INVALID_TOKEN = FcmOutcome(
    400, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
    "The registration token is not a valid FCM registration token",
)  # fmt: skip
QUOTA_EXCEEDED = FcmOutcome(
    429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded.", retry_after=30
)
INTERNAL = FcmOutcome(500, "INTERNAL", "INTERNAL", "Internal error encountered.")
UNAVAILABLE = FcmOutcome(503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.")
SENDER_ID_MISMATCH = FcmOutcome(
    403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH",
    "SenderId mismatch: the registration token belongs to another Firebase project.",
)  # fmt: skip
THIRD_PARTY_AUTH_ERROR = FcmOutcome(
    401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "APNs certificate or auth key was invalid."
)


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str | None
    project_id: str
    token: str | None
    message: dict[str, Any]
    status: int
    error_code: str | None
    received_at: float

    @property
    def accepted(self) -> bool:
        return self.status == 200


@dataclass
class ServiceAccount:
    client_email: str
    project_id: str
    private_key_id: str
    public_key: Any


@dataclass
class FakeFCM(LocalServer):
    """The server; ``await start()``, then use :attr:`base_url` and :attr:`token_url`."""

    accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    token_lifetime: int = 3600
    received: list[ReceivedMessage] = field(default_factory=list)
    token_requests: int = 0
    outage: FcmOutcome | None = None  # while set, every send gets it (a provider brownout)
    # Seconds before answering an unscripted send: Google is 20-100 ms away in production.
    default_delay: float = 0.0
    in_flight: int = 0  # sends being answered now
    peak_in_flight: int = 0  # the most at once

    def __post_init__(self) -> None:
        self._scripts: dict[str, deque[FcmOutcome]] = defaultdict(deque)
        self._tokens: dict[str, tuple[str, float]] = {}  # access token → (project, expiry)

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def add_account(self, client_email: str, project_id: str, key_id: str, public_key: Any) -> None:
        self.accounts[client_email] = ServiceAccount(client_email, project_id, key_id, public_key)

    def script(self, token: str, *outcomes: FcmOutcome) -> None:
        self._scripts[token].extend(outcomes)

    def expire_access_tokens(self) -> None:
        self._tokens = {token: (project, 0.0) for token, (project, _) in self._tokens.items()}

    def accepted(self) -> list[ReceivedMessage]:
        return [message for message in self.received if message.accepted]

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v1/projects/{project_id}/messages:send", self._send, methods=["POST"]),
            ]
        )

    async def __aenter__(self) -> FakeFCM:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # -- endpoints ---------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        self.token_requests += 1
        form = dict(parse_qsl((await request.body()).decode()))

        def refuse(description: str) -> Response:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": description}, status_code=400
            )

        if form.get("grant_type") != JWT_BEARER or "assertion" not in form:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        assertion = form["assertion"]
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            account = self.accounts.get(str(unverified.get("iss")))
            header = jwt.get_unverified_header(assertion)
            if account is None or header.get("kid") != account.private_key_id:
                return refuse("Invalid JWT Signature.")
            claims = jwt.decode(
                assertion, account.public_key, algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUDIENCE, self.token_url],
                options={"require": ["iss", "aud", "iat", "exp"]},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            return refuse(f"Invalid JWT: {type(exc).__name__}")
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return refuse("Missing the firebase.messaging scope.")
        if int(claims["exp"]) - int(claims["iat"]) > 3600:
            return refuse("JWT lifetime exceeds one hour.")
        access_token = "ya29.fake-" + secrets.token_urlsafe(24)
        self._tokens[access_token] = (account.project_id, time.time() + self.token_lifetime)
        return JSONResponse(
            {"access_token": access_token, "expires_in": self.token_lifetime,
             "token_type": "Bearer"}
        )  # fmt: skip

    async def _send(self, request: Request) -> Response:
        project_id = request.path_params["project_id"]
        authorization = request.headers.get("authorization", "")
        grant = self._tokens.get(authorization.removeprefix("Bearer ").strip())
        if grant is None:
            return _error(401, "UNAUTHENTICATED", None, "Request had invalid credentials.")
        if grant[1] <= time.time():
            return _error(401, "UNAUTHENTICATED", None, "Access token expired.",
                          reason="ACCESS_TOKEN_EXPIRED")  # fmt: skip
        if grant[0] != project_id:
            denied = "Permission 'cloudmessaging.messages.create' denied on resource."
            return _error(403, "PERMISSION_DENIED", None, denied)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload.")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return _error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message is required.")
        token = message.get("token")
        outcome = self._check(message) or self._next(token)
        message_id = f"0:{secrets.token_hex(8)}" if outcome.status == 200 else None
        self.received.append(
            ReceivedMessage(message_id, project_id, token, message, outcome.status,
                            outcome.error_code, time.time())
        )  # fmt: skip
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if outcome.delay:
                await asyncio.sleep(outcome.delay)
        finally:
            self.in_flight -= 1
        if outcome.status == 200:
            return JSONResponse({"name": f"projects/{project_id}/messages/{message_id}"})
        headers = {"Retry-After": str(outcome.retry_after)} if outcome.retry_after else None
        return _error(outcome.status, outcome.error_status or "UNKNOWN", outcome.error_code,
                      outcome.message, headers=headers)  # fmt: skip

    def _check(self, message: dict[str, Any]) -> FcmOutcome | None:
        def invalid(text: str) -> FcmOutcome:
            return FcmOutcome(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", text)

        targets = [key for key in ("token", "topic", "condition") if key in message]
        if len(targets) != 1:
            return invalid("Exactly one of token, topic or condition is required.")
        if not isinstance(message.get("token", ""), str) or not message.get("token", "x"):
            return invalid("The registration token is not a valid FCM registration token")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return invalid("Invalid value at 'message.data': values must be strings.")
        android = message.get("android", {})
        if android.get("priority", "HIGH") not in {"NORMAL", "HIGH"}:
            return invalid("Invalid value at 'message.android.priority'.")
        if "ttl" in android and not _TTL.match(str(android["ttl"])):
            return invalid("Invalid value at 'message.android.ttl': not a duration.")
        without_target = {k: v for k, v in message.items() if k != "token"}
        if len(json.dumps(without_target, separators=(",", ":")).encode()) > MAX_MESSAGE_BYTES:
            return invalid("Message is too big.")
        return None

    def _next(self, token: str | None) -> FcmOutcome:
        if self.outage is not None:
            return self.outage
        script = self._scripts.get(token or "")
        return script.popleft() if script else FcmOutcome.ok(self.default_delay)


def _error(
    status: int,
    error_status: str,
    error_code: str | None,
    message: str,
    *,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                        "errorCode": error_code})  # fmt: skip
    if reason:
        details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason})
    return JSONResponse(
        {"error": {"code": status, "message": message, "status": error_status,
                   "details": details}},
        status_code=status,
        headers=headers,
    )  # fmt: skip
