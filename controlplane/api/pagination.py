"""Stripe-style cursor pagination: ``limit`` and ``starting_after``, newest first.

Lists are ordered by ``(created_at, id)`` descending; ``starting_after`` names the last object
of the previous page (which must be visible to the caller, else 400). The answer says
``has_more`` so clients loop until it is false.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

from controlplane.api.fields import ObjectId
from controlplane.errors import InvalidRequest

RowT = TypeVar("RowT", bound=Model)
ItemT = TypeVar("ItemT", bound=BaseModel)


class ListQuery(BaseModel):
    """The query string of every list operation; subclasses add filters."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=10, ge=1, le=100, description="Page size, 1 to 100.")
    starting_after: ObjectId | None = Field(
        default=None,
        description="Id of the last object of the previous page; an id not in this list is "
        "a 400 `resource_missing`.",
    )


class Page(BaseModel, Generic[ItemT]):
    object: Literal["list"] = "list"
    data: list[ItemT]
    has_more: bool


async def paginate(
    query: QuerySet[RowT],
    params: ListQuery,
    render: Callable[[RowT], ItemT],
) -> Page[ItemT]:
    if params.starting_after is not None:
        anchor = await query.filter(id=params.starting_after).first()
        if anchor is None:
            raise InvalidRequest(
                f"No such object to start after: '{params.starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        created_at = anchor.created_at  # type: ignore[attr-defined]
        query = query.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=anchor.pk)
        )
    rows = await query.order_by("-created_at", "-id").limit(params.limit + 1)
    return Page[ItemT](
        data=[render(row) for row in rows[: params.limit]], has_more=len(rows) > params.limit
    )
