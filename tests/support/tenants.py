"""Tenants for tests: users with a password and a personal access token, in organizations.

Rows are created through the ORM (the thing under test is the HTTP API that reads them);
the personal access token is generated exactly as the API generates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.auth.keys import ACCESS_TOKEN_PREFIX, generate_key, generate_secret
from controlplane.auth.passwords import hash_password
from controlplane.auth.scopes import ALLOWED_SCOPES
from controlplane.models import (
    ApiKey,
    KeyKind,
    KeyMode,
    Membership,
    Organization,
    PersonalAccessToken,
    Project,
    Role,
    User,
)
from tests.conftest import TEST_SECRET_KEY

PASSWORD = "correct horse battery staple"


@dataclass
class Person:
    user: User
    token: str
    password: str = PASSWORD

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Tenant:
    """An organization with one project, a secret key and people in each role."""

    organization: Organization
    project: Project
    secret_key: str
    people: dict[Role, Person] = field(default_factory=dict)

    @property
    def owner(self) -> Person:
        return self.people[Role.OWNER]


async def make_person(email: str, password: str = PASSWORD) -> Person:
    user = await User.create(
        email=email, name=email.split("@")[0], password_hash=hash_password(password)
    )
    issued = generate_secret(ACCESS_TOKEN_PREFIX, TEST_SECRET_KEY)
    await PersonalAccessToken.create(
        user=user,
        name="tests",
        token_hash=issued.key_hash,
        display_prefix=issued.display_prefix,
        last_four=issued.last_four,
    )
    return Person(user=user, token=issued.plaintext, password=password)


async def make_api_key(
    project: Project, kind: KeyKind = KeyKind.SECRET, mode: KeyMode = KeyMode.TEST
) -> tuple[ApiKey, str]:
    issued = generate_key(kind, mode, TEST_SECRET_KEY)
    row = await ApiKey.create(
        project=project,
        name=f"{mode.value} {kind.value}",
        kind=kind,
        mode=mode,
        scopes=sorted(ALLOWED_SCOPES[kind]),
        key_hash=issued.key_hash,
        display_prefix=issued.display_prefix,
        last_four=issued.last_four,
    )
    return row, issued.plaintext


async def make_tenant(name: str, roles: tuple[Role, ...] = tuple(Role)) -> Tenant:
    organization = await Organization.create(name=name)
    project = await Project.create(organization=organization, name=f"{name} app")
    _, secret = await make_api_key(project)
    tenant = Tenant(organization=organization, project=project, secret_key=secret)
    for role in roles:
        person = await make_person(f"{role.value}@{name.lower().replace(' ', '-')}.example")
        await Membership.create(organization=organization, user=person.user, role=role)
        tenant.people[role] = person
    return tenant
