"""pyfcm pointed at the right FCM host, and driven so it can neither block nor sleep unbounded.

pyfcm is synchronous, and its ``notify()`` answers a ``Retry-After`` by ``time.sleep()``-ing for
as long as the server asks, then recursing — and the ``requests`` adapter it mounts retries
502/503 with backoff, honouring ``Retry-After`` too. Its sessions are per thread, each fetching
its own OAuth2 token. Its "async" path opens a new event loop and a new HTTP session per call.
In a worker that would freeze the event loop, or a thread, for an hour, and cap the sends in
flight at the thread pool's size (six on two cores: 120 sends/s when Google answers in 50 ms).
So we use pyfcm for the endpoint and the JSON encoding, google-auth for the service-account
token, and send ourselves:

* with aiohttp (which pyfcm itself depends on) on the event loop: a pool of keep-alive
  connections, at most ``max_in_flight`` requests at once (``BRIK_FCM_IN_FLIGHT``), never a
  retry of its own, so nothing sleeps. Measured against the alternatives with
  ``loadtests/pipeline.py --provider fcm --answer-delay 0.05`` (docs/benchmarks.md): httpx,
  which could speak HTTP/2 to Google, spent 9 ms of CPU per send in its connection pool at 500
  in flight (about 100 sends/s); pyfcm's own async path opens a new session and connection
  per message;
* one access token per service account, shared by every send, refreshed under a lock when it
  expires (or when FCM says ``ACCESS_TOKEN_EXPIRED``, then the message is resent once) — the
  refresh is google-auth's blocking call, run in a thread;
* a ``Retry-After`` comes back to the caller as a number (capped at ``max_retry_after``), to be
  turned into a deferred retry of the job — not a sleep.

Endpoint adaptation, the one place: pyfcm builds its URL from the ``FCM_END_POINT_BASE``
class attribute (set here on the instance from ``BRIK_FCM_BASE_URL``); google-auth takes the
token URL from the service account's ``token_uri``, which is always replaced by
``BRIK_FCM_TOKEN_URL`` (Google's by default) so an uploaded file cannot point workers elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from google.auth.exceptions import RefreshError, TransportError
from google.auth.transport.requests import Request
from google.oauth2 import service_account
from pyfcm import FCMNotification

from controlplane.settings import Settings

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEFAULT_MAX_RETRY_AFTER = 300.0
CREDENTIALS_REFUSED = "CREDENTIALS_REFUSED"  # ours: the OAuth2 token could not be obtained


@dataclass(frozen=True)
class FcmResult:
    """What FCM answered to one message."""

    status: int
    message_name: str | None = None
    error_status: str | None = None
    error_code: str | None = None
    error_message: str = ""
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status == 200


def _error_parts(body: Any) -> tuple[str | None, str | None, str, str | None]:
    """(status, FCM errorCode, message, ErrorInfo reason) of a Google API error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, "", None
    code = reason = None
    for detail in error.get("details") or []:
        if isinstance(detail, dict):
            code = code or detail.get("errorCode")
            reason = reason or detail.get("reason")
    return error.get("status"), code, str(error.get("message", "")), reason


class FcmSender:
    """Sends FCM v1 messages for one service account."""

    def __init__(
        self,
        service_account_info: dict[str, Any],
        settings: Settings,
        *,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        request_timeout: float = 30.0,
        max_in_flight: int | None = None,
    ) -> None:
        # Always our configured token URL, never the uploaded JSON's: a tenant-supplied
        # token_uri would make workers POST signed assertions wherever it points (SSRF).
        info = {**service_account_info, "token_uri": settings.fcm_token_url}
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[FCM_SCOPE]
        )
        self._credentials = credentials
        self._token_lock = asyncio.Lock()
        self._fcm = FCMNotification(credentials=credentials, project_id=info.get("project_id"))
        self._fcm.FCM_END_POINT_BASE = settings.fcm_base_url.rstrip("/") + "/v1/projects"
        self._endpoint: str = self._fcm.fcm_end_point
        self.max_retry_after = max_retry_after
        self.request_timeout = request_timeout
        # The one bound on sends waiting at once: waiting here, a send's 30 s timeout has not
        # started (aiohttp counts a wait for a pool slot in it), so the pool itself is unbounded.
        self._in_flight = asyncio.Semaphore(max_in_flight or settings.fcm_in_flight)
        self._session: aiohttp.ClientSession | None = None  # made on the first send (a loop)

    async def send(self, message: dict[str, Any]) -> FcmResult:
        """POST ``{"message": message}``; the outcome, or an ``aiohttp.ClientError`` (or a
        ``TimeoutError``) when no answer came."""
        payload = self._fcm.json_dumps({"message": message})
        async with self._in_flight:
            try:
                response = await self._post(payload)
            except (RefreshError, TransportError) as exc:
                # The token endpoint refused the service account (revoked key, wrong account).
                return FcmResult(
                    status=401,
                    error_status="UNAUTHENTICATED",
                    error_code=CREDENTIALS_REFUSED,
                    error_message=f"Google refused the service account: {exc}"[:500],
                )
            result = self._result(response)
            if result.status == 401 and result.error_code is None and self._token_expired(response):
                result = self._result(await self._post(payload, stale_token=True))
            return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            )
        return self._session

    async def _authorization(self, stale_token: str | None) -> str:
        async with self._token_lock:
            if not self._credentials.valid or self._credentials.token == stale_token:
                # google-auth's refresh is blocking (requests): a thread, once per hour or so.
                await asyncio.to_thread(self._credentials.refresh, Request())
            return f"Bearer {self._credentials.token}"

    async def _post(self, payload: bytes, *, stale_token: bool = False) -> _Answer:
        stale = self._credentials.token if stale_token else None
        headers = {
            "Content-Type": "application/json",
            "Authorization": await self._authorization(stale),
        }
        session = self._open_session()
        async with session.post(
            self._endpoint, data=payload, headers=headers, allow_redirects=False
        ) as response:
            answered = {name.lower(): value for name, value in response.headers.items()}
            return _Answer(response.status, await response.read(), answered)

    @staticmethod
    def _token_expired(answer: _Answer) -> bool:
        return _error_parts(answer.json())[3] == "ACCESS_TOKEN_EXPIRED"

    def _result(self, answer: _Answer) -> FcmResult:
        body = answer.json()
        if answer.status == 200 and isinstance(body, dict):
            return FcmResult(status=200, message_name=body.get("name"))
        status, code, message, _ = _error_parts(body)
        retry_after = None
        if "retry-after" in answer.headers:
            try:
                retry_after = min(float(answer.headers["retry-after"]), self.max_retry_after)
            except ValueError:
                retry_after = None
        text = answer.body.decode(errors="replace")
        return FcmResult(
            status=answer.status,
            error_status=status,
            error_code=code,
            error_message=message or (json.dumps(body)[:500] if body else text[:500]),
            retry_after=retry_after,
        )


@dataclass(frozen=True)
class _Answer:
    """What FCM answered, read whole (the connection goes back to the pool at once)."""

    status: int
    body: bytes
    headers: dict[str, str]  # names in lower case

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None
