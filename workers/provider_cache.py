"""Warm provider connections, one per project credential, reused across jobs.

A provider (and its HTTP/2 connections, its provider JWT, its OAuth2 token) is built once per
``(credential id, version)`` and kept. Uploading a new credential bumps its version: the next
job builds a fresh provider while jobs already sending on the old one finish with it; the old
one is closed a while later.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from controlplane.crypto import KeyRing
from controlplane.models import ProviderCredential, ProviderName
from controlplane.settings import Settings
from workers.providers.apns import ApnsProvider
from workers.providers.base import Provider
from workers.providers.fcm import FcmProvider
from workers.providers.sandbox import SandboxProvider

RETIRE_AFTER_SECONDS = 600.0


class MissingCredential(Exception):
    """The project has no credential for this provider (any more)."""


class ProviderCache:
    def __init__(self, settings: Settings, keyring: KeyRing) -> None:
        self._settings = settings
        self._keyring = keyring
        self._providers: dict[tuple[str, int], tuple[Provider, dict[str, Any]]] = {}
        self._retired: list[tuple[float, Provider]] = []
        self._lock = asyncio.Lock()
        self.sandbox = SandboxProvider()

    async def get(self, project_id: str, name: str) -> tuple[Provider, dict[str, Any]]:
        """The provider for ``name`` (apns, fcm, sandbox) and its credential's details."""
        if name == "sandbox":
            return self.sandbox, {"topic": "sandbox"}
        credential = await ProviderCredential.get_or_none(
            project_id=project_id, provider=ProviderName(name)
        )
        if credential is None:
            raise MissingCredential(f"the project has no {name} credential")
        key = (credential.id, credential.version)
        async with self._lock:
            if key not in self._providers:
                self._retire_older(credential.id)
                self._providers[key] = (self._build(credential), credential.details)
            return self._providers[key]

    def _build(self, credential: ProviderCredential) -> Provider:
        secret = json.loads(self._keyring.decrypt(credential.secret_encrypted))
        details = credential.details
        if credential.provider is ProviderName.APNS:
            return ApnsProvider(
                key=secret["key"], key_id=details["key_id"], team_id=details["team_id"],
                topic=details["topic"], sandbox=details["environment"] == "sandbox",
                settings=self._settings,
                max_in_flight=self._settings.delivery_in_flight_per_connection,
            )  # fmt: skip
        return FcmProvider(service_account=secret["service_account"], settings=self._settings)

    def _retire_older(self, credential_id: str) -> None:
        for key in [k for k in self._providers if k[0] == credential_id]:
            provider, _ = self._providers.pop(key)
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
            for provider, _ in self._providers.values():
                await provider.close()
            self._providers.clear()


class JobProviders:
    """One project's providers for the length of one job: each credential looked up once.

    A job is one batch of deliveries; a credential uploaded meanwhile is picked up by the next
    job, while this one finishes on the credential it started with.
    """

    def __init__(self, cache: ProviderCache, project_id: str) -> None:
        self._cache = cache
        self._project_id = project_id
        self._resolved: dict[str, tuple[Provider, dict[str, Any]] | MissingCredential] = {}

    async def get(self, name: str) -> tuple[Provider, dict[str, Any]]:
        if name not in self._resolved:
            try:
                self._resolved[name] = await self._cache.get(self._project_id, name)
            except MissingCredential as exc:
                self._resolved[name] = exc
        resolved = self._resolved[name]
        if isinstance(resolved, MissingCredential):
            raise resolved
        return resolved
