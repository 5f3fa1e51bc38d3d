from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from controlplane.auth.keys import hash_key, looks_like_key
from controlplane.auth.passwords import verify_password
from controlplane.bootstrap import bootstrap
from controlplane.models import ApiKey, Membership, Organization, Project, Role, User
from tests.conftest import TEST_SECRET_KEY
from tests.support.processes import (
    brik_cloud_command,
    clean_environment,
    free_port,
    running_command,
    server_environment,
)
from tests.support.redis_server import RestartableRedis

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


# --- brik-cloud bootstrap --rotate-keys, as an operator runs it --------------------------------


def run_bootstrap(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*brik_cloud_command(), "bootstrap", "--json", "--org", "Rotating org", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.faults
async def test_rotated_keys_are_refused_at_once_by_running_api_processes(
    database_url: str, database: None, tmp_path: Path
) -> None:
    with RestartableRedis(tmp_path / "redis") as redis_server:
        env = server_environment(database_url, redis_server.url, "brik-test:rotate")
        first = run_bootstrap(env)
        assert first.returncode == 0, first.stderr
        old = json.loads(first.stdout)["keys"]["test_secret"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with running_command("serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                             ready_url=f"{url}/healthz"):  # fmt: skip
            # A new connection per request: the checks around the Redis outage are seconds apart,
            # longer than the server's keep-alive, and a reused connection could be closed by the
            # server just as the request goes out (HTTP's race, not the rotation's).
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=url, limits=no_reuse) as http:

                async def accepted(key: str) -> bool:
                    answer = await http.get(
                        "/v1/api_key", headers={"Authorization": f"Bearer {key}"}
                    )
                    assert answer.status_code in (200, 401), answer.text
                    return answer.status_code == 200

                assert await accepted(old)  # and now cached by the running process
                rotated = run_bootstrap(env, "--rotate-keys")
                assert rotated.returncode == 0, rotated.stderr
                new = json.loads(rotated.stdout)["keys"]["test_secret"]
                assert not await accepted(old)  # at once, not after the cache's minute
                assert await accepted(new)

                # Without Redis nothing is rotated: the running process could not hear of it.
                redis_server.kill()
                refused = run_bootstrap(env, "--rotate-keys")
                assert refused.returncode != 0
                assert "Traceback" not in refused.stderr
                lines = [line for line in refused.stderr.splitlines() if line.strip()]
                assert len(lines) == 1, refused.stderr
                assert redis_server.url in lines[0]
                assert "nothing was rotated" in lines[0]
                assert refused.stdout == ""
                redis_server.start()
                assert await accepted(new)


def test_on_a_dev_install_rotating_says_a_running_dev_must_be_restarted(tmp_path: Path) -> None:
    (tmp_path / "brik.sqlite3").touch()  # what makes a directory a dev install
    env = clean_environment(BRIK_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    first = run_bootstrap(env, "--dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    rotated = run_bootstrap(env, "--dir", str(tmp_path), "--rotate-keys")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)["keys"]
    assert new["test_secret"] != json.loads(first.stdout)["keys"]["test_secret"]
    assert "Traceback" not in rotated.stderr
    assert "restart" in rotated.stderr
    assert "brik-cloud dev" in rotated.stderr
