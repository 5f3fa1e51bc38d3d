"""Projects of an organization: ``/v1/organizations/{id}/projects`` and ``/v1/projects/{id}``.

Besides its name, a project holds one rule its admins set for the apps that ship its
publishable keys: the state key prefixes those keys may write (``state_public_write_prefixes``;
see ``controlplane/api/state.py``). Apps are the public, so it is a project setting, changed
with the ``projects:write`` permission and audited, not something a key can change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from tortoise.transactions import in_transaction

from controlplane import activities, project_deletion
from controlplane.api.fields import Deleted, Name
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Call, Operation, forget_cached_keys
from controlplane.auth.permissions import Permission
from controlplane.models import Project as ProjectRow
from controlplane.state import KEY_PATTERN

MAX_PUBLIC_WRITE_PREFIXES = 20
StatePrefix = Annotated[str, Field(pattern=KEY_PATTERN)]


class Project(BaseModel):
    object: Literal["project"] = "project"
    id: str
    organization_id: str
    name: str
    state_public_write_prefixes: list[str] = Field(
        description="State key prefixes the project's publishable keys may write under."
    )
    created_at: datetime

    @classmethod
    def of(cls, row: ProjectRow) -> Project:
        return cls(
            id=row.id,
            organization_id=row.organization_id,  # type: ignore[attr-defined]
            name=row.name,
            state_public_write_prefixes=row.state_public_write_prefixes or [],
            created_at=row.created_at,
        )


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class ProjectUpdate(BaseModel):
    """What to change; a field left out (or null) stays as it is."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    state_public_write_prefixes: (
        Annotated[list[StatePrefix], Field(max_length=MAX_PUBLIC_WRITE_PREFIXES)] | None
    ) = Field(
        default=None,
        description="The state key prefixes publishable keys (inside your apps) may write "
        "under, replacing the current ones; [] for none (the default). Entries apps write "
        "are public.",
    )


async def list_projects(call: Call) -> Page[Project]:
    return await paginate(call.tenant.query(ProjectRow), call.query_as(ListQuery), Project.of)


async def create_project(call: Call) -> Project:
    body = call.body_as(ProjectCreate)
    row = await ProjectRow.create(organization=call.tenant.organization, name=body.name)
    await call.audit("project.created", target_type="project", target_id=row.id, name=row.name)
    return Project.of(row)


def _project(call: Call) -> ProjectRow:
    project = call.tenant.project
    assert project is not None
    return project


async def retrieve_project(call: Call) -> Project:
    return Project.of(_project(call))


async def update_project(call: Call) -> Project:
    row = _project(call)
    body = call.body_as(ProjectUpdate)
    changes: dict[str, Any] = {}
    if body.name is not None and body.name != row.name:
        changes.update(name=body.name, previous_name=row.name)
        row.name = body.name
    prefixes = body.state_public_write_prefixes
    if prefixes is not None and sorted(set(prefixes)) != (row.state_public_write_prefixes or []):
        changes.update(
            state_public_write_prefixes=sorted(set(prefixes)),
            previous_state_public_write_prefixes=row.state_public_write_prefixes or [],
        )
        row.state_public_write_prefixes = sorted(set(prefixes))
    if changes:
        await row.save(update_fields=[name for name in ("name", "state_public_write_prefixes")
                                      if name in changes])  # fmt: skip
        await call.audit("project.updated", target_type="project", target_id=row.id, **changes)
    return Project.of(row)


async def delete_project(call: Call) -> Deleted:
    """In steps that a worker fanning out its pushes cannot deadlock against: see
    ``controlplane/project_deletion.py``. Its keys are refused from the first commit on."""
    row = _project(call)
    async with in_transaction():
        await forget_cached_keys(call)  # Redis unreachable: 503, nothing done
        canceled = await project_deletion.retire(row.id)
        await call.audit("project.deleted", target_type="project", target_id=row.id, name=row.name)
    await call.run_after_commit()
    await close_channels(call, row.id)
    await project_deletion.finish(row.id, canceled)
    return Deleted(object="project", id=row.id)


async def close_channels(call: Call, project_id: str) -> None:
    """The deleted project's broadcast channels, deleted at Apple while its credential is
    still there (``controlplane/activities.py``)."""
    keyring = call.request.app.state.keyring  # None: no credential could have opened one
    if keyring is not None:
        channels = call.request.app.state.channels
        await activities.close_project_channels(project_id, channels, keyring, datetime.now(UTC))


PROJECTS = "/v1/organizations/{organization_id}/projects"
PROJECT = "/v1/projects/{project_id}"
operations = [
    Operation(
        "GET",
        PROJECTS,
        list_projects,
        "List the projects of an organization",
        "Projects",
        permission=Permission.PROJECTS_READ,
        query=ListQuery,
        response=Page[Project],
    ),
    Operation(
        "POST",
        PROJECTS,
        create_project,
        "Create a project",
        "Projects",
        permission=Permission.PROJECTS_WRITE,
        body=ProjectCreate,
        response=Project,
        status_code=201,
    ),
    Operation(
        "GET",
        PROJECT,
        retrieve_project,
        "Retrieve a project",
        "Projects",
        permission=Permission.PROJECTS_READ,
        response=Project,
    ),
    Operation(
        "PATCH",
        PROJECT,
        update_project,
        "Rename a project, or set the state prefixes its apps may write",
        "Projects",
        permission=Permission.PROJECTS_WRITE,
        body=ProjectUpdate,
        response=Project,
    ),
    Operation(
        "DELETE",
        PROJECT,
        delete_project,
        "Delete a project with its keys (they stop working at once)",
        "Projects",
        permission=Permission.PROJECTS_WRITE,
        response=Deleted,
        description="Its keys are refused and its unsent pushes canceled first; the answer "
        "comes once sends already under way have finished and every row is gone. Deleting "
        "again after an interruption carries on.",
        transactional=False,
    ),
]
