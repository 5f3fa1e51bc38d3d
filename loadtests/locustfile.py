"""The HTTP API under load: what a tenant's app servers and devices do all day.

Run by ``loadtests/http_api.py`` (which starts a real server and worker and hands over a test
secret key in ``BRIK_BENCH_API_KEY``), or against any Brik Cloud with a test-mode secret key:

    BRIK_BENCH_API_KEY=bk_sk_test_… locust -f loadtests/locustfile.py --host http://localhost:8000

Test mode, so the sandbox provider answers and nothing reaches Apple or Google. The mix, by
weight: devices register (the most frequent call, one per app launch), app servers send a push
to one user with an ``Idempotency-Key`` and read pushes back, dashboards page through devices.
``--tags pushes`` runs only the sends.
"""

from __future__ import annotations

import os
import random
import secrets
import uuid

from locust import FastHttpUser, between, tag, task

# The tenant's own user ids the load spreads over (http_api.py --recipients sets it).
USERS_PER_PROJECT = int(os.environ.get("BRIK_BENCH_RECIPIENTS", "1000"))


class Tenant(FastHttpUser):
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {os.environ['BRIK_BENCH_API_KEY']}"}
        self.push_ids: list[str] = []

    @task(5)
    def register_device(self) -> None:
        self.client.post(
            "/v1/devices",
            json={
                "token": secrets.token_hex(32),
                "platform": "ios",
                "user_id": f"user-{random.randrange(USERS_PER_PROJECT)}",
                "tags": ["load"],
            },
            headers=self.headers,
            name="POST /v1/devices",
        )

    @tag("pushes")  # ``http_api.py --pushes-only`` runs this task alone
    @task(3)
    def send_to_one_user(self) -> None:
        response = self.client.post(
            "/v1/pushes",
            json={
                "kind": "alert",
                "alert": {"title": "Order shipped", "body": "Arriving tomorrow"},
                "to": {"user_ids": [f"user-{random.randrange(USERS_PER_PROJECT)}"]},
            },
            headers={**self.headers, "Idempotency-Key": str(uuid.uuid4())},
            name="POST /v1/pushes",
        )
        if response.status_code == 202:
            self.push_ids = [*self.push_ids[-20:], response.json()["id"]]

    @task(2)
    def read_push(self) -> None:
        if not self.push_ids:
            return
        self.client.get(
            f"/v1/pushes/{random.choice(self.push_ids)}",
            headers=self.headers,
            name="GET /v1/pushes/{id}",
        )

    @task(1)
    def list_devices(self) -> None:
        self.client.get(
            "/v1/devices?limit=20&tag=load", headers=self.headers, name="GET /v1/devices"
        )
