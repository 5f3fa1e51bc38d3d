"""The README's reference tables say what the code does: roles, scopes, audit actions, settings."""

from __future__ import annotations

import re
from pathlib import Path

from controlplane.audit import AUDITED_ACTIONS
from controlplane.auth.permissions import MATRIX, Permission
from controlplane.auth.scopes import ALLOWED_SCOPES, SECRET_SCOPES
from controlplane.models import KeyKind, Role
from controlplane.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def table_after(header: str) -> list[list[str]]:
    """The rows (cells stripped of backticks) of the Markdown table whose header is ``header``."""
    lines = README[README.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def test_the_role_table_is_the_permission_matrix() -> None:
    rows = table_after("| permission | owner | admin | developer | viewer |")
    documented = {
        Role(role): {Permission(row[0]) for row in rows if row[column] == "✓"}
        for column, role in enumerate(["owner", "admin", "developer", "viewer"], start=1)
    }
    assert documented == MATRIX
    assert {row[0] for row in rows} == {permission.value for permission in Permission}


def test_the_scope_table_is_what_each_key_kind_may_hold() -> None:
    rows = table_after("| scope | publishable | secret |")
    assert {row[0] for row in rows if row[1] == "✓"} == ALLOWED_SCOPES[KeyKind.PUBLISHABLE]
    assert {row[0] for row in rows if row[2] == "✓"} == SECRET_SCOPES


def test_every_audited_action_is_documented() -> None:
    rows = table_after("| action | recorded when |")
    assert [row[0] for row in rows] == list(AUDITED_ACTIONS)


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"`(BRIK_[A-Z0-9_]+)`", README))
    for name in Settings.model_fields:
        assert f"BRIK_{name.upper()}" in documented, name
