"""The ``brik-cloud`` command.

Commands that work on the database (``migrate``, ``bootstrap``, ``rotate-keys``,
``rotate-secret-key``, ``set-plan``) run on ``BRIK_DATABASE_URL`` — or on a ``brik-cloud dev``
install: the one ``--dir`` names, else ``./.brik`` when it holds a dev database and
``BRIK_DATABASE_URL`` is not set. Every command that needs the database checks first that it
answers: one that cannot be reached is one line naming it, not a driver's traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click
import uvicorn
from tortoise.transactions import in_transaction

from controlplane import db
from controlplane.logs import configure_logging
from controlplane.models import KeyMode, Plan
from controlplane.serving import QuietSignalServer, serve_until_signalled
from controlplane.settings import Settings

if TYPE_CHECKING:
    from controlplane.auth.peppers import PepperRing
    from controlplane.bootstrap import BootstrapResult
    from controlplane.crypto import KeyRing

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        raise click.ClickException(f"Invalid BRIK_* configuration:\n{exc}") from None


def _dev_install(settings: Settings, workdir: Path | None) -> Path | None:
    """The ``brik-cloud dev`` install a database command works on (``--dir``, or ./.brik when
    it holds one and BRIK_DATABASE_URL is not set); None: BRIK_DATABASE_URL's database."""
    from controlplane.dev import DEFAULT_DEV_DIR, holds_dev_database

    if workdir is None:
        if "database_url" in settings.model_fields_set or not holds_dev_database(DEFAULT_DEV_DIR):
            return None
        return DEFAULT_DEV_DIR
    if not holds_dev_database(workdir):
        raise click.ClickException(
            f"{workdir} holds no brik-cloud dev database: run brik-cloud dev there first, "
            "or leave out --dir to use BRIK_DATABASE_URL."
        )
    return workdir


def _database_settings(workdir: Path | None) -> Settings:
    """Settings for a command on the database: a dev install's (``--dir``, or ./.brik) or env."""
    from controlplane.dev import dev_settings

    settings = _settings()
    install = _dev_install(settings, workdir)
    return settings if install is None else dev_settings(install, settings)


