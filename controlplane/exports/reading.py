"""Loading an export archive into a project of this instance (``brik-cloud import``).

The archive is another instance's (or this one's) ``exp_….tar.gz`` (``archive.py``). Its files
are read line by line straight from the gzip stream and written :data:`BATCH` records at a
time, so an archive of any size loads in bounded memory. What is loaded, into one project and
one mode (the archive's unless told otherwise):

- devices, their push tokens encrypted with *this* instance's key ring and hashed with *its*
  secret key (so registration and ``POST /v1/devices/unregister`` find them), and their tags;
- state entries, through the same write as the API (counted against the organization's plan; a
  plan too small for them stops the import with the error);
- activities and the activity tokens of the devices loaded;
- with ``history``: pushes, deliveries and analytics events, as records. A push that was still
  open in the archive (scheduled, queued or sending) is loaded ``canceled`` with its unsent
  deliveries, so nothing the old instance accepted is sent a second time by this one.

Every record keeps its id, and one already there — by id, or a device by its token — is
skipped, so importing the same archive again (after a stop half way, say) adds only what is
missing. Analytics rollups are not rebuilt: summaries count the events this instance loads.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tortoise.transactions import in_transaction

from controlplane import state
from controlplane.auth.peppers import PepperRing
from controlplane.crypto import KeyRing
from controlplane.errors import PreconditionFailed
from controlplane.exports.archive import FORMAT, MANIFEST
from controlplane.exports.records import SCHEMA_VERSION, Record
from controlplane.models import (
    FINAL_DELIVERY_STATUSES,
    Activity,
    ActivityToken,
    AnalyticsEvent,
    Delivery,
    DeliveryStatus,
    Device,
    DeviceTag,
    KeyMode,
    Project,
    Push,
    PushStatus,
)
from controlplane.plans import limits_for
from controlplane.settings import Settings

BATCH = 1000
OPEN_PUSHES = {PushStatus.SCHEDULED.value, PushStatus.QUEUED.value, PushStatus.SENDING.value}


class ImportRefused(ValueError):
    """The archive cannot be loaded (not an export, a newer schema, a missing file)."""


@dataclass
class ImportReport:
    loaded: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, loaded: int, skipped: int) -> None:
        self.loaded[kind] = self.loaded.get(kind, 0) + loaded
        self.skipped[kind] = self.skipped.get(kind, 0) + skipped


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _lines(tar: tarfile.TarFile, name: str) -> Iterator[list[Record]]:
    """The records of one NDJSON member, :data:`BATCH` at a time."""
    try:
        stream: IO[bytes] | None = tar.extractfile(name)
    except KeyError:
        raise ImportRefused(f"the archive has no {name}") from None
    if stream is None:
        raise ImportRefused(f"{name} in the archive is not a file")
    batch: list[Record] = []
    for line in stream:
        if line.strip():
            batch.append(json.loads(line))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        stream = tar.extractfile(MANIFEST)
    except KeyError:
        raise ImportRefused("not a Brik export: no manifest.json") from None
    manifest: dict[str, Any] = json.load(stream) if stream is not None else {}
    if manifest.get("format") != FORMAT:
        raise ImportRefused("not a Brik export: its manifest names another format")
    if manifest.get("schema") != SCHEMA_VERSION:
        raise ImportRefused(
            f"the archive's schema is {manifest.get('schema')}; this instance reads "
            f"{SCHEMA_VERSION}: import it with a matching version of Brik Cloud"
        )
    return manifest


@dataclass
class _Loader:
    project: Project
    mode: KeyMode
    keyring: KeyRing
    peppers: PepperRing
    settings: Settings
    report: ImportReport = field(default_factory=ImportReport)

    def _encrypt(self, token: str | None) -> str | None:
        return self.keyring.encrypt(token.encode()) if token is not None else None

    async def _new(self, model: Any, batch: list[Record], key: str = "id") -> list[Record]:
        """The records of ``batch`` whose ``key`` names no row yet."""
        ids = [record[key] for record in batch]
        there = set(await model.filter(**{f"{key}__in": ids}).values_list(key, flat=True))
        return [record for record in batch if record[key] not in there]

    async def devices(self, batch: list[Record]) -> None:
        fresh = await self._new(Device, batch)
        hashes = {self.peppers.hash(record["token"]): record for record in fresh}
        taken = {
            str(token_hash)
            for token_hash in await Device.filter(
                project_id=self.project.id, mode=self.mode, token_hash__in=list(hashes)
            ).values_list("token_hash", flat=True)
        }
        rows = [
            Device(
                id=record["id"],
                project_id=self.project.id,
                mode=self.mode,
                platform=record["platform"],
                token_hash=token_hash,
                pepper_id=self.peppers.current.id,
                token_encrypted=self._encrypt(record["token"]),
                token_last_four=record["token"][-4:],
                user_id=record["user_id"],
                tags=record["tags"],
                live_activity_token_encrypted=self._encrypt(record["live_activity_token"]),
                push_to_start_token_encrypted=self._encrypt(record["push_to_start_token"]),
                widget_push_token_encrypted=self._encrypt(record["widget_push_token"]),
                status=record["status"],
                invalid_reason=record["invalid_reason"],
                invalidated_at=_time(record["invalidated_at"]),
                created_at=_time(record["created_at"]),
            )
            for token_hash, record in hashes.items()
            if token_hash not in taken
        ]
        async with in_transaction():
            await Device.bulk_create(rows)
            await DeviceTag.bulk_create(
                [DeviceTag(device_id=row.id, tag=tag) for row in rows for tag in row.tags]
            )
        self.report.count("devices", len(rows), len(batch) - len(rows))

    async def activities(self, batch: list[Record]) -> None:
        fresh = await self._new(Activity, batch)
        rows = [
            Activity(
                id=r["id"],
                project_id=self.project.id,
                mode=self.mode,
                activity_type=r["activity_type"],
                attributes=r["attributes"],
                content_state=r["content_state"],
                status=r["status"],
                started_by=r["started_by"],
                user_id=r["user_id"],
                channel_id=r["channel_id"],
                channel_closed_at=_time(r["channel_closed_at"]),
                stale_date=_time(r["stale_date"]),
                dismissal_date=_time(r["dismissal_date"]),
                relevance_score=r["relevance_score"],
                last_timestamp=r["last_timestamp"],
                version=r["version"],
                end_reason=r["end_reason"],
                ended_at=_time(r["ended_at"]),
                created_at=_time(r["created_at"]),
            )
            for r in fresh
        ]
        await Activity.bulk_create(rows)
        self.report.count("activities", len(rows), len(batch) - len(rows))

    async def activity_tokens(self, batch: list[Record]) -> None:
        devices = set(
            await Device.filter(
                project_id=self.project.id, id__in=[r["device_id"] for r in batch]
            ).values_list("id", flat=True)
        )
        activities = set(
            await Activity.filter(
                project_id=self.project.id, id__in=[r["activity_id"] for r in batch]
            ).values_list("id", flat=True)
        )
        pairs = set(
            await ActivityToken.filter(activity_id__in=list(activities)).values_list(
                "activity_id", "device_id"
            )
        )
        rows = [
            ActivityToken(
                activity_id=r["activity_id"],
                device_id=r["device_id"],
                platform=r["platform"],
                token_encrypted=self._encrypt(r["token"]),
                token_last_four=r["token"][-4:] if r["token"] else None,
                status=r["status"],
                invalid_reason=r["invalid_reason"],
                created_at=_time(r["created_at"]),
            )
            for r in batch
            if r["device_id"] in devices
            and r["activity_id"] in activities
            and (r["activity_id"], r["device_id"]) not in pairs
        ]
        await ActivityToken.bulk_create(rows)
        self.report.count("activity_tokens", len(rows), len(batch) - len(rows))

    async def state(self, batch: list[Record]) -> None:
        await self.project.fetch_related("organization")
        space = state.Namespace(self.project.id, self.project.organization.id, self.mode)
        limit = limits_for(self.project.organization.plan, self.settings).state_bytes
        create_only = state.Conditions(if_none_match=("*",))
        loaded = 0
        for r in batch:
            try:
                async with in_transaction():
                    await state.write(
                        space, r["key"], r["value"], public=r["public"],
                        expires_at=_time(r["expires_at"]), conditions=create_only, limit=limit,
                        now=datetime.now(UTC),
                    )  # fmt: skip
                loaded += 1
            except PreconditionFailed:
                pass  # there already
        self.report.count("state", loaded, len(batch) - loaded)

    async def pushes(self, batch: list[Record]) -> None:
        fresh = await self._new(Push, batch)
        activities = set(
            await Activity.filter(
                project_id=self.project.id,
                id__in=[r["activity_id"] for r in fresh if r["activity_id"]],
            ).values_list("id", flat=True)
        )
        rows = [
            Push(
                id=r["id"],
                project_id=self.project.id,
                mode=self.mode,
                kind=r["kind"],
                content=r["content"],
                target=r["target"],
                status=PushStatus.CANCELED if r["status"] in OPEN_PUSHES else r["status"],
                collapse_id=r["collapse_id"],
                activity_id=r["activity_id"] if r["activity_id"] in activities else None,
                send_at=_time(r["send_at"]),
                recipients=r["recipients"],
                completed_at=_time(r["completed_at"]) or _time(r["canceled_at"]),
                canceled_at=_time(r["canceled_at"]),
                created_at=_time(r["created_at"]),
            )
            for r in fresh
        ]
        await Push.bulk_create(rows)
        self.report.count("pushes", len(rows), len(batch) - len(rows))

    async def deliveries(self, batch: list[Record]) -> None:
        fresh = await self._new(Delivery, batch)
        pushes = set(
            await Push.filter(
                project_id=self.project.id, id__in=[r["push_id"] for r in fresh]
            ).values_list("id", flat=True)
        )
        devices = set(
            await Device.filter(
                project_id=self.project.id, id__in=[r["device_id"] for r in fresh if r["device_id"]]
            ).values_list("id", flat=True)
        )
        final = {status.value for status in FINAL_DELIVERY_STATUSES}
        rows = [
            Delivery(
                id=r["id"],
                push_id=r["push_id"],
                device_id=r["device_id"] if r["device_id"] in devices else None,
                channel_id=r["channel_id"],
                provider=r["provider"],
                platform=r["platform"],
                apns_id=r["apns_id"],
                status=r["status"] if r["status"] in final else DeliveryStatus.CANCELED,
                reason=r["reason"],
                attempts=r["attempts"],
                sent_at=_time(r["sent_at"]),
                completed_at=_time(r["completed_at"]),
                created_at=_time(r["created_at"]),
            )
            for r in fresh
            if r["push_id"] in pushes
        ]
        await Delivery.bulk_create(rows)
        self.report.count("deliveries", len(rows), len(batch) - len(rows))

    async def events(self, batch: list[Record]) -> None:
        names = (
            "name", "device_id", "user_id", "platform", "app_version", "os_version",
            "device_model", "locale", "country", "widget", "action", "activity_id", "push_id",
            "error_code", "error_message", "properties",
        )  # fmt: skip
        there = set(
            await AnalyticsEvent.filter(
                project_id=self.project.id, mode=self.mode,
                client_id__in=[r["id"] for r in batch],
            ).values_list("client_id", flat=True)
        )  # fmt: skip
        rows = [
            AnalyticsEvent(
                project_id=self.project.id,
                mode=self.mode,
                client_id=r["id"],
                occurred_at=_time(r["timestamp"]),
                received_at=_time(r["received_at"]),
                **{name: r[name] for name in names},
            )
            for r in batch
            if r["id"] not in there
        ]
        await AnalyticsEvent.bulk_create(rows, ignore_conflicts=True)
        self.report.count("events", len(rows), len(batch) - len(rows))


async def import_archive(
    path: Path,
    project_id: str,
    *,
    keyring: KeyRing,
    peppers: PepperRing,
    settings: Settings,
    mode: KeyMode | None = None,
    history: bool = True,
) -> ImportReport:
    """Load the archive at ``path`` into project ``project_id`` (see the module docstring)."""
    project = await Project.get_or_none(id=project_id)
    if project is None:
        raise ImportRefused(f"no project {project_id} on this instance")
    try:
        with tarfile.open(path, "r:gz") as tar:
            return await _load(tar, project, keyring, peppers, settings, mode, history)
    except (OSError, EOFError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise ImportRefused(f"not a readable export archive: {exc}") from None


async def _load(
    tar: tarfile.TarFile, project: Project, keyring: KeyRing, peppers: PepperRing,
    settings: Settings, mode: KeyMode | None, history: bool,
) -> ImportReport:  # fmt: skip
    manifest = read_manifest(tar)
    loader = _Loader(project, mode or KeyMode(manifest["mode"]), keyring, peppers, settings)
    steps: list[tuple[str, Callable[[list[Record]], Any]]] = [
        ("devices", loader.devices), ("activities", loader.activities),
        ("activity_tokens", loader.activity_tokens), ("state", loader.state),
    ]  # fmt: skip
    if history:
        steps += [("pushes", loader.pushes), ("deliveries", loader.deliveries),
                  ("events", loader.events)]  # fmt: skip
    for name, load in steps:
        for batch in _lines(tar, f"{name}.ndjson"):
            await load(batch)
    return loader.report
