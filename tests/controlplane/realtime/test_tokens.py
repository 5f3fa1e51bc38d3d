"""Subscribe tokens: what they open, and what they refuse to open."""

from __future__ import annotations

import time

import pytest

from controlplane.models import KeyMode
from controlplane.realtime.tokens import Grant, InvalidToken, mint, verify

KEY = "k" * 48
OLD_KEY = "o" * 48
NOW = time.time()


def grant(*channels: str, expires_in: int = 600, mode: KeyMode = KeyMode.TEST) -> Grant:
    return Grant("prj_a", mode, channels, int(NOW) + expires_in)


def opens(token: str, keys: list[str] | None = None, **where: object) -> Grant:
    return verify(token, keys or [KEY], project_id=str(where.get("project", "prj_a")),
                  mode=where.get("mode", KeyMode.TEST), now=NOW)  # type: ignore[arg-type]  # fmt: skip


def test_a_token_opens_its_channels_and_the_names_under_its_prefixes_only() -> None:
    opened = opens(mint(grant("private:room-1", "user:ann:*"), KEY))
    assert opened.allows("private:room-1")
    assert opened.allows("user:ann:inbox")
    assert opened.allows("user:ann:")
    assert not opened.allows("private:room-10")
    assert not opened.allows("user:anne:inbox")
    assert not opened.allows("private:room-")


def test_a_token_signed_before_a_secret_key_rotation_still_opens_until_it_expires() -> None:
    token = mint(grant("private:x"), OLD_KEY)
    assert opens(token, [KEY, OLD_KEY]).channels == ("private:x",)
    with pytest.raises(InvalidToken, match="signature"):
        opens(token, [KEY])


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (mint(grant("private:x", expires_in=0), KEY), "expired"),
        (mint(grant("private:x"), "another server's secret key, long enough"), "signature"),
        (mint(grant("private:x", mode=KeyMode.LIVE), KEY), "another project or mode"),
        ("bk_rt_", "not a subscribe token"),
        ("bk_sk_test_abc.def", "not a subscribe token"),
        ("bk_rt_e30.é", "signature"),
    ],
)
def test_a_token_that_is_expired_forged_or_for_another_mode_opens_nothing(
    token: str, why: str
) -> None:
    with pytest.raises(InvalidToken, match=why):
        opens(token)


def test_a_token_whose_payload_was_altered_fails_its_signature() -> None:
    token = mint(grant("private:x"), KEY)
    payload, signature = token.removeprefix("bk_rt_").split(".")
    wider = mint(grant("private:*"), KEY).removeprefix("bk_rt_").split(".")[0]
    with pytest.raises(InvalidToken, match="signature"):
        opens(f"bk_rt_{wider}.{signature}")
    with pytest.raises(InvalidToken, match="another project"):
        opens(token, project="prj_b")
    assert payload != wider
