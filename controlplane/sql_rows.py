"""Hand-written queries on the hot paths, and their rows made into models.

Every send runs a handful of queries: on the API the key's tenant and the recipients, on the
worker the pushes at hand, their credentials and the claim. Building such a query through the
ORM (its query builder renders the SQL anew each time) cost more CPU than sending it to
PostgreSQL and reading the answer (loadtests/, "One-to-one sends"), so those few are written
out once. Everything else goes through the ORM.

Where such a query reads whole models, it selects their columns under an alias
(:func:`selected`) and :func:`model_of` makes them back into models the way the ORM's own
queries do. Column lists come from the models, so a column added to a model is read here too.
:func:`parameter` spells a query parameter in either dialect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from tortoise.models import Model

ModelT = TypeVar("ModelT", bound=Model)


def parameter(dialect: str, n: int, cast: str | None = None) -> str:
    """The dialect's spelling of the ``n``-th query parameter (``cast``: a type PostgreSQL
    cannot infer)."""
    if dialect == "postgres":
        return f"${n}::{cast}" if cast else f"${n}"
    return f"?{n}"


def columns(model: type[Model]) -> list[str]:
    """The model's columns, as the database names them."""
    return list(model._meta.fields_db_projection.values())


def selected(model: type[Model], alias: str) -> str:
    """The select list of ``model``'s columns from table ``alias``, each named ``alias.column``."""
    return ", ".join(f'{alias}."{column}" AS "{alias}.{column}"' for column in columns(model))


def model_of(model: type[ModelT], row: Mapping[str, Any], alias: str) -> ModelT:
    """The ``model`` whose columns :func:`selected` put in ``row`` under ``alias``, as the ORM
    makes it from its own queries (values converted the same way)."""
    return model._init_from_db(**{column: row[f"{alias}.{column}"] for column in columns(model)})


def attach(instance: Model, relation: str, related: Model) -> None:
    """Set a foreign key's object on ``instance``, as the ORM's ``select_related`` does."""
    object.__setattr__(instance, f"_{relation}", related)