def _on_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` once the database has answered; an unreachable one is a one-line error."""

    async def go() -> T:
        await db.check_reachable(settings.database_url)
        return await work()

    try:
        return asyncio.run(go())
    except db.DatabaseUnreachable as exc:
        raise click.ClickException(str(exc)) from None


def _check_database(settings: Settings) -> None:
    async def nothing() -> None:
        return None

    _on_database(settings, nothing)


dir_option = click.option(
    "--dir",
    "workdir",
    default=None,
    type=click.Path(path_type=Path, file_okay=False),
    help="Work on the brik-cloud dev install in this directory. Default: ./.brik when it holds "
    "one and BRIK_DATABASE_URL is not set, else BRIK_DATABASE_URL.",
)


def _secret_key(settings: Settings) -> str:
    try:
        return settings.require_secret_key()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _refuse_log_mail(settings: Settings) -> None:
    """Only ``dev`` writes mail to its log: invitation links are bearer tokens."""
    from controlplane.mail import LOG_SENDER

    if settings.mail_sender == LOG_SENDER:
        raise click.ClickException(
            "BRIK_MAIL_SENDER=log writes every email, invitation links included, into the log; "
            "only brik-cloud dev uses it. Set BRIK_MAIL_SENDER=smtp (with BRIK_SMTP_URL) or a "
            "sender class, or leave it unset (nothing is mailed)."
        )


def _peppers(settings: Settings) -> PepperRing:
    """The secret key and the previous ones, or one line saying which is wrong."""
    from controlplane.auth.peppers import PepperRing

    try:
        return PepperRing.from_settings(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _keyring(settings: Settings) -> KeyRing:
    from controlplane.crypto import KeyRing, KeyRingError

    try:
        return KeyRing([key.get_secret_value() for key in settings.encryption_keys])
    except KeyRingError as exc:
        raise click.ClickException(str(exc)) from None


def _require_production_secrets(settings: Settings) -> None:
    """``serve`` and ``worker`` start only with usable secret keys and encryption key ring."""
    _peppers(settings)
    _keyring(settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Brik Cloud: self-hosted push and backend platform for mobile apps."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--dir", "workdir", default=".brik", show_default=True, type=click.Path(path_type=Path)
)
def dev(host: str, port: int, workdir: Path) -> None:
    """Run everything in one process on SQLite and an embedded Redis, with test keys."""
    from controlplane.dev import DevPortBusy, run_dev
    from controlplane.embedded_redis import EmbeddedRedisUnavailable

    configure_logging(_settings().log_level)
    try:
        run_dev(workdir, host, port)
    except (DevPortBusy, EmbeddedRedisUnavailable) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the API (production: PostgreSQL and Redis from BRIK_* settings)."""
    from controlplane.app import create_app

    settings = _settings()
    _require_production_secrets(settings)
    _refuse_log_mail(settings)
    configure_logging(settings.log_level)
    _check_database(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        proxy_headers=True,
        lifespan="on",
    )
    asyncio.run(serve_until_signalled(QuietSignalServer(config)))


@main.command()
def worker() -> None:
    """Run a push worker (arq) against BRIK_REDIS_URL and BRIK_DATABASE_URL."""
    from workers.worker import run_worker

    settings = _settings()
    _require_production_secrets(settings)
    configure_logging(settings.log_level)
    _check_database(settings)
    asyncio.run(run_worker(settings))


@main.command()
@dir_option
def migrate(workdir: Path | None) -> None:
    """Apply pending database migrations."""
    settings = _database_settings(workdir)
    configure_logging(settings.log_level)
    _on_database(settings, lambda: db.migrate(settings.database_url))
    click.echo("Database is up to date.")


@main.command()
@click.option("--name", default=None, help="Suffix of the new migration's file name.")
def makemigrations(name: str | None) -> None:
    """Write migrations for model changes (for Brik Cloud developers)."""
    paths = asyncio.run(db.make_migrations("sqlite://:memory:", name))
    for path in paths:
        click.echo(f"Created {path}")
    if not paths:
        click.echo("No changes detected.")


@main.command("rotate-keys")
@dir_option
def rotate_keys(workdir: Path | None) -> None:
    """Re-encrypt every stored secret under the first key of BRIK_ENCRYPTION_KEYS."""
    from controlplane.rotation import rotate_all

    settings = _database_settings(workdir)
    configure_logging(settings.log_level)
    keyring = _keyring(settings)

    async def go() -> dict[str, object]:
        async with db.database(settings.database_url):
            return (await rotate_all(keyring)).as_dict()

    report = _on_database(settings, go)
    click.echo(json.dumps(report))
    if report["undecryptable"]:
        raise click.ClickException(
            "Some secrets could not be decrypted by any key in BRIK_ENCRYPTION_KEYS "
            "(listed above): put the key they were written with back in the ring."
        )


@main.command("rotate-secret-key")
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: report what still rests on a previous key, and exit 1 unless nothing "
    "does (BRIK_PREVIOUS_SECRET_KEYS may then be emptied).",
)
@dir_option
def rotate_secret_key(workdir: Path | None, check: bool) -> None:
    """Re-hash every device token under BRIK_SECRET_KEY (tokens are read with
    BRIK_ENCRYPTION_KEYS), then report what still rests on BRIK_PREVIOUS_SECRET_KEYS.

    Safe to run while traffic flows, and again: see controlplane/rehashing.py.
    """
    from controlplane.rehashing import rehash_devices, waiting_on_previous_keys

    settings = _database_settings(workdir)
    configure_logging(settings.log_level)
    peppers = _peppers(settings)
    keyring = None if check else _keyring(settings)

    async def go() -> dict[str, object]:
        async with db.database(settings.database_url):
            report: dict[str, object] = {
                "current_key_id": peppers.current.id,
                "previous_key_ids": [pepper.id for pepper in peppers.peppers[1:]],
            }
            if keyring is not None:
                report["devices"] = (await rehash_devices(peppers, keyring)).as_dict()
            waiting = await waiting_on_previous_keys(peppers)
            report["waiting"] = {kind: rows.as_dict() for kind, rows in waiting.items()}
            report["safe_to_drop_previous_keys"] = not any(rows.count for rows in waiting.values())
            return report

    report = _on_database(settings, go)
    click.echo(json.dumps(report))
    devices = report.get("devices")
    if isinstance(devices, dict) and (devices["undecryptable"] or devices["conflicts"]):
        raise click.ClickException(
            "Some devices were not re-hashed (listed above): an undecryptable token needs the "
            "encryption key it was written with back in BRIK_ENCRYPTION_KEYS; a conflict is two "
            "devices of one token: delete one (DELETE /v1/devices/{id}), then run this again."
        )
    if not report["safe_to_drop_previous_keys"]:
        click.echo(
            'Still resting on a key other than BRIK_SECRET_KEY ("waiting" above): keep the '
            "previous keys in BRIK_PREVIOUS_SECRET_KEYS until nothing is, or until what is left "
            "may stop working.",
            err=True,
        )
        if check:
            sys.exit(1)


@main.command("import")
@click.argument("archive", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--project", "project_id", required=True, help="The project to load it into (prj_…).")
@click.option(
    "--mode",
    type=click.Choice([mode.value for mode in KeyMode]),
    default=None,
    help="Load into this mode's data. Default: the mode the archive was exported from.",
)
@click.option(
    "--history/--no-history",
    default=True,
    show_default=True,
    help="Also load pushes, deliveries and analytics events.",
)
@dir_option
def import_(
    archive: Path, project_id: str, mode: str | None, history: bool, workdir: Path | None
) -> None:
    """Load a project export archive (GET /v1/exports/{id}/download) into a project here.

    Push tokens are re-encrypted with this instance's keys; records already here are skipped,
    so running it again is safe (docs/export.md).
    """
    from controlplane.exports.reading import ImportRefused, import_archive

    settings = _database_settings(workdir)
    configure_logging(settings.log_level)
    peppers = _peppers(settings)
    keyring = _keyring(settings)

    async def go() -> dict[str, object]:
        async with db.database(settings.database_url):
            report = await import_archive(
                archive, project_id, keyring=keyring, peppers=peppers, settings=settings,
                mode=KeyMode(mode) if mode else None, history=history,
            )  # fmt: skip
            return {"project_id": project_id, "loaded": report.loaded, "skipped": report.skipped}

    try:
        click.echo(json.dumps(_on_database(settings, go)))
    except ImportRefused as exc:
        raise click.ClickException(f"{archive}: {exc}") from None


@main.command()
@click.option("--admin-email", default="admin@brik.local", show_default=True)
@click.option(
    "--admin-password",
    envvar="BRIK_BOOTSTRAP_ADMIN_PASSWORD",
    default=None,
    help="Password for a new admin (env BRIK_BOOTSTRAP_ADMIN_PASSWORD); generated if omitted.",
)
@click.option("--org", "org_name", default="Default organization", show_default=True)
@click.option("--project", "project_name", default="Default project", show_default=True)
@click.option("--rotate-keys", is_flag=True, help="Revoke the bootstrap keys and issue new ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@dir_option
def bootstrap(
    workdir: Path | None,
    admin_email: str,
    admin_password: str | None,
    org_name: str,
    project_name: str,
    rotate_keys: bool,
    as_json: bool,
) -> None:
    """Create or find an admin, organization, project and its test and live keys.

    --rotate-keys revokes the old keys, and running API processes hear of it through
    BRIK_REDIS_URL at once: without that Redis nothing is rotated (except on a dev install,
    whose embedded Redis lives only inside brik-cloud dev: restart a running one).
    """
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from controlplane.bootstrap import bootstrap as run_bootstrap
    from controlplane.core.connections import CONNECT_TIMEOUT_SECONDS, SOCKET_TIMEOUT_SECONDS

    on_dev_install = _dev_install(_settings(), workdir) is not None
    settings = _database_settings(workdir)
    pepper = _secret_key(settings)

    async def go() -> BootstrapResult:
        await db.migrate(settings.database_url)
        redis = None
        if rotate_keys and not on_dev_install:
            redis = Redis.from_url(
                settings.redis_url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                socket_timeout=SOCKET_TIMEOUT_SECONDS,
            )  # fmt: skip
        try:
            async with db.database(settings.database_url):
                return await run_bootstrap(
                    pepper=pepper,
                    admin_email=admin_email,
                    admin_password=admin_password,
                    org_name=org_name,
                    project_name=project_name,
                    modes=(KeyMode.TEST, KeyMode.LIVE),
                    rotate_keys=rotate_keys,
                    redis=redis,
                )
        finally:
            if redis is not None:
                await redis.aclose()

    try:
        result = _on_database(settings, go)
    except RedisError as exc:
        raise click.ClickException(
            f"Cannot reach Redis at {db.display_url(settings.redis_url)} "
            f"({type(exc).__name__}: {exc}): nothing was rotated. Running API processes hear of "
            "revoked keys through it (BRIK_REDIS_URL); try again once it answers."
        ) from None
    data = result.as_dict()
    if as_json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for field, value in data.items():
            if field != "keys":
                click.echo(f"{field:<16} {value}")
        keys = data["keys"]
        assert isinstance(keys, dict)
        for name, key in keys.items():
            shown = key or "(exists; shown only at creation: use --rotate-keys)"
            click.echo(f"{name:<16} {shown}")
    _say_who_must_hear(result, on_dev_install)


def _say_who_must_hear(result: BootstrapResult, on_dev_install: bool) -> None:
    """After the keys are printed, on stderr: what running processes may still accept."""
    from controlplane.auth.api_key_cache import MAX_ENTRY_AGE_SECONDS

    if not result.revoked:
        return
    if on_dev_install:
        click.echo(
            "The old keys are revoked in the dev database. A brik-cloud dev running on it may "
            f"accept them for up to {MAX_ENTRY_AGE_SECONDS:g} seconds: restart it to refuse "
            "them at once.",
            err=True,
        )
    elif not result.announced:
        raise click.ClickException(
            "The keys were rotated (the new ones are above), but Redis went away before every "
            f"API process heard of it: they may accept the old keys for up to "
            f"{MAX_ENTRY_AGE_SECONDS:g} seconds."
        )


@main.command("set-plan")
@dir_option
@click.argument("organization_id")
@click.argument("plan", type=click.Choice([*(plan.value for plan in Plan), "billing"]))
def set_plan(workdir: Path | None, organization_id: str, plan: str) -> None:
    """Set an organization's plan (it then stays until changed here), or with 'billing' hand it
    back to its Stripe subscription. For self-hosters who do not bill, and for contracts."""
    from controlplane.audit import Actor
    from controlplane.billing import set_plan_by_admin
    from controlplane.models import Organization

    settings = _database_settings(workdir)
    configure_logging(settings.log_level)

    async def go() -> str:
        async with db.database(settings.database_url), in_transaction():
            organization = await Organization.select_for_update().get_or_none(id=organization_id)
            if organization is None:
                raise click.ClickException(f"No such organization: {organization_id!r}")
            chosen = None if plan == "billing" else Plan(plan)
            actor = Actor("cli", None, "brik-cloud set-plan")
            now_in_force = await set_plan_by_admin(organization, chosen, settings, actor)
            return f"{organization.id}: plan {now_in_force} (set by {organization.plan_source})"

    click.echo(_on_database(settings, go))
