"""The one order in which push rows are locked: by id.

A worker's claim locks every push of a read of the lane before their delivery rows
(:mod:`workers.tasks.deliver`), and completing, marking sending and canceling pushes update
several push rows at once. A multi-row UPDATE locks rows in its plan's order (heap order for a
sequential or bitmap scan, and push ids are random), so two of them over overlapping pushes —
a claim and a project's deletion, two workers' runs that share a duplicated entry — could each
hold one row the other waits for: a deadlock, and one of them fails. Every statement that locks
more than one push row therefore reaches them through :func:`in_id_order`, which locks them
first, in id order, in one subquery; the UPDATE then finds them already held.
"""

from __future__ import annotations

from tortoise.expressions import Subquery
from tortoise.queryset import QuerySet

from controlplane.models import Push


def in_id_order(pushes: QuerySet[Push]) -> Subquery:
    """The ids of ``pushes``, locked (``FOR NO KEY UPDATE``) in id order: filter with
    ``id__in=in_id_order(...)``. SQLite has no row locks and serialises writes anyway."""
    return Subquery(pushes.order_by("id").select_for_update(no_key=True).only("id"))
