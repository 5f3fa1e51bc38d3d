from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from controlplane.crypto import KeyRing, KeyRingError, UndecryptableSecret


def new_key() -> str:
    return Fernet.generate_key().decode()


def test_round_trip_and_no_plaintext_in_the_token() -> None:
    ring = KeyRing([new_key()])
    token = ring.encrypt(b"-----BEGIN PRIVATE KEY----- secret")
    assert b"secret" not in token.encode()
    assert ring.decrypt(token) == b"-----BEGIN PRIVATE KEY----- secret"
    assert ring.encrypt(b"x") != ring.encrypt(b"x")  # random IV per token


def test_rotation_old_tokens_still_open_and_rotate_to_the_newest_key() -> None:
    old, new = new_key(), new_key()
    token = KeyRing([old]).encrypt(b"apns key")
    ring = KeyRing([new, old])
    assert ring.decrypt(token) == b"apns key"
    assert not ring.is_current(token)
    rotated = ring.rotate(token)
    assert ring.is_current(rotated)
    # Once everything is rotated, the old key can leave the ring.
    assert KeyRing([new]).decrypt(rotated) == b"apns key"
    with pytest.raises(UndecryptableSecret):
        KeyRing([new]).decrypt(token)


def test_tampered_token_is_refused() -> None:
    ring = KeyRing([new_key()])
    token = ring.encrypt(b"fcm service account")
    tampered = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    with pytest.raises(UndecryptableSecret):
        ring.decrypt(tampered)
    with pytest.raises(UndecryptableSecret):
        ring.decrypt("not a token é")


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(KeyRingError, match="BRIK_ENCRYPTION_KEYS is empty"):
        KeyRing([])
    with pytest.raises(KeyRingError, match="entry 2 is not a Fernet key"):
        KeyRing([new_key(), "hunter2"])
