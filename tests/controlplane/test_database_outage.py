"""PostgreSQL going away under a running API: a 503 naming the database, not a 500.

Not marked ``database``: it cuts a real PostgreSQL connection, which the SQLite dialect run has
no counterpart for. ``serve`` reaches the session's PostgreSQL through a TCP forwarder the test
closes once the API is up.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx

from controlplane.auth.keys import ACCESS_TOKEN_PREFIX, generate_secret
from tests.conftest import TEST_SECRET_KEY
from tests.support.processes import free_port, running_command, server_environment


class Forwarder:
    """127.0.0.1:<port> → ``upstream`` in threads (the API is started by a blocking helper),
    until :meth:`cut` closes the listener and every connection."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # cut
            if self._cut:
                client.close()
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._cut = True
        with contextlib.suppress(OSError):  # wakes the accept() under way (Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@contextlib.contextmanager
def forwarded(database_url: str) -> Iterator[tuple[Forwarder, str]]:
    """A forwarder to ``database_url``'s server, and the same URL through it."""
    parts = urlsplit(database_url)
    forwarder = Forwarder((parts.hostname or "127.0.0.1", parts.port or 5432))
    user, at, _ = parts.netloc.rpartition("@")
    try:
        yield forwarder, urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{forwarder.port}"))
    finally:
        forwarder.cut()


async def test_a_database_outage_is_a_503_that_names_the_database(
    database_url: str, redis_url: str
) -> None:
    token = generate_secret(ACCESS_TOKEN_PREFIX, TEST_SECRET_KEY).plaintext
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with forwarded(database_url) as (forwarder, via_forwarder):
        env = server_environment(via_forwarder, redis_url, "brik-test:db-outage")
        with running_command("serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                             ready_url=f"{url}/healthz"):  # fmt: skip
            async with httpx.AsyncClient(base_url=url) as client:
                forwarder.cut()  # PostgreSQL is gone for this API
                login = await client.post(
                    "/v1/auth/login", json={"email": "ada@example.com", "password": "a password"}
                )
                user = await client.get("/v1/user", headers={"Authorization": f"Bearer {token}"})
                ready = await client.get("/readyz")
    for response in (login, user):
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "api_error", "dependency_unavailable", "database",
        )  # fmt: skip
        assert "database is unavailable" in error["message"]
    assert ready.status_code == 503
