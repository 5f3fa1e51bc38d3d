"""Channel names: the rule, which are private, and that tenants and modes never share one."""

from __future__ import annotations

import pytest

from controlplane.models import KeyMode
from controlplane.realtime.channels import Channel, is_name, is_private, is_reserved


@pytest.mark.parametrize("name", ["scores", "room:42", "user:u_123", "a", "x" * 100, "A.b-c=d@e"])
def test_names_of_letters_digits_and_a_few_marks_are_channels(name: str) -> None:
    assert is_name(name)


@pytest.mark.parametrize("name", ["", "x" * 101, ":lead", "-lead", "sp ace", "été", "a/b", "a*"])
def test_anything_else_is_not(name: str) -> None:
    assert not is_name(name)


def test_private_and_user_channels_are_private_and_activity_channels_are_brik_s() -> None:
    assert is_private("private:room") and is_private("user:ann")  # noqa: PT018
    assert not is_private("activity:act_1") and not is_private("users")  # noqa: PT018
    assert is_reserved("activity:act_1") and not is_reserved("activities")  # noqa: PT018


def test_a_channel_lives_under_its_project_and_mode_in_redis() -> None:
    names = {
        Channel(project, mode, "scores").topic for project in ("prj_a", "prj_b") for mode in KeyMode
    }
    assert len(names) == 4
    history = Channel("prj_a", KeyMode.LIVE, "scores").history_key
    assert history not in names
    assert "prj_a" in history
