from __future__ import annotations

import pytest

from controlplane.auth.keys import generate_key, hash_key, looks_like_key
from controlplane.models import KeyKind, KeyMode

PEPPER = "p" * 40


@pytest.mark.parametrize(
    ("kind", "mode", "prefix"),
    [
        (KeyKind.SECRET, KeyMode.TEST, "bk_sk_test_"),
        (KeyKind.SECRET, KeyMode.LIVE, "bk_sk_live_"),
        (KeyKind.PUBLISHABLE, KeyMode.TEST, "bk_pk_test_"),
        (KeyKind.PUBLISHABLE, KeyMode.LIVE, "bk_pk_live_"),
    ],
)
def test_key_shape_tells_kind_and_mode(kind: KeyKind, mode: KeyMode, prefix: str) -> None:
    issued = generate_key(kind, mode, PEPPER)
    assert issued.plaintext.startswith(prefix)
    assert len(issued.plaintext) == len(prefix) + 43 + 6
    assert issued.display_prefix == issued.plaintext[: len(prefix) + 4]
    assert issued.last_four == issued.plaintext[-4:]
    assert looks_like_key(issued.plaintext)


def test_stored_hash_is_peppered_and_not_the_key() -> None:
    issued = generate_key(KeyKind.SECRET, KeyMode.LIVE, PEPPER)
    assert issued.key_hash == hash_key(issued.plaintext, PEPPER)
    assert issued.key_hash != hash_key(issued.plaintext, "another pepper" * 3)
    assert issued.plaintext not in issued.key_hash


def test_keys_are_unique() -> None:
    keys = {generate_key(KeyKind.SECRET, KeyMode.TEST, PEPPER).plaintext for _ in range(200)}
    assert len(keys) == 200


def test_checksum_catches_a_changed_character() -> None:
    key = generate_key(KeyKind.SECRET, KeyMode.LIVE, PEPPER).plaintext
    position = len("bk_sk_live_") + 5
    replacement = "A" if key[position] != "A" else "B"
    tampered = key[:position] + replacement + key[position + 1 :]
    assert not looks_like_key(tampered)
    assert not looks_like_key("bk_sk_live_short")
    assert not looks_like_key(key.replace("bk_sk", "bk_xx"))
