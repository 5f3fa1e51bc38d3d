"""A secret-key rotation's stages, as the settings each stage's processes run with.

The stages are the steps of docs/operations.md, "The secret key": ``before`` (the old key
alone), ``added`` (the new key verifies, the old one still writes), ``promoted`` (the new key
writes, the old one verifies) and ``dropped`` (the new key alone). Every stage shares one
encryption key, as a real rotation of the secret key leaves that ring alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import httpx
from cryptography.fernet import Fernet
from starlette.applications import Starlette

from controlplane.app import create_app
from controlplane.auth.peppers import PepperRing
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.servers import serving

OLD_SECRET_KEY = TEST_SECRET_KEY
NEW_SECRET_KEY = "the-new-secret-key-" + "n" * 40
ENCRYPTION_KEY = Fernet.generate_key().decode()

Stage = Literal["before", "added", "promoted", "dropped"]
STAGES: dict[Stage, dict[str, Any]] = {
    "before": {"secret_key": OLD_SECRET_KEY, "previous_secret_keys": []},
    "added": {"secret_key": OLD_SECRET_KEY, "previous_secret_keys": [NEW_SECRET_KEY]},
    "promoted": {"secret_key": NEW_SECRET_KEY, "previous_secret_keys": [OLD_SECRET_KEY]},
    "dropped": {"secret_key": NEW_SECRET_KEY, "previous_secret_keys": []},
}
OLD = PepperRing([OLD_SECRET_KEY])
NEW = PepperRing([NEW_SECRET_KEY])


def stage_settings(
    make_settings: Callable[..., Settings], stage: Stage, **overrides: Any
) -> Settings:
    return make_settings(**STAGES[stage], encryption_keys=[ENCRYPTION_KEY], **overrides)


@contextlib.asynccontextmanager
async def api_at(
    make_settings: Callable[..., Settings], stage: Stage, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An API process of ``stage``, served over HTTP; yields a client of it."""
    app: Starlette = create_app(stage_settings(make_settings, stage, **overrides))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
