from __future__ import annotations

import pytest

from controlplane.auth.keys import hash_key, looks_like_key
from controlplane.auth.passwords import verify_password
from controlplane.bootstrap import bootstrap
from controlplane.models import ApiKey, Membership, Organization, Project, Role, User
from tests.conftest import TEST_SECRET_KEY

pytestmark = pytest.mark.database


async def test_first_run_creates_admin_org_project_and_four_keys(database: None) -> None:
    result = await bootstrap(pepper=TEST_SECRET_KEY, admin_email="Ops@Example.com")
    assert result.admin_email == "ops@example.com"
    assert result.admin_password
    user = await User.get(email="ops@example.com")
    assert user.password_hash
    assert verify_password(user.password_hash, result.admin_password)
    membership = await Membership.get(user=user, organization_id=result.org_id)
    assert membership.role == Role.OWNER
    assert await Project.exists(id=result.project_id, organization_id=result.org_id)
    assert set(result.keys) == {
        "test_secret",
        "test_publishable",
        "live_secret",
        "live_publishable",
    }
    for name, key in result.keys.items():
        assert key is not None
        assert looks_like_key(key)
        stored = await ApiKey.get(key_hash=hash_key(key, TEST_SECRET_KEY))
        assert stored.name == name
        assert key.startswith(f"bk_{'sk' if 'secret' in name else 'pk'}_{stored.mode.value}_")


async def test_second_run_finds_everything_and_shows_no_secret_again(database: None) -> None:
    first = await bootstrap(pepper=TEST_SECRET_KEY, admin_email="ops@example.com")
    second = await bootstrap(pepper=TEST_SECRET_KEY, admin_email="ops@example.com")
    assert (second.org_id, second.project_id) == (first.org_id, first.project_id)
    assert second.admin_password is None
    assert set(second.keys.values()) == {None}
    assert await Organization.all().count() == 1
    assert await ApiKey.filter(revoked_at__isnull=True).count() == 4


async def test_rotate_keys_revokes_the_old_ones(database: None) -> None:
    first = await bootstrap(pepper=TEST_SECRET_KEY, admin_email="ops@example.com")
    rotated = await bootstrap(
        pepper=TEST_SECRET_KEY, admin_email="ops@example.com", rotate_keys=True
    )
    old = first.keys["live_secret"]
    new = rotated.keys["live_secret"]
    assert old
    assert new
    assert old != new
    assert (await ApiKey.get(key_hash=hash_key(old, TEST_SECRET_KEY))).revoked_at is not None
    assert (await ApiKey.get(key_hash=hash_key(new, TEST_SECRET_KEY))).revoked_at is None
    assert await ApiKey.filter(revoked_at__isnull=True).count() == 4
