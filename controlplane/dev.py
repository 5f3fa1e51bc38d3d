"""``brik-cloud dev``: the whole product in one process on an embedded default.

SQLite under ``./.brik/``, a private Redis, the API and an in-process worker. The first run
creates an admin, an organization, a project and test-mode keys and writes them to
``./.brik/dev.json``; later runs reuse them while each key it names is still active (one
revoked or expired meanwhile: fresh test keys are issued and dev.json rewritten), and show the
admin password only while it still signs in (changed in the dashboard: dev says so instead).
The other ``brik-cloud`` commands find that database too (:func:`dev_settings`), so
``set-plan`` or ``bootstrap`` work on a dev install.

The port is bound before anything else happens and the bound socket is handed to uvicorn: a
port that is taken (often by another ``dev``) is one line suggesting ``--port``, and nothing is
written — a ``dev.json`` naming a port that another instance answers on would hold keys that
instance rejects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.fernet import Fernet
from pydantic import SecretStr

from controlplane import db
from controlplane.app import create_app
from controlplane.auth.keys import hash_key
from controlplane.auth.passwords import verify_password_async
from controlplane.bootstrap import bootstrap
from controlplane.embedded_redis import EmbeddedRedis
from controlplane.mail import LOG_SENDER
from controlplane.models import ApiKey, KeyMode, Project, User
from controlplane.serving import (
    QuietSignalServer,
    collect_garbage_less_often,
    stop_on_signals,
    wait_until_started,
)
from controlplane.settings import Settings
from workers.worker import run_worker

DEV_ADMIN_EMAIL = "admin@brik.local"
DEFAULT_DEV_DIR = Path(".brik")
DEV_DATABASE_FILE = "brik.sqlite3"
WORKER_STOP_TIMEOUT_SECONDS = 3.0


class DevPortBusy(RuntimeError):
    """The address ``dev`` was asked to listen on is taken."""


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for uvicorn to serve on; DevPortBusy if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a port left in TIME_WAIT by a previous run is free, a listener is not.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DevPortBusy(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}): another program, perhaps "
            f"another brik-cloud dev, is using it. Choose another port with --port, "
            f"e.g. brik-cloud dev --port {port + 1 if port else 8001}."
        ) from None
    return sock


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only: these files hold keys and passwords."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    tmp.replace(path)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _dev_secrets(workdir: Path) -> dict[str, str]:
    """The secret key and encryption key of this dev install, made once and kept."""
    path = workdir / "secrets.json"
    stored = _load_json(path)
    if stored and {"secret_key", "encryption_key"} <= stored.keys():
        return {
            "secret_key": str(stored["secret_key"]),
            "encryption_key": str(stored["encryption_key"]),
        }
    fresh = {
        "secret_key": secrets.token_urlsafe(48),
        "encryption_key": Fernet.generate_key().decode(),
    }
    _write_private(path, fresh)
    return fresh


def holds_dev_database(workdir: Path) -> bool:
    """Whether ``workdir`` is a ``brik-cloud dev`` directory with its database."""
    return (workdir / DEV_DATABASE_FILE).is_file()


def dev_settings(workdir: Path, base: Settings, **overrides: object) -> Settings:
    """``base`` pointed at the dev install in ``workdir``: its SQLite file and its own secrets.

    The secrets come with the database: its keys are peppered and its credentials encrypted
    with them, so another secret key or key ring would make its data unreadable.
    """
    workdir = workdir.resolve()
    dev_secrets = _dev_secrets(workdir)
    return base.model_copy(
        update={
            "database_url": f"sqlite://{workdir / DEV_DATABASE_FILE}",
            "secret_key": SecretStr(dev_secrets["secret_key"]),
            "previous_secret_keys": [],
            "encryption_keys": [SecretStr(dev_secrets["encryption_key"])],
            # Archives next to the database, unless BRIK_EXPORT_DIR says otherwise.
            **(
                {} if "export_dir" in base.model_fields_set else {"export_dir": workdir / "exports"}
            ),
            **overrides,
        }
    )


async def _still_active(key: object, project_id: str, pepper: str) -> bool:
    """Whether ``key`` (a plaintext from dev.json) is an active key of the project."""
    if not isinstance(key, str):
        return False
    row = await ApiKey.get_or_none(
        key_hash=hash_key(key, pepper), project_id=project_id, revoked_at__isnull=True
    )
    return row is not None and (row.expires_at is None or row.expires_at > datetime.now(UTC))


async def _existing_dev_data(dev_json: Path, pepper: str) -> dict[str, Any] | None:
    """dev.json's content if the database still holds its project and every key it names is
    still active there (a revoked one must not be shown again as if it worked)."""
    data = _load_json(dev_json)
    if not data or not isinstance(data.get("keys"), dict) or not data["keys"]:
        return None
    project_id = str(data.get("project_id"))
    if not await Project.exists(id=project_id, organization_id=str(data.get("org_id"))):
        return None
    for key in data["keys"].values():
        if not await _still_active(key, project_id, pepper):
            return None
    return data


async def _signs_in(email: object, password: object) -> bool:
    if not isinstance(email, str) or not isinstance(password, str):
        return False
    user = await User.get_or_none(email=email)
    return user is not None and await verify_password_async(user.password_hash, password)


async def _forget_a_changed_password(data: dict[str, Any]) -> None:
    """dev.json keeps the admin password only while it signs in: once changed (it is the
    admin's own now) it is dropped, and the banner says it was changed."""
    if data.get("admin_password") and not await _signs_in(
        data.get("admin_email"), data["admin_password"]
    ):
        data["admin_password"] = None
        data["admin_password_changed"] = True


async def _ensure_dev_data(settings: Settings, api_url: str, dev_json: Path) -> dict[str, Any]:
    existing = await _existing_dev_data(dev_json, settings.require_secret_key())
    if existing is not None:
        existing["api_url"] = api_url
        existing["dashboard_url"] = f"{api_url}/dashboard/"
        await _forget_a_changed_password(existing)
        _write_private(dev_json, existing)
        return existing
    result = await bootstrap(
        pepper=settings.require_secret_key(),
        admin_email=DEV_ADMIN_EMAIL,
        modes=(KeyMode.TEST,),
        rotate_keys=True,
    )
    previous = _load_json(dev_json) or {}
    data: dict[str, Any] = {
        "api_url": api_url,
        "dashboard_url": f"{api_url}/dashboard/",
        "admin_email": result.admin_email,
        # An admin that survived a lost dev.json keeps its password; we cannot show it again.
        "admin_password": result.admin_password or previous.get("admin_password"),
        "org_id": result.org_id,
        "project_id": result.project_id,
        "keys": result.keys,
    }
    if result.admin_password is None:
        data["admin_password_changed"] = previous.get("admin_password_changed", False)
        await _forget_a_changed_password(data)
    _write_private(dev_json, data)
    return data


def _shown_password(data: dict[str, Any]) -> str:
    if data.get("admin_password"):
        return str(data["admin_password"])
    if data.get("admin_password_changed"):
        return "(changed since dev.json was written: your own, not shown)"
    return "(unchanged)"


def _banner(data: dict[str, Any], dev_json: Path) -> str:
    lines = [
        "",
        "  Brik Cloud is running (dev mode: SQLite, embedded Redis, in-process worker)",
        "",
        f"  API        {data['api_url']}",
        f"  Dashboard  {data['dashboard_url']}",
        f"  Admin      {data['admin_email']} / {_shown_password(data)}",
    ]
    lines += [f"  {name:<18} {key}" for name, key in data["keys"].items()]
    lines += ["", f"  Saved to {dev_json}. Press Ctrl-C to stop.", ""]
    return "\n".join(lines)


async def _serve(settings: Settings, host: str, listener: socket.socket, workdir: Path) -> None:
    dev_json = workdir / "dev.json"
    port = listener.getsockname()[1]
    api_url = f"http://{host}:{port}"
    await db.migrate(settings.database_url)
    async with db.database(settings.database_url):
        data = await _ensure_dev_data(settings, api_url, dev_json)
        config = uvicorn.Config(
            create_app(settings), host=host, port=port, log_config=None, lifespan="on"
        )
        # We own SIGINT/SIGTERM: uvicorn's own capture re-raises them after serving, which
        # would interrupt the worker's clean shutdown below.
        server = QuietSignalServer(config)
        collect_garbage_less_often()
        stop_on_signals(server)
        worker = asyncio.create_task(run_worker(settings, handle_signals=False))
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        if await wait_until_started(server, serving):
            print(_banner(data, dev_json), flush=True)
        try:
            await serving
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(worker, WORKER_STOP_TIMEOUT_SECONDS)


def run_dev(workdir: Path, host: str, port: int) -> None:
    listener = bind_listening_socket(host, port)
    try:
        _run_dev(workdir, host, listener)
    finally:
        listener.close()


def _run_dev(workdir: Path, host: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    with EmbeddedRedis(workdir) as redis:
        base = Settings()
        settings = dev_settings(
            workdir, base, redis_url=redis.url, public_base_url=f"http://{host}:{port}",
            # Only dev writes mail, invitation links included, to its log (controlplane/mail.py).
            mail_sender=base.mail_sender or LOG_SENDER,
        )  # fmt: skip
        asyncio.run(_serve(settings, host, listener, workdir))
