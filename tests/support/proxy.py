"""A TCP proxy that can drop a connection at the worst moment: after the server has taken a
request and answered it, before the answer reaches the client (for retry tests)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class DroppingProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; drops the first ``drops`` connections whose
    request contains ``marker``, once the server's answer starts coming back."""

    def __init__(self, upstream: tuple[str, int], marker: bytes, drops: int = 1) -> None:
        self.upstream = upstream
        self.marker = marker
        self.drops_left = drops
        self.dropped = 0
        self.seen = 0  # requests that carried the marker
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closing = False

    def _take_drop(self) -> bool:
        with self._lock:
            if self.drops_left <= 0:
                return False
            self.drops_left -= 1
            self.dropped += 1
            return True

    def serve(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        state = {"marked": False}

        def upstream_bound() -> None:
            with contextlib.suppress(OSError):
                while chunk := client.recv(65536):
                    if self.marker in chunk:
                        state["marked"] = True
                        with self._lock:
                            self.seen += 1
                    server.sendall(chunk)
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)

        threading.Thread(target=upstream_bound, daemon=True).start()
        with contextlib.suppress(OSError):
            while chunk := server.recv(65536):
                if state["marked"] and self._take_drop():
                    break  # the server answered; the client never hears it
                state["marked"] = False
                client.sendall(chunk)
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closing = True
        self._listener.close()


@contextlib.contextmanager
def dropping_proxy(upstream_url: str, marker: bytes, drops: int = 1) -> Iterator[DroppingProxy]:
    host, port = upstream_url.removeprefix("http://").split(":")
    proxy = DroppingProxy((host, int(port)), marker, drops)
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
