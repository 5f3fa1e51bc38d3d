"""Rows of hand-written queries become the same models the ORM's own queries make — JSON,
enums, dates and empty values alike — on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.models import (
    KeyMode,
    Organization,
    Project,
    ProviderCredential,
    ProviderName,
    Push,
    PushStatus,
)
from controlplane.sql_rows import attach, model_of, selected
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


def fields_of(row: Push | ProviderCredential | Project | Organization) -> dict[str, object]:
    return {name: getattr(row, name) for name in type(row)._meta.fields_db_projection}


async def read(sql: str, *values: object) -> list[dict[str, object]]:
    client = Push._meta.db
    if client.capabilities.dialect != "postgres":
        sql = sql.replace("$1", "?")
    return list(await client.execute_query_dict(sql, list(values)))


async def test_a_push_read_by_hand_is_the_push_the_orm_reads(database: None) -> None:
    acme = await make_tenant("Acme", roles=())
    written = await Push.create(
        project=acme.project, mode=KeyMode.LIVE, kind="alert",
        content={"alert": {"title": "Order shipped", "body": "ünïcode ✓"}, "ttl": 60},
        target={"tags": ["vip"]}, status=PushStatus.SCHEDULED, recipients=3,
        send_at=datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC), collapse_id=None,
    )  # fmt: skip
    [row] = await read(f'SELECT {selected(Push, "p")} FROM "pushes" AS p WHERE p."id" = $1',
                       written.id)  # fmt: skip
    by_hand = model_of(Push, row, "p")
    assert fields_of(by_hand) == fields_of(await Push.get(id=written.id))
    assert by_hand.status is PushStatus.SCHEDULED
    assert by_hand.content["alert"]["body"] == "ünïcode ✓"


async def test_a_credential_and_a_project_with_its_organization_read_by_hand(
    database: None,
) -> None:
    acme = await make_tenant("Acme", roles=())
    credential = await ProviderCredential.create(
        project=acme.project, provider=ProviderName.FCM, secret_encrypted="sealed",
        fingerprint="f" * 64, details={"project_id": "acme-app"},
    )  # fmt: skip
    [row] = await read(
        f'SELECT {selected(ProviderCredential, "c")} FROM "provider_credentials" AS c '
        'WHERE c."id" = $1', credential.id,
    )  # fmt: skip
    assert fields_of(model_of(ProviderCredential, row, "c")) == fields_of(
        await ProviderCredential.get(id=credential.id)
    )
    [row] = await read(
        f'SELECT {selected(Project, "p")}, {selected(Organization, "o")} FROM "projects" AS p '
        'JOIN "organizations" AS o ON o."id" = p."organization_id" WHERE p."id" = $1',
        acme.project.id,
    )  # fmt: skip
    project = model_of(Project, row, "p")
    attach(project, "organization", model_of(Organization, row, "o"))
    assert project.organization.name == "Acme"
    assert fields_of(project.organization) == fields_of(acme.organization)
