"""Run ``brik-cloud bootstrap --json`` once and keep what it prints in a Kubernetes Secret.

The chart's bootstrap Job runs this with the image's own Python (standard library only). It
creates nothing: the chart makes the Secret, empty, and lets this Job's ServiceAccount read and
patch that one Secret and no other. Bootstrap prints keys only when it creates them, so:

- the Secret already holds a result → nothing to do (every upgrade runs the Job again);
- it is empty → run the command and patch its fields into the Secret;
- it is empty but the instance was bootstrapped before (the keys come back as null) → stop and
  say how to issue new ones, or with ``--rotate-keys-if-missing`` run the command again with
  ``--rotate-keys`` (the old keys are revoked).

Nothing secret is ever written to the log: only the names of the fields stored.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_SECONDS = 30
STORE_ATTEMPTS = 5


class ClusterError(Exception):
    """The Kubernetes API refused or could not be reached; the message says which."""


class Cluster:
    """The few calls this Job makes to the Kubernetes API, as its ServiceAccount."""

    def __init__(self, service_account_dir: Path) -> None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        self.base_url = f"https://{host}:{port}"
        self.token = (service_account_dir / "token").read_text().strip()
        self.namespace = (service_account_dir / "namespace").read_text().strip()
        self.tls = ssl.create_default_context(cafile=str(service_account_dir / "ca.crt"))

    def _call(self, method: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/namespaces/{self.namespace}/secrets/{name}"
        request = urllib.request.Request(url, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/merge-patch+json")
        try:
            with urllib.request.urlopen(
                request, data=data, timeout=TIMEOUT_SECONDS, context=self.tls
            ) as response:
                answer: dict[str, Any] = json.load(response)
                return answer
        except urllib.error.HTTPError as exc:
            raise ClusterError(
                f"{method} Secret {self.namespace}/{name}: HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.base_url}: {exc}"
            ) from None

    def secret_data(self, name: str) -> dict[str, str]:
        return dict(self._call("GET", name).get("data") or {})

    def store(self, name: str, fields: dict[str, str]) -> None:
        """Patch ``fields`` into the Secret, trying a few times: they exist nowhere else."""
        for attempt in range(STORE_ATTEMPTS):
            try:
                self._call("PATCH", name, {"stringData": fields})
                return
            except ClusterError as exc:
                if attempt == STORE_ATTEMPTS - 1:
                    raise
                print(f"{exc}; trying again", file=sys.stderr)
                time.sleep(2**attempt)


def run_bootstrap(command: list[str]) -> dict[str, Any]:
    """The command's JSON; its stderr goes to the log as it is (it holds no secret)."""
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(completed.returncode)
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def secret_fields(result: dict[str, Any]) -> dict[str, str]:
    """The Secret's keys: the result's fields, one per API key, and the whole document."""
    fields = {
        name: str(value) for name, value in result.items() if name != "keys" and value is not None
    }
    fields.update({name: key for name, key in result["keys"].items() if key})
    fields["bootstrap.json"] = json.dumps(result, indent=2)
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", required=True, help="the Secret to fill")
    parser.add_argument("--rotate-keys-if-missing", action="store_true")
    parser.add_argument("--service-account-dir", type=Path, default=SERVICE_ACCOUNT_DIR)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- brik-cloud bootstrap …")
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("give the bootstrap command after --")

    try:
        cluster = Cluster(options.service_account_dir)
        if cluster.secret_data(options.secret):
            print(f"Secret {options.secret} already holds the bootstrap result: nothing to do.")
            return 0
        result = run_bootstrap(command)
        if not any(result["keys"].values()):
            if not options.rotate_keys_if_missing:
                print(
                    f"This instance was bootstrapped before, but Secret {options.secret} is "
                    "empty, and API keys are shown only when they are created. To issue new "
                    "ones (revoking the old), set bootstrap.rotateKeysIfMissing=true and "
                    "upgrade, or run `brik-cloud bootstrap --rotate-keys --json` in an API pod.",
                    file=sys.stderr,
                )
                return 1
            result = run_bootstrap([*command, "--rotate-keys"])
        fields = secret_fields(result)
        cluster.store(options.secret, fields)
    except ClusterError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"Stored the bootstrap result in Secret {options.secret}: {', '.join(sorted(fields))}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
