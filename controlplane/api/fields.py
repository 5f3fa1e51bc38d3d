"""Field types and small shapes shared by several operations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from controlplane.models.ids import ID_PATTERN

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Password = Annotated[
    str,
    Field(min_length=12, max_length=1024, description="At least 12 characters."),
]


def _email(value: str) -> str:
    value = value.strip().lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise ValueError("not a valid email address")
    return value


ObjectId = Annotated[str, Field(pattern=ID_PATTERN, description="An id such as prj_3kq…")]

Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]


class Deleted(BaseModel):
    """The answer to a DELETE: what was deleted (or revoked)."""

    object: str
    id: str
    deleted: Literal[True] = True


def require_future(expires_at: datetime | None) -> None:
    """For ``expires_at`` fields: a moment already past is refused."""
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValueError("expires_at must be in the future")
