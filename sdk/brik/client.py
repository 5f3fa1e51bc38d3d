"""``Client`` and ``AsyncClient``: one project's API key, its settings, and the resources.

Each instance is independent (several projects in one process, each with its own key); the
module-level ``brik.init()`` just keeps one ``Client`` as the default.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Literal

import httpx

from brik._http import AsyncTransport, Config, SyncTransport, logger
from brik.errors import BrikError, ConfigurationError
from brik.events import DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL, AsyncEvents, Events
from brik.realtime import AsyncRealtime, Realtime
from brik.resources import (
    Activities,
    AsyncActivities,
    AsyncDevices,
    AsyncExports,
    AsyncLiveActivities,
    AsyncPushes,
    AsyncState,
    AsyncUsers,
    AsyncWebhooks,
    AsyncWidgets,
    Devices,
    Exports,
    LiveActivities,
    Pushes,
    State,
    Users,
    Webhooks,
    Widgets,
)

API_KEY_VARIABLE = "BRIK_API_KEY"
API_URL_VARIABLE = "BRIK_API_URL"
DEFAULT_API_URL = "http://localhost:8000"  # `brik-cloud dev`
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_RETRIES = 2
_KEY_PREFIXES = ("bk_sk_test_", "bk_sk_live_", "bk_pk_test_", "bk_pk_live_")


def resolve_config(
    api_key: str | None, base_url: str | None, timeout: float, max_retries: int
) -> Config:
    """Settings from the arguments, falling back on ``BRIK_API_KEY`` / ``BRIK_API_URL``."""
    key = api_key or os.environ.get(API_KEY_VARIABLE)
    if not key:
        raise ConfigurationError(
            f"No Brik API key: set the {API_KEY_VARIABLE} environment variable or pass one, "
            'as in brik.init("bk_sk_test_…"). Keys are in the dashboard under your project.'
        )
    if not key.startswith(_KEY_PREFIXES):
        shown = key[:12] + "…" if len(key) > 12 else key
        raise ConfigurationError(
            f"{shown!r} is not a Brik project API key: they start with bk_sk_ (secret, for "
            "servers) or bk_pk_ (publishable), then test_ or live_."
        )
    if max_retries < 0:
        raise ConfigurationError("max_retries must be 0 or more.")
    if timeout <= 0:
        raise ConfigurationError("timeout must be more than 0 seconds.")
    url = base_url or os.environ.get(API_URL_VARIABLE) or DEFAULT_API_URL
    return Config(api_key=key, base_url=url.rstrip("/"), timeout=timeout, max_retries=max_retries)


class _Settings:
    """What both clients tell about themselves."""

    _config: Config

    @property
    def mode(self) -> Literal["test", "live"]:
        """``test`` keys deliver to the sandbox; ``live`` keys to APNs and FCM."""
        return "test" if self._config.api_key[6:].startswith("test_") else "live"

    @property
    def base_url(self) -> str:
        return self._config.base_url


class Client(_Settings):
    """A blocking client: ``Client("bk_sk_test_…")`` or ``Client()`` to read the environment.

    ``timeout`` is per request in seconds; ``max_retries`` bounds the retries of one call
    (connection errors, 429 and 5xx, with backoff). Pass ``http_client`` to use your own
    ``httpx.Client`` (proxies, certificates); it is then yours to close. Analytics events
    (``client.events``) go out ``event_batch_size`` at a time, or once the oldest has waited
    ``event_flush_interval`` seconds; :meth:`close` sends what is left.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
        event_batch_size: int = DEFAULT_BATCH_SIZE,
        event_flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        self._config = resolve_config(api_key, base_url, timeout, max_retries)
        self._transport = SyncTransport(self._config, http_client)
        self.events = Events(self._transport, batch_size=event_batch_size,
                             flush_interval=event_flush_interval)  # fmt: skip
        self.devices = Devices(self._transport)
        self.pushes = Pushes(self._transport)
        self.live_activities = LiveActivities(self._transport)
        self.activities = Activities(self._transport)
        self.widgets = Widgets(self._transport)
        self.state = State(self._transport)
        self.webhooks = Webhooks(self._transport)
        self.realtime = Realtime(self._transport)
        self.exports = Exports(self._transport)
        self.users = Users(self._transport)

    def close(self) -> None:
        """Send the events still buffered (a failure is logged), then close the connections."""
        try:
            if self.events.pending:
                self.events.flush()
        except BrikError as exc:
            logger.warning("brik: %d events not sent at close: %s", self.events.pending, exc)
        finally:
            self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()


class AsyncClient(_Settings):
    """The same as :class:`Client`, for asyncio: every method is awaited, ``stream`` is an
    async iterator. ``async with AsyncClient() as brik: …`` closes it."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        event_batch_size: int = DEFAULT_BATCH_SIZE,
        event_flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        self._config = resolve_config(api_key, base_url, timeout, max_retries)
        self._transport = AsyncTransport(self._config, http_client)
        self.events = AsyncEvents(self._transport, batch_size=event_batch_size,
                                  flush_interval=event_flush_interval)  # fmt: skip
        self.devices = AsyncDevices(self._transport)
        self.pushes = AsyncPushes(self._transport)
        self.live_activities = AsyncLiveActivities(self._transport)
        self.activities = AsyncActivities(self._transport)
        self.widgets = AsyncWidgets(self._transport)
        self.state = AsyncState(self._transport)
        self.webhooks = AsyncWebhooks(self._transport)
        self.realtime = AsyncRealtime(self._transport)
        self.exports = AsyncExports(self._transport)
        self.users = AsyncUsers(self._transport)

    async def close(self) -> None:
        """As :meth:`Client.close`."""
        try:
            if self.events.pending:
                await self.events.flush()
        except BrikError as exc:
            logger.warning("brik: %d events not sent at close: %s", self.events.pending, exc)
        finally:
            await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.close()
