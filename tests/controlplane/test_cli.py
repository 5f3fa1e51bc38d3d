from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.conftest import TEST_SECRET_KEY
from tests.support.dev import running_dev
from tests.support.processes import (
    brik_cloud_command,
    clean_environment,
    free_port,
    server_environment,
)

COMMANDS = (
    "dev", "serve", "worker", "migrate", "makemigrations", "bootstrap", "rotate-keys",
    "rotate-secret-key", "set-plan",
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


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_production_processes_refuse_to_start_with_a_mistyped_previous_secret_key(
    command: str,
) -> None:
    result = run(command, BRIK_SECRET_KEY=TEST_SECRET_KEY, BRIK_PREVIOUS_SECRET_KEYS="old-key",
                 BRIK_ENCRYPTION_KEYS=Fernet.generate_key().decode())  # fmt: skip
    assert result.returncode != 0
    assert "BRIK_PREVIOUS_SECRET_KEYS entry 1" in result.stderr
    assert "Traceback" not in result.stderr


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
def test_bootstrap_json_is_idempotent(database_url: str, redis_url: str) -> None:
    env = {"BRIK_DATABASE_URL": database_url, "BRIK_SECRET_KEY": TEST_SECRET_KEY,
           "BRIK_REDIS_URL": redis_url}  # fmt: skip
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
            process.wait(timeout=45)  # the worker's grace period (30 s) and some
    assert [p.returncode for p in processes] == [0, 0]


def run_in(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*brik_cloud_command(), *args],
        cwd=workdir,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_commands_in_a_dev_directory_use_its_database(tmp_path: Path) -> None:
    """set-plan (any command) next to a running ``dev`` changes that instance, not PostgreSQL."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with running_dev(tmp_path) as dev:
        org, key = dev.data["org_id"], dev.data["keys"]["test_secret"]

        result = run_in(tmp_path, "set-plan", org, "pro")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{org}: plan pro (set by admin)"
        assert "Traceback" not in result.stderr
        usage = httpx.get(
            f"{dev.url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert usage.json()["plan"] == "pro"

        # From any directory, --dir names the dev directory.
        result = run_in(elsewhere, "set-plan", "--dir", str(tmp_path / ".brik"), org, "enterprise")
        assert result.returncode == 0, result.stderr
        usage = httpx.get(
            f"{dev.url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert usage.json()["plan"] == "enterprise"

        # The dev directory's own secrets: a re-encryption finds everything it can open.
        rotated = run_in(tmp_path, "rotate-keys")
        assert rotated.returncode == 0, rotated.stderr
        assert json.loads(rotated.stdout)["undecryptable"] == []

        # BRIK_DATABASE_URL, when set, wins over the dev directory.
        port = free_port()
        result = run_in(
            tmp_path,
            "set-plan",
            org,
            "free",
            BRIK_DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/brik",
        )
        assert result.returncode != 0
        assert f"127.0.0.1:{port}" in result.stderr


def test_dir_without_a_dev_database_is_one_line(tmp_path: Path) -> None:
    result = run_in(tmp_path, "set-plan", "--dir", str(tmp_path), "org_x", "pro")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(tmp_path) in lines[0]
    assert "brik-cloud dev" in lines[0]


UNREACHABLE_COMMANDS = [
    ["migrate"],
    ["set-plan", "org_x", "pro"],
    ["bootstrap"],
    ["rotate-keys"],
    ["rotate-secret-key"],
    ["serve"],
    ["worker"],
]


@pytest.mark.parametrize("args", UNREACHABLE_COMMANDS, ids=lambda args: args[0])
def test_a_database_that_cannot_be_reached_is_one_line_naming_it(
    tmp_path: Path, args: list[str]
) -> None:
    port = free_port()
    result = run_in(
        tmp_path,
        *args,
        BRIK_DATABASE_URL=f"postgres://brik:hunter2-secret@127.0.0.1:{port}/brik",
        BRIK_SECRET_KEY=TEST_SECRET_KEY,
        BRIK_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"postgres://brik:***@127.0.0.1:{port}/brik" in lines[0]
    assert "hunter2-secret" not in result.stderr


def test_a_sqlite_file_that_cannot_be_opened_is_one_line_naming_it(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/no/such/directory/brik.sqlite3"
    result = run_in(tmp_path, "set-plan", "org_x", "pro", BRIK_DATABASE_URL=url)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert url in lines[0]
