"""Projects of an organization: ``/v1/organizations/{id}/projects`` and ``/v1/projects/{id}``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from tortoise.transactions import in_transaction

from controlplane import project_deletion
from controlplane.api.fields import Deleted, Name
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Call, Operation, forget_cached_keys
from controlplane.auth.permissions import Permission
from controlplane.models import Project as ProjectRow


class Project(BaseModel):
    object: Literal["project"] = "project"
    id: str
    organization_id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, row: ProjectRow) -> Project:
        return cls(
            id=row.id,
            organization_id=row.organization_id,  # type: ignore[attr-defined]
            name=row.name,
            created_at=row.created_at,
        )


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


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
    previous = row.name
    row.name = call.body_as(ProjectUpdate).name
    await row.save(update_fields=["name"])
    await call.audit(
        "project.updated",
        target_type="project",
        target_id=row.id,
        name=row.name,
        previous_name=previous,
    )
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
    await project_deletion.finish(row.id, canceled)
    return Deleted(object="project", id=row.id)


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
        "Rename a project",
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
