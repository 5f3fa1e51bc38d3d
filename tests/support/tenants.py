"""Tenants for tests: users with a password and a personal access token, in organizations.

Rows are created through the ORM (the thing under test is the HTTP API that reads them);
the personal access token is generated exactly as the API generates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from controlplane.auth.admin import issue_access_token
from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.passwords import hash_password
from controlplane.models import (
    KeyKind,
    KeyMode,
    Membership,
    Organization,
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


@cache
def password_hash_for(password: str) -> str:
    """One argon2id hash per password per test process, shared by the people who have it.

    A hash costs about 0.15 s of CPU by design, and the suite makes thousands of people, nearly
    all with :data:`PASSWORD`: hashing each anew was a third of the suite's CPU time. Sharing a
    salt between test users changes nothing a test looks at; signing in still verifies the
    password against a real argon2id hash.
    """
    return hash_password(password)


async def make_person(email: str, password: str = PASSWORD) -> Person:
    user = await User.create(
        email=email, name=email.split("@")[0], password_hash=password_hash_for(password)
    )
    _, token = await issue_access_token(user, name="tests", pepper=TEST_SECRET_KEY)
    return Person(user=user, token=token, password=password)


async def make_tenant(name: str, roles: tuple[Role, ...] = tuple(Role)) -> Tenant:
    organization = await Organization.create(name=name)
    project = await Project.create(organization=organization, name=f"{name} app")
    _, secret = await issue_api_key(
        project,
        name="test secret",
        kind=KeyKind.SECRET,
        mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY,
    )
    tenant = Tenant(organization=organization, project=project, secret_key=secret)
    for role in roles:
        person = await make_person(f"{role.value}@{name.lower().replace(' ', '-')}.example")
        await Membership.create(organization=organization, user=person.user, role=role)
        tenant.people[role] = person
    return tenant


async def live_key_headers(tenant: Tenant) -> dict[str, str]:
    """The Authorization header of a new live secret key of the tenant's project."""
    _, live = await issue_api_key(tenant.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    return {"Authorization": f"Bearer {live}"}
