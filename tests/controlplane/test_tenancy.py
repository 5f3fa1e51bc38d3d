"""An API key's tenant, read in one hand-written query on every request: the same project and
organization the ORM reads, with the providers the project holds credentials for."""

from __future__ import annotations

import pytest

from controlplane.auth.api_keys import KeyPrincipal
from controlplane.errors import AuthenticationFailed
from controlplane.models import (
    KeyKind,
    KeyMode,
    Organization,
    Plan,
    PlanSource,
    Project,
    ProviderCredential,
    ProviderName,
)
from controlplane.tenancy import resolve_tenant
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


def principal_of(project: Project, mode: KeyMode = KeyMode.LIVE) -> KeyPrincipal:
    return KeyPrincipal(
        key_id="key_1", key_hash="h" * 64, project_id=project.id,
        organization_id=project.organization_id,  # type: ignore[attr-defined]
        kind=KeyKind.SECRET, mode=mode, scopes=frozenset(),
    )  # fmt: skip


def fields_of(row: Project | Organization) -> dict[str, object]:
    return {name: getattr(row, name) for name in type(row)._meta.fields_db_projection}


async def test_a_keys_tenant_is_its_project_and_organization_as_the_orm_reads_them(
    database: None,
) -> None:
    acme = await make_tenant("Acme", roles=())
    await Organization.filter(id=acme.organization.id).update(
        plan=Plan.PRO, plan_source=PlanSource.ADMIN, stripe_customer_id="cus_acme"
    )
    await Project.filter(id=acme.project.id).update(state_public_write_prefixes=["votes/"])
    await make_tenant("Bravo", roles=())  # another project, whose rows must not leak in

    tenant = await resolve_tenant(principal_of(acme.project, KeyMode.TEST), {})

    assert tenant is not None
    assert tenant.project is not None
    expected = await Project.get(id=acme.project.id).select_related("organization")
    assert fields_of(tenant.project) == fields_of(expected)
    assert fields_of(tenant.organization) == fields_of(expected.organization)
    assert tenant.organization.plan is Plan.PRO
    assert tenant.project.state_public_write_prefixes == ["votes/"]
    assert tenant.mode is KeyMode.TEST
    assert tenant.credentials == frozenset()


async def test_a_keys_tenant_lists_the_providers_its_project_holds_credentials_for(
    database: None,
) -> None:
    acme = await make_tenant("Acme", roles=())
    bravo = await make_tenant("Bravo", roles=())
    for project, provider in [(acme.project, ProviderName.APNS), (acme.project, ProviderName.FCM),
                              (bravo.project, ProviderName.APNS)]:  # fmt: skip
        await ProviderCredential.create(
            project=project, provider=provider, secret_encrypted="sealed", fingerprint="f" * 64
        )
    tenant = await resolve_tenant(principal_of(acme.project), {})
    assert tenant is not None
    assert tenant.credentials == {"apns", "fcm"}
    await ProviderCredential.filter(project_id=acme.project.id, provider=ProviderName.FCM).delete()
    tenant = await resolve_tenant(principal_of(acme.project), {})
    assert tenant is not None
    assert tenant.credentials == {"apns"}


async def test_a_key_whose_project_is_gone_is_not_recognised(database: None) -> None:
    acme = await make_tenant("Acme", roles=())
    principal = principal_of(acme.project)
    await Project.filter(id=acme.project.id).delete()
    with pytest.raises(AuthenticationFailed) as refused:
        await resolve_tenant(principal, {})
    assert refused.value.code == "invalid_api_key"
