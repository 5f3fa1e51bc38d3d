from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.support.processes import brik_cloud_command, clean_environment

COMMANDS = ("dev", "serve", "worker", "migrate", "makemigrations", "bootstrap")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*brik_cloud_command(), *args],
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command_with_a_line() -> None:
    result = run("--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for command in COMMANDS:
        assert any(line.strip().startswith(command + " ") for line in lines), command


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_production_processes_refuse_to_start_without_a_secret_key(command: str) -> None:
    result = run(command)
    assert result.returncode != 0
    assert "BRIK_SECRET_KEY" in result.stderr


def test_invalid_configuration_is_reported_not_a_traceback() -> None:
    result = run("migrate", BRIK_APNS_PORT="not-a-port")
    assert result.returncode != 0
    assert "apns_port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.database
def test_bootstrap_json_is_idempotent(database_url: str) -> None:
    env = {"BRIK_DATABASE_URL": database_url, "BRIK_SECRET_KEY": TEST_SECRET_KEY}
    email = "ci@example.com"
    first = run("bootstrap", "--json", "--admin-email", email, "--org", "CLI org", **env)
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert created["admin_email"] == email
    assert created["keys"]["live_secret"].startswith("bk_sk_live_")
    assert created["keys"]["test_publishable"].startswith("bk_pk_test_")

    again = json.loads(
        run("bootstrap", "--json", "--admin-email", email, "--org", "CLI org", **env).stdout
    )
    assert (again["org_id"], again["project_id"]) == (created["org_id"], created["project_id"])
    assert again["admin_password"] is None
    assert set(again["keys"].values()) == {None}

    rotated = run(
        "bootstrap", "--json", "--admin-email", email, "--org", "CLI org", "--rotate-keys", **env
    )
    keys = json.loads(rotated.stdout)["keys"]
    assert keys["live_secret"]
    assert keys["live_secret"] != created["keys"]["live_secret"]
