from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.support.processes import (
    brik_cloud_command,
    clean_environment,
    free_port,
    server_environment,
)

COMMANDS = (
    "dev", "serve", "worker", "migrate", "makemigrations", "bootstrap", "rotate-keys", "set-plan",
)  # fmt: skip


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


@pytest.mark.parametrize("keys", ["", "not-a-fernet-key"])
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_production_processes_refuse_to_start_without_valid_encryption_keys(
    command: str, keys: str
) -> None:
    result = run(command, BRIK_SECRET_KEY=TEST_SECRET_KEY, BRIK_ENCRYPTION_KEYS=keys)
    assert result.returncode != 0
    assert "BRIK_ENCRYPTION_KEYS" in result.stderr
    assert "Traceback" not in result.stderr


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


@pytest.mark.database
def test_serve_and_worker_processes_deliver_the_pipeline_probe(
    database_url: str, redis_url: str
) -> None:
    port = free_port()
    env = server_environment(database_url, redis_url, f"brik-cli-test:{port}")
    assert run("migrate", **env).returncode == 0
    processes = [
        subprocess.Popen(
            [*brik_cloud_command(), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for args in (["serve", "--host", "127.0.0.1", "--port", str(port)], ["worker"])
    ]
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert all(p.poll() is None for p in processes), "a process exited early"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve never became ready"
            time.sleep(0.2)
        probe = httpx.post(f"{base}/healthz/pipeline", params={"timeout": "20"}, timeout=30)
        assert probe.status_code == 200, probe.text
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
    assert [p.returncode for p in processes] == [0, 0]
