"""Sending one webhook request, safely: to a checked address, briefly, and reading little.

A tenant chooses the URL; the worker sending to it stands inside the operator's network. So:

* **Addresses** (``controlplane/webhook_destinations.py``): unless
  ``BRIK_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is set, every connection resolves its host *once*,
  refuses to connect if any answer is a private, loopback, link-local, multicast, reserved …
  address (IPv4, IPv6 and the IPv4 an IPv6 address carries), and connects to the very address
  it checked. That is done in the connection itself (:class:`GuardedBackend`, httpcore's network
  backend), below HTTP and TLS: the request still names the host (``Host``, TLS SNI and the
  certificate check are the host's), and a name that answers differently a moment later (DNS
  rebinding) cannot slip another address in between the check and the connection.
* **No redirects** are followed: a 3xx is an answer like any other non-2xx, a failed attempt.
  No proxy from the environment is used either.
* **Time**: ``BRIK_WEBHOOK_TIMEOUT_SECONDS`` bounds the whole exchange, connection to last byte.
* **Size**: at most :data:`READ_LIMIT_BYTES` of the answer are read (asked uncompressed, and
  read raw, so no small body inflates into a large one); :data:`EXCERPT_CHARACTERS` of it are
  kept for the delivery log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
import httpx

from controlplane.settings import Settings
from controlplane.webhook_destinations import ALLOW_SETTING, parse_address, refusal

READ_LIMIT_BYTES = 16 * 1024
EXCERPT_CHARACTERS = 1000
USER_AGENT = "Brik-Webhooks/1.0"

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system's resolver), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressRefused(Exception):
    """The host is, or resolves to, an address webhooks may not reach."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, *, allow_private: bool, resolve: Resolver = system_resolver) -> None:
        self._allow_private = allow_private
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to try for ``host``, all checked; :class:`AddressRefused` if any is
        refused (an answer mixing a public and a private address is refused whole)."""
        literal = parse_address(host)
        if literal is not None:
            answers = [str(literal)]
        else:
            try:
                answers = await self._resolve(host, port)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
            if not answers:
                raise httpcore.ConnectError(f"{host} resolves to no address")
        if not self._allow_private:
            for answer in answers:
                why = refusal(ipaddress.ip_address(answer))
                if why is not None:
                    shown = host if literal is not None else f"{host} resolves to {answer},"
                    raise AddressRefused(
                        f"refused: {shown} {why}; webhooks go to public addresses unless the "
                        f"operator sets {ALLOW_SETTING}"
                    )
        return answers

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self.addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )  # fmt: skip
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,  # noqa: ASYNC109 (httpcore's)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # fmt: skip
        raise AddressRefused("refused: webhooks never go to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over a connection pool on :class:`GuardedBackend`."""

    def __init__(self, backend: GuardedBackend) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0,
            network_backend=backend,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Answer:
    """How one attempt went: the endpoint's status and an excerpt of what it said, or why there
    was no answer (``error``); ``refused`` when the address policy (or a URL no request can be
    made to) stopped it before any connection: retrying changes nothing."""

    status: int | None
    latency_ms: int
    excerpt: str | None = None
    error: str | None = None
    retry_after: float | None = None
    refused: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        """The attempt in a few words, for the delivery log and the owners' email."""
        if self.error is not None:
            return self.error
        if self.status is not None and 300 <= self.status < 400:
            return f"HTTP {self.status} (redirects are not followed)"
        return f"HTTP {self.status}"


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header's seconds (a number or an HTTP date), if it has one."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class WebhookSender:
    """One worker's HTTP client for webhooks (connections are kept per host, each checked when
    it was made)."""

    def __init__(self, settings: Settings, resolve: Resolver = system_resolver) -> None:
        backend = GuardedBackend(
            allow_private=settings.webhook_allow_private_networks, resolve=resolve
        )
        self._timeout = settings.webhook_timeout_seconds
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(backend),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self._timeout),
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST ``body`` to ``url``; never raises for what the network or the endpoint does."""
        sent = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            **headers,
        }
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.stream("POST", url, content=body, headers=sent) as answer:
                    read = bytearray()
                    async for chunk in answer.aiter_raw():
                        read += chunk
                        if len(read) >= READ_LIMIT_BYTES:
                            break
        except AddressRefused as exc:
            return Answer(None, elapsed(), error=str(exc), refused=True)
        except (httpx.InvalidURL, UnicodeError) as exc:  # no retry makes it a URL
            return Answer(None, elapsed(), error=f"not a URL to send to: {exc}"[:300], refused=True)
        except TimeoutError:
            return Answer(None, elapsed(), error=f"no answer within {self._timeout:g} s")
        except httpx.HTTPError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            return Answer(None, elapsed(), error=f"{type(exc).__name__}: {reason}"[:300])
        excerpt = bytes(read[:READ_LIMIT_BYTES]).decode("utf-8", "replace")[:EXCERPT_CHARACTERS]
        return Answer(
            answer.status_code, elapsed(), excerpt=excerpt,
            retry_after=retry_after(answer.headers.get("retry-after")),
        )  # fmt: skip

    async def close(self) -> None:
        await self._client.aclose()
