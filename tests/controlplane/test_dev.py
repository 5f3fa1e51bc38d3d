"""``brik-cloud dev`` as a user runs it: a real process in an empty directory."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.support.dev import start_dev, stop, wait_until_ready
from tests.support.processes import (
    brik_cloud_command,
    child_pids,
    clean_environment,
    free_port,
    is_running,
)


def run_once(workdir: Path, password: str | None = None) -> tuple[dict[str, Any], str, int]:
    """Run dev until ready, use it (as the admin, with ``password`` or dev.json's), stop it."""
    port = free_port()
    process = start_dev(workdir, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(process, url)
        dev_json = json.loads((workdir / ".brik" / "dev.json").read_text())
        redis_children = [pid for pid, name in child_pids(process.pid).items() if "redis" in name]
        assert len(redis_children) == 1, "dev should run exactly one embedded redis-server"
        pipeline = httpx.post(f"{url}/healthz/pipeline", timeout=10)
        assert pipeline.status_code == 200, pipeline.text  # the in-process worker answers
        # The dashboard URL dev prints leads to sign-in, with the first-run hint.
        dashboard = httpx.get(dev_json["dashboard_url"], timeout=5, follow_redirects=True)
        assert dashboard.status_code == 200
        assert "Sign in to Brik Cloud" in dashboard.text
        assert "brik-cloud dev" in dashboard.text
        for key in dev_json["keys"].values():  # the keys dev.json holds are keys that work
            me = httpx.get(f"{url}/v1/api_key", headers={"Authorization": f"Bearer {key}"})
            assert me.status_code == 200, me.text
        with httpx.Client(base_url=url, timeout=10) as admin:
            password = password or dev_json["admin_password"]
            credentials = {"email": dev_json["admin_email"], "password": password}
            # The printed admin login signs in to the dashboard, onto dev's project.
            signed_in = admin.post("/dashboard/sign-in", data=credentials,
                                   headers={"Origin": url}, follow_redirects=True)  # fmt: skip
            assert signed_in.url.path == f"/dashboard/projects/{dev_json['project_id']}/test"
            assert admin.post("/v1/auth/login", json=credentials).status_code == 200
            invited = admin.post(f"/v1/organizations/{dev_json['org_id']}/invitations",
                                 json={"email": f"dev{port}@example.com"})  # fmt: skip
            assert invited.status_code == 201, invited.text
        # dev, and only dev, writes mail to its log: that is how it shows invitation links.
        assert "accept-invitation#bk_inv_" in (workdir / "dev.log").read_text()
    finally:
        output = stop(process).decode()
    assert process.returncode == 0, output
    assert not is_running(redis_children[0]), "embedded redis-server left running"
    return dev_json, output, port


def test_a_busy_port_is_one_line_that_names_port_before_anything_is_written(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*brik_cloud_command(), "dev", "--port", str(port)],
            cwd=tmp_path,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # Whatever was listening still answers: dev neither took nor disturbed the port.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "Application startup complete" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0]
    assert "--port" in lines[0]
    # No dev.json with keys that whoever holds the port would reject, no half-made database.
    assert not (tmp_path / ".brik" / "dev.json").exists()
    assert not (tmp_path / ".brik" / "brik.sqlite3").exists()


def test_dev_runs_the_product_reuses_its_data_and_never_shows_a_revoked_key_again(
    tmp_path: Path,
) -> None:
    first, output, port = run_once(tmp_path)
    assert first["api_url"] == f"http://127.0.0.1:{port}"
    assert first["admin_email"] == "admin@brik.local"
    assert first["admin_password"]
    assert first["org_id"].startswith("org_")
    assert first["project_id"].startswith("prj_")
    assert set(first["keys"]) == {"test_secret", "test_publishable"}
    for key in first["keys"].values():
        assert key in output  # printed for the user as well as saved
    assert first["keys"]["test_secret"].startswith("bk_sk_test_")
    assert first["dashboard_url"] in output
    assert (tmp_path / ".brik" / "brik.sqlite3").exists()
    assert (tmp_path / ".brik" / "dev.json").stat().st_mode & 0o077 == 0

    # A second run reuses the first one's data; its admin then revokes the test secret key
    # (creating another, so counting active keys cannot tell) and changes the password.
    port = free_port()
    process = start_dev(tmp_path, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(process, url)
        second = json.loads((tmp_path / ".brik" / "dev.json").read_text())
        assert second["org_id"] == first["org_id"]
        assert second["project_id"] == first["project_id"]
        assert second["keys"] == first["keys"]
        assert second["admin_password"] == first["admin_password"]
        with httpx.Client(base_url=url, timeout=10) as admin:
            credentials = {"email": first["admin_email"], "password": first["admin_password"]}
            assert admin.post("/v1/auth/login", json=credentials).status_code == 200
            keys = f"/v1/projects/{first['project_id']}/api_keys"
            [secret] = [k for k in admin.get(keys).json()["data"] if k["name"] == "test_secret"]
            assert admin.delete(f"{keys}/{secret['id']}").status_code == 200
            created = admin.post(keys, json={"name": "ci", "kind": "secret", "mode": "test"})
            assert created.status_code == 201, created.text
            changed = admin.post("/v1/user/password", json={
                "current_password": first["admin_password"],
                "new_password": "a new password of my own"})  # fmt: skip
            assert changed.status_code == 200, changed.text
    finally:
        stop(process)

    third, output, _ = run_once(tmp_path, password="a new password of my own")
    revoked = first["keys"]["test_secret"]
    assert third["keys"]["test_secret"] != revoked
    assert revoked not in output
    assert third["keys"]["test_secret"] in output
    assert first["admin_password"] not in output
    assert third["admin_password"] is None
    assert "changed" in output
