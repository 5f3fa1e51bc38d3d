"""The bootstrap Job's script (helm/brik-cloud/files/store-bootstrap.py), end to end.

It runs as the Job runs it — a subprocess of Python with only the standard library, the real
``brik-cloud bootstrap --json`` on the test database — against a stand-in for the Kubernetes
API: HTTPS with its own CA, a bearer token, and one Secret it may read and patch (any other is
refused, as the chart's Role refuses it).
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import TEST_SECRET_KEY
from tests.helm.conftest import CHART_DIR
from tests.support.processes import brik_cloud_command, clean_environment

SCRIPT = CHART_DIR / "files" / "store-bootstrap.py"
NAMESPACE = "push"
SECRET = "brik-bootstrap"
TOKEN = "service-account-token"


class FakeKubernetes(ThreadingHTTPServer):
    """GET and merge-PATCH of one Secret in one namespace, for one bearer token."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.data: dict[str, str] = {}  # the Secret's data, base64 as the API keeps it
        self.requests: list[tuple[str, str]] = []

    def stored(self) -> dict[str, str]:
        return {key: base64.b64decode(value).decode() for key, value in self.data.items()}


class _Handler(BaseHTTPRequestHandler):
    server: FakeKubernetes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _allowed(self) -> bool:
        self.server.requests.append((self.command, self.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"kind": "Status", "reason": "Unauthorized"})
            return False
        if self.path != f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}":
            self._answer(403, {"kind": "Status", "reason": "Forbidden"})
            return False
        return True

    def _secret(self) -> dict[str, Any]:
        secret: dict[str, Any] = {"kind": "Secret", "metadata": {"name": SECRET}}
        if self.server.data:
            secret["data"] = dict(self.server.data)
        return secret

    def do_GET(self) -> None:
        if self._allowed():
            self._answer(200, self._secret())

    def do_PATCH(self) -> None:
        if not self._allowed():
            return
        assert self.headers["Content-Type"] == "application/merge-patch+json"
        patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for key, value in patch.get("stringData", {}).items():
            self.server.data[key] = base64.b64encode(value.encode()).decode()
        self._answer(200, self._secret())


@pytest.fixture
def kubernetes(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server = FakeKubernetes()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN + "\n")
    (account / "namespace").write_text(NAMESPACE)
    authority.cert_pem.write_to_path(str(account / "ca.crt"))
    try:
        yield server, account
    finally:
        server.shutdown()
        server.server_close()


def store(
    kubernetes: tuple[FakeKubernetes, Path],
    database_url: str,
    redis_url: str,
    email: str,
    *options: str,
    secret: str = SECRET,
) -> subprocess.CompletedProcess[str]:
    server, account = kubernetes
    command = [*brik_cloud_command(), "bootstrap", "--json", "--admin-email", email,
               "--org", f"Org of {email}", "--project", "App"]  # fmt: skip
    script = [
        sys.executable,
        str(SCRIPT),
        "--secret",
        secret,
        "--service-account-dir",
        str(account),
    ]
    return subprocess.run(
        [*script, *options, "--", *command],
        env=clean_environment(
            BRIK_DATABASE_URL=database_url,
            BRIK_REDIS_URL=redis_url,
            BRIK_SECRET_KEY=TEST_SECRET_KEY,
            KUBERNETES_SERVICE_HOST="127.0.0.1",
            KUBERNETES_SERVICE_PORT=str(server.server_address[1]),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.faults
@pytest.mark.database
def test_the_keys_are_stored_once_never_printed_and_refilled_only_by_rotation(
    kubernetes: tuple[FakeKubernetes, Path], database_url: str, redis_url: str
) -> None:
    server, _ = kubernetes
    first = store(kubernetes, database_url, redis_url, "first@example.com")
    assert first.returncode == 0, first.stderr
    stored = server.stored()
    assert stored["admin_email"] == "first@example.com"
    assert stored["live_secret"].startswith("bk_sk_live_")
    assert stored["test_publishable"].startswith("bk_pk_test_")
    assert stored["admin_password"]
    assert json.loads(stored["bootstrap.json"])["keys"]["live_secret"] == stored["live_secret"]
    for value in stored.values():
        if "@" not in value and "Org of" not in value:
            assert value not in first.stdout + first.stderr
    assert "live_secret" in first.stdout  # the names of what it stored, not the values

    # Every upgrade runs the Job again: a filled Secret is left as it is.
    again = store(kubernetes, database_url, redis_url, "first@example.com")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert server.stored() == stored
    assert [method for method, _ in server.requests].count("PATCH") == 1

    # Emptied (deleted and recreated by hand): the keys exist but cannot be shown again.
    server.data.clear()
    refused = store(kubernetes, database_url, redis_url, "first@example.com")
    assert refused.returncode == 1
    assert "rotateKeysIfMissing" in refused.stderr
    assert server.data == {}

    rotated = store(
        kubernetes, database_url, redis_url, "first@example.com", "--rotate-keys-if-missing"
    )
    assert rotated.returncode == 0, rotated.stderr
    fresh = server.stored()
    assert fresh["live_secret"].startswith("bk_sk_live_")
    assert fresh["live_secret"] != stored["live_secret"]
    assert fresh["org_id"] == stored["org_id"]


def test_a_secret_it_may_not_touch_is_an_error_not_a_traceback(
    kubernetes: tuple[FakeKubernetes, Path],
) -> None:
    refused = store(kubernetes, "postgres://nowhere/brik", "redis://nowhere", "x@example.com",
                    secret="someone-elses")  # fmt: skip
    assert refused.returncode == 1
    assert "HTTP 403" in refused.stderr
    assert "Traceback" not in refused.stderr
