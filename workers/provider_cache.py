"""Warm provider connections, one per project credential, reused across jobs.

A provider (and its HTTP/2 connections, its provider JWT, its OAuth2 token) is built once per
``(credential id, version)`` and kept. Uploading a new credential bumps its version: the next
job builds a fresh provider while jobs already sending on the old one finish with it; the old
one is closed a while later. Which provider a name means, and how it is built from a credential,
is the registry's (:mod:`workers.providers.registry`); a provider that needs no credential (the
sandbox) is built once and shared by every project.

A provider no job has used for :data:`IDLE_AFTER_SECONDS` is closed, and built again when a
push for its project comes: each holds open connections (about 240 KB each, measured with
``loadtests/flat_cost.py``), and a worker that kept one for every tenant it ever served would
grow without bound. The sweep runs at most once every :data:`SWEEP_EVERY_SECONDS`, in the
background of a lookup — each worker process sweeps its own cache, so it cannot be a cron job
(arq runs one of those on one worker only).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time

from controlplane.crypto import KeyRing, UndecryptableSecret
from controlplane.models import ProviderCredential, ProviderName
from controlplane.settings import Settings
from controlplane.sql_rows import model_of, parameter, selected
from workers.providers.base import Credential, Provider
from workers.providers.registry import PROVIDERS, Registry, UnknownProvider

logger = logging.getLogger("brik.worker")

RETIRE_AFTER_SECONDS = 600.0
IDLE_AFTER_SECONDS = 600.0
SWEEP_EVERY_SECONDS = 60.0


class MissingCredential(Exception):
    """The project has no credential for this provider (any more)."""


class ProviderCache:
    def __init__(
        self, settings: Settings, keyring: KeyRing, registry: Registry = PROVIDERS
    ) -> None:
        self._settings = settings
        self._keyring = keyring
        self._registry = registry
        self._providers: dict[tuple[str, int], Provider] = {}
        self._shared: dict[str, Provider] = {}  # those needing no credential (the sandbox)
        self._retired: list[tuple[float, Provider]] = []
        self._used: dict[tuple[str, int], float] = {}  # when a job last looked each one up
        self._swept_at = time.monotonic()
        self._sweeping: asyncio.Task[int] | None = None
        self._lock = asyncio.Lock()

    async def get(self, project_id: str, name: str) -> Provider:
        """The provider ``name`` for the project: :class:`UnknownProvider` if no provider has
        that name, :class:`MissingCredential` if the project has no credential for it."""
        kind = self._registry[name]
        if kind.test_mode:
            if name not in self._shared:
                self._shared[name] = kind.connect(Credential(), self._settings)
            return self._shared[name]
        credential = await _credential(project_id, ProviderName(name))
        if credential is None:
            raise MissingCredential(f"the project has no {name} credential")
        key = (credential.id, credential.version)
        now = time.monotonic()
        async with self._lock:
            if key not in self._providers:
                try:
                    secret = json.loads(self._keyring.decrypt(credential.secret_encrypted))
                except UndecryptableSecret as exc:  # its key was dropped from the key ring
                    raise MissingCredential(
                        f"the project's {name} credential cannot be decrypted with the "
                        "configured encryption keys"
                    ) from exc
                self._retire_older(credential.id)
                self._providers[key] = kind.connect(
                    Credential(secret, credential.details), self._settings
                )
            self._used[key] = now
            provider = self._providers[key]
        if now - self._swept_at >= SWEEP_EVERY_SECONDS and self._sweeping is None:
            self._swept_at = now
            self._sweeping = asyncio.create_task(self.sweep(), name="brik-provider-sweep")
            self._sweeping.add_done_callback(self._swept)
        return provider

    def _swept(self, task: asyncio.Task[int]) -> None:
        self._sweeping = None
        if not task.cancelled() and task.exception() is not None:
            logger.warning("closing idle providers failed", exc_info=task.exception())

    def _retire_older(self, credential_id: str) -> None:
        for key in [k for k in self._providers if k[0] == credential_id]:
            provider = self._providers.pop(key)
            self._used.pop(key, None)
            self._retired.append((time.monotonic(), provider))

    async def sweep(self, now: float | None = None) -> int:
        """Close the providers no job has looked up for :data:`IDLE_AFTER_SECONDS` (a job
        lasts minutes at most, so none is using them), and those replaced long enough ago.
        Returns how many were closed."""
        now = time.monotonic() if now is None else now
        async with self._lock:
            idle = [key for key, used in self._used.items() if now - used > IDLE_AFTER_SECONDS]
            closing = [self._providers.pop(key) for key in idle]
            for key in idle:
                del self._used[key]
        for provider in closing:
            await provider.close()
        return len(closing) + await self.close_retired(now=now)

    async def close_retired(self, *, everything: bool = False, now: float | None = None) -> int:
        """Close providers replaced long enough ago that no job still uses them; how many."""
        now = time.monotonic() if now is None else now
        keep = []
        closed = 0
        for retired_at, provider in self._retired:
            if everything or now - retired_at > RETIRE_AFTER_SECONDS:
                await provider.close()
                closed += 1
            else:
                keep.append((retired_at, provider))
        self._retired = keep
        if everything:
            if self._sweeping is not None:
                self._sweeping.cancel()
            for provider in [*self._providers.values(), *self._shared.values()]:
                await provider.close()
                closed += 1
            self._providers.clear()
            self._shared.clear()
            self._used.clear()
        return closed


class JobProviders:
    """One project's providers for the length of one job: each credential looked up once.

    A job is one batch of deliveries; a credential uploaded meanwhile is picked up by the next
    job, while this one finishes on the credential it started with.
    """

    def __init__(self, cache: ProviderCache, project_id: str) -> None:
        self._cache = cache
        self._project_id = project_id
        self._resolved: dict[str, Provider | MissingCredential | UnknownProvider] = {}

    async def get(self, name: str) -> Provider:
        if name not in self._resolved:
            try:
                self._resolved[name] = await self._cache.get(self._project_id, name)
            except (MissingCredential, UnknownProvider) as exc:
                self._resolved[name] = exc
        resolved = self._resolved[name]
        if isinstance(resolved, MissingCredential | UnknownProvider):
            raise resolved
        return resolved


async def _credential(project_id: str, provider: ProviderName) -> ProviderCredential | None:
    """The project's credential for ``provider``: every read of the lane looks it up, so the
    query is written out (:mod:`controlplane.sql_rows`)."""
    client = ProviderCredential._meta.db
    rows = await client.execute_query_dict(
        _credential_sql(client.capabilities.dialect), [project_id, provider.value]
    )
    return model_of(ProviderCredential, rows[0], "c") if rows else None


@functools.cache
def _credential_sql(dialect: str) -> str:
    return (
        f"SELECT {selected(ProviderCredential, 'c')} "
        f'FROM "{ProviderCredential._meta.db_table}" AS c '
        f'WHERE c."project_id" = {parameter(dialect, 1)} AND c."provider" = {parameter(dialect, 2)}'
    )
