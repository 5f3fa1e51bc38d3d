"""``/v1/exports``: a whole project's data, in one mode, as an archive to download.

A secret key with the ``export`` scope asks (``POST``: 202, ``queued``); a worker builds the
archive (``workers/tasks/exports.py``); ``GET /v1/exports/{export_id}`` then shows
``succeeded`` and a signed ``download_url`` valid until the archive is deleted
(``BRIK_EXPORT_LIFETIME_HOURS``, 24 by default). Among members acting through the dashboard's
gateway only owners hold ``export`` (an archive holds every push token of the project). One
export per project and mode is built at a time (409 ``export_in_progress`` names it).

The download itself (``GET /v1/exports/{export_id}/download``) takes no API key: the link's
signature is the permission (``controlplane/exports/jobs.py``), so it can be handed to
``curl`` or a browser. An export id is looked up by each handler — through the key's tenant,
or by the signed link — which is why ``export_id`` is a path *name* (``PATH_NAMES``) rather
than a row the router loads for the caller. Creating and downloading are audited.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.responses import FileResponse

from controlplane import audit
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Auth, Call, Operation, request_origin
from controlplane.core.queue import enqueue_export
from controlplane.errors import Conflict, NotFound, PermissionDenied
from controlplane.exports import jobs
from controlplane.models import Export as ExportRow
from controlplane.models import ExportStatus, KeyMode
from controlplane.models.ids import is_well_formed_id
from controlplane.tenancy import missing

logger = logging.getLogger("brik.exports")


class ExportOut(BaseModel):
    object: Literal["export"] = "export"
    id: str
    mode: KeyMode
    status: ExportStatus = Field(
        description="queued, running, succeeded (the archive can be downloaded), failed, or "
        "expired (the archive was deleted)."
    )
    attempts: int = Field(description="Builds started (a worker stopped mid-build: another).")
    counts: dict[str, int] = Field(description="Records per file of the archive, once built.")
    size_bytes: int | None
    sha256: str | None = Field(description="Of the archive, to check a download.")
    error: str | None = Field(description="Why the last build failed.")
    download_url: str | None = Field(
        description="Signed link to the archive (no API key needed: keep it secret), valid "
        "until `expires_at`; null unless succeeded."
    )
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime | None = Field(description="When the archive is deleted.")


class DownloadQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires: int = Field(ge=0, le=2**40, description="From the download link.")
    signature: str = Field(max_length=128, description="From the download link.")


def _out(call: Call, row: ExportRow) -> ExportOut:
    return ExportOut(
        id=row.id, mode=row.mode, status=row.status, attempts=row.attempts,
        counts=dict(row.counts), size_bytes=row.size_bytes, sha256=row.sha256, error=row.error,
        download_url=jobs.download_url(row, call.settings), created_at=row.created_at,
        started_at=row.started_at, completed_at=row.completed_at, expires_at=row.expires_at,
    )  # fmt: skip


async def _own(call: Call) -> ExportRow:
    export_id = call.path_name("export_id")
    row = None
    if is_well_formed_id(export_id):
        row = await call.tenant.query(ExportRow).get_or_none(id=export_id)
    if row is None:
        raise missing("export", export_id, "export_id")
    return row


async def create_export(call: Call) -> ExportOut:
    project, mode = call.tenant.project, call.tenant.mode
    assert project is not None
    assert mode is not None
    running = await jobs.open_export(project.id, mode)
    if running is not None:
        raise Conflict(
            f"Export {running.id} of this project is {running.status}: wait for it to finish.",
            code="export_in_progress",
        )
    row = await ExportRow.create(project=project, mode=mode)
    await call.audit("export.created", target_type="export", target_id=row.id,
                     project_id=project.id, mode=mode.value)  # fmt: skip
    redis = call.request.app.state.redis

    async def hand_over() -> None:
        try:
            await enqueue_export(redis, row.id, 0)
        except RedisError:  # the worker's sweep hands it over once Redis is back
            logger.warning("export %s not enqueued: Redis is unavailable", row.id)

    call.after_commit.append(hand_over)
    return _out(call, row)


async def list_exports(call: Call) -> Page[ExportOut]:
    params = call.query_as(ListQuery)
    return await paginate(call.tenant.query(ExportRow), params, lambda row: _out(call, row))


async def retrieve_export(call: Call) -> ExportOut:
    return _out(call, await _own(call))


async def delete_export(call: Call) -> ExportOut:
    """Delete the archive now (after an end user's erase, say); the export says ``expired``."""
    row = await _own(call)
    if row.status in jobs.OPEN_STATUSES:
        raise Conflict(
            f"Export {row.id} is {row.status}: wait until it is built, then delete it.",
            code="export_in_progress",
        )
    if row.status is ExportStatus.SUCCEEDED:
        await jobs.discard(row, call.settings.export_dir)
        await call.audit("export.deleted", target_type="export", target_id=row.id)
    return _out(call, row)


async def download_export(call: Call) -> FileResponse:
    export_id = call.path_name("export_id")
    params = call.query_as(DownloadQuery)
    if not jobs.signature_holds(export_id, params.expires, params.signature, call.settings):
        raise PermissionDenied(
            "This download link is not valid: ask GET /v1/exports/{export_id} for a fresh one.",
            code="download_link_invalid", param="signature",
        )  # fmt: skip
    if params.expires <= datetime.now(UTC).timestamp():
        raise PermissionDenied(
            "This download link has expired, and the archive with it.",
            code="download_link_expired", param="expires",
        )  # fmt: skip
    row = await ExportRow.get_or_none(id=export_id).select_related("project")
    if row is None or row.status is not ExportStatus.SUCCEEDED or not row.file_name:
        raise missing("export", export_id, "export_id")
    path = call.settings.export_dir / row.file_name
    if not path.is_file():
        raise NotFound("The archive is no longer on this instance.", param="export_id")
    await audit.record(
        "export.downloaded", origin=request_origin(call.request),
        actor=audit.Actor("download_link", row.id), organization_id=row.project.organization_id,  # type: ignore[attr-defined]
        target_type="export", target_id=row.id,
    )  # fmt: skip
    return FileResponse(path, media_type="application/gzip", filename=row.file_name)


KEY = Auth.API_KEY
EXPORTS = "/v1/exports"
EXPORT = EXPORTS + "/{export_id}"
operations = [
    Operation("POST", EXPORTS, create_export,
              "Export the project's data in the key's mode (202: a worker builds the archive)",
              "Exports", auth=KEY, scope="export", secret_key_only=True, response=ExportOut,
              status_code=202, errors={409: "An export of this project and mode is queued or "
                                       "being built (`export_in_progress`)."},
              description="Devices with their push tokens, activities, state, pushes, "
              "deliveries and analytics events, as NDJSON files in one tar.gz (docs/export.md)."),
    Operation("GET", EXPORTS, list_exports, "List the project's exports, newest first",
              "Exports", auth=KEY, scope="export", secret_key_only=True, query=ListQuery,
              response=Page[ExportOut]),
    Operation("GET", EXPORT, retrieve_export, "An export's status, and its download link",
              "Exports", auth=KEY, scope="export", secret_key_only=True, response=ExportOut),
    Operation("DELETE", EXPORT, delete_export,
              "Delete an export's archive now (the export stays, `expired`)", "Exports",
              auth=KEY, scope="export", secret_key_only=True, response=ExportOut,
              transactional=False,
              errors={409: "The export is still queued or being built (`export_in_progress`)."}),
    Operation("GET", EXPORT + "/download", download_export,
              "Download an export's archive (by its signed link: no API key)", "Exports",
              auth=Auth.NONE, query=DownloadQuery, response_media_type="application/gzip",
              errors={403: "The signature does not hold (`download_link_invalid`) or the link "
                      "has expired (`download_link_expired`).",
                      404: "No such export, or its archive is gone."}),
]  # fmt: skip
