"""Warm provider connections, one per project credential, reused across jobs.

A provider (and its HTTP/2 connections, its provider JWT, its OAuth2 token) is built once per
``(credential id, version)`` and kept. Uploading a new credential bumps its version: the next
job builds a fresh provider while jobs already sending on the old one finish with it; the old
one is closed a while later. Which provider a name means, and how it is built from a credential,
is the registry's (:mod:`workers.providers.registry`); a provider that needs no credential (the
sandbox) is built once and shared by every project.
"""

from __future__ import annotations

import asyncio
import json
import time

from controlplane.crypto import KeyRing
from controlplane.models import ProviderCredential, ProviderName
from controlplane.settings import Settings
from workers.providers.base import Credential, Provider
from workers.providers.registry import PROVIDERS, Registry, UnknownProvider

RETIRE_AFTER_SECONDS = 600.0


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
        self._lock = asyncio.Lock()

    async def get(self, project_id: str, name: str) -> Provider:
        """The provider ``name`` for the project: :class:`UnknownProvider` if no provider has
        that name, :class:`MissingCredential` if the project has no credential for it."""
        kind = self._registry[name]
        if kind.test_mode:
            if name not in self._shared:
                self._shared[name] = kind.connect(Credential(), self._settings)
            return self._shared[name]
        credential = await ProviderCredential.get_or_none(
            project_id=project_id, provider=ProviderName(name)
        )
        if credential is None:
            raise MissingCredential(f"the project has no {name} credential")
        key = (credential.id, credential.version)
        async with self._lock:
            if key not in self._providers:
                self._retire_older(credential.id)
                secret = json.loads(self._keyring.decrypt(credential.secret_encrypted))
                self._providers[key] = kind.connect(
                    Credential(secret, credential.details), self._settings
                )
            return self._providers[key]

    def _retire_older(self, credential_id: str) -> None:
        for key in [k for k in self._providers if k[0] == credential_id]:
            provider = self._providers.pop(key)
            self._retired.append((time.monotonic(), provider))

    async def close_retired(self, *, everything: bool = False) -> None:
        """Close providers replaced long enough ago that no job still uses them."""
        now = time.monotonic()
        keep = []
        for retired_at, provider in self._retired:
            if everything or now - retired_at > RETIRE_AFTER_SECONDS:
                await provider.close()
            else:
                keep.append((retired_at, provider))
        self._retired = keep
        if everything:
            for provider in [*self._providers.values(), *self._shared.values()]:
                await provider.close()
            self._providers.clear()
            self._shared.clear()


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
