"""Hand-written queries on the hot paths, and their rows made into models.

Every send runs a handful of queries: on the API the key's tenant and the recipients, on the
worker the pushes at hand and their credentials. Building such a query through the ORM (its
query builder renders the SQL anew each time) cost more CPU than sending it to PostgreSQL and
reading the answer (loadtests/, "One-to-one sends"), so those few are written out once and
their rows made into models the way the ORM's own queries make them. Everything else goes
through the ORM.

A query selects a model's columns under an alias (:func:`selected`); :func:`model_of` takes
them back out of the row. Column lists come from the models, so a column added to a model is
read here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from tortoise.models import Model

ModelT = TypeVar("ModelT", bound=Model)


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
