"""The README and docs/ say what the code does.

Reference tables (roles, scopes, audit actions, settings) are compared with the code they
describe, and what the docs tell a reader to type — the README's two commands, `brik-cloud`
subcommands and their options, `/v1` operations, `BRIK_*` variables, benchmark options, links
to other files — is checked against what exists, so a renamed option or a removed route makes
a test fail instead of a reader's first attempt.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from controlplane.api.v1 import OPERATIONS
from controlplane.audit import AUDITED_ACTIONS
from controlplane.auth.permissions import MATRIX, Permission
from controlplane.auth.scopes import ALLOWED_SCOPES, SECRET_SCOPES
from controlplane.cli import main as cli
from controlplane.models import KeyKind, Role
from controlplane.settings import Settings
from controlplane.webhook_events import EVENT_TYPES, TEST_EVENT

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Every page a reader is sent to: the front door, docs/, and the READMEs of the parts.
PAGES = [README, *DOCS, ROOT / "sdk" / "README.md", ROOT / "loadtests" / "README.md",
         ROOT / "helm" / "README.md", ROOT / "helm" / "brik-cloud" / "README.md"]  # fmt: skip
# BRIK_* names that are not server settings: the test suite's, the SDK's and the benchmarks'
# own variables, `bootstrap`'s password option and the compose file's image.
OTHER_VARIABLES = {
    "BRIK_TEST_DATABASE_URL",
    "BRIK_TEST_REDIS_URL",
    "BRIK_API_KEY",
    "BRIK_API_URL",
    "BRIK_BOOTSTRAP_ADMIN_PASSWORD",
    "BRIK_BENCH_DATABASE_URL",
    "BRIK_BENCH_REDIS_URL",
    "BRIK_BENCH_API_KEY",
    "BRIK_UPDATE_SCREENSHOTS",  # tests/dashboard/test_journey.py: refresh the docs' pictures
    # The docker compose file's image (helm/compose/compose.yaml).
    "BRIK_IMAGE",
}


def text(page: Path) -> str:
    return page.read_text()


def table_after(page: str, header: str) -> list[list[str]]:
    """The rows (cells stripped of backticks) of the Markdown table whose header is ``header``."""
    source = text(ROOT / page)
    lines = source[source.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def code_blocks(source: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", source, flags=re.DOTALL)


def commands(source: str) -> list[str]:
    """Shell lines of ``sh`` code blocks and inline code spans, comments dropped."""
    lines = [
        line.split(" #")[0].strip()
        for block in re.findall(r"```sh\n(.*?)```", source, flags=re.DOTALL)
        for line in block.replace("\\\n", " ").splitlines()
    ]
    inline = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", source)
    return [line for line in [*lines, *inline] if line]


# --- reference tables -------------------------------------------------------------------------


def test_the_role_table_is_the_permission_matrix() -> None:
    rows = table_after("docs/accounts.md", "| permission | owner | admin | developer | viewer |")
    documented = {
        Role(role): {Permission(row[0]) for row in rows if row[column] == "✓"}
        for column, role in enumerate(["owner", "admin", "developer", "viewer"], start=1)
    }
    assert documented == MATRIX
    assert {row[0] for row in rows} == {permission.value for permission in Permission}


def test_the_scope_table_is_what_each_key_kind_may_hold() -> None:
    rows = table_after("docs/api.md", "| scope | publishable | secret |")
    assert {row[0] for row in rows if row[1] == "✓"} == ALLOWED_SCOPES[KeyKind.PUBLISHABLE]
    assert {row[0] for row in rows if row[2] == "✓"} == SECRET_SCOPES


def test_every_audited_action_is_documented() -> None:
    rows = table_after("docs/accounts.md", "| action | recorded when |")
    assert [row[0] for row in rows] == list(AUDITED_ACTIONS)


def test_the_webhook_event_tables_are_the_catalogue() -> None:
    rows = table_after("docs/webhooks.md", "| event | sent when |")
    assert {row[0]: row[1] for row in rows} == EVENT_TYPES
    payloads = table_after("docs/webhooks.md", "| event | `data.object` |")
    assert [row[0] for row in payloads] == [*EVENT_TYPES, TEST_EVENT]


def _documented_default(value: object) -> str | None:
    """How the configuration table writes a default value; None: the setting has none."""
    if value is None or value == []:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_configuration_table_is_the_settings() -> None:
    rows = table_after("docs/configuration.md", "| variable | default | meaning |")
    documented: dict[str, str] = {}
    for name_cell, default_cell, _meaning in rows:
        for name in re.findall(r"BRIK_[A-Z0-9_]+", name_cell):
            documented[name] = default_cell
    expected = {f"BRIK_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert sorted(documented) == sorted(expected), "the table and controlplane/settings.py differ"
    for name, field in expected.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        written = _documented_default(default)
        # A setting without a default is described in words ("—", "system trust store" …).
        if written is not None:
            assert documented[name] == written, f"{name}: the default is {written!r}"


# --- what the docs tell a reader to type ------------------------------------------------------


def test_the_readme_has_the_two_commands_and_ci_runs_the_second() -> None:
    readme = text(README)
    dev = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/brik-cloud dev"
    suite = 'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/pytest'
    blocks = [block.strip() for block in code_blocks(readme)]
    assert dev in blocks
    assert suite in blocks
    assert suite in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_brik_cloud_command_and_option_exists(page: Path) -> None:
    assert isinstance(cli, click.Group)
    for line in commands(text(page)):
        for match in re.finditer(r"brik-cloud ([a-z][a-z-]*)((?: [^|;&>]*)?)", line):
            name, rest = match.group(1), match.group(2)
            command = cli.commands.get(name)
            assert command is not None, f"{page.name}: `brik-cloud {name}` is not a command"
            options = {opt for param in command.params for opt in param.opts}
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                assert option in options, f"{page.name}: `brik-cloud {name}` has no {option}"


def _served(method: str, path: str) -> bool:
    """Whether the app serves ``method path`` (the docs write ids as ``{id}`` or real values)."""
    for operation in OPERATIONS:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(operation.path))
        if operation.method == method and re.fullmatch(pattern, path):
            return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_documented_v1_operation_is_served(page: Path) -> None:
    # Not the tour's deliberate miss ("No route for GET /v1/nothing").
    pattern = r"(?<!for )\b(GET|POST|PUT|PATCH|DELETE) (/v1/[\w/{}.-]*[\w}])"
    for method, path in re.findall(pattern, text(page)):
        assert _served(method, path), f"{page.name}: {method} {path} is not served"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_documented_variable_exists(page: Path) -> None:
    settings = {f"BRIK_{name.upper()}" for name in Settings.model_fields}
    for name in set(re.findall(r"\bBRIK_[A-Z0-9_]*[A-Z0-9]\b", text(page))):
        assert name in settings | OTHER_VARIABLES, f"{page.name}: {name} is not a setting"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text(page)):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def _benchmark_options(module: str) -> set[str]:
    completed = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", completed.stdout))


def test_every_benchmark_command_runs_with_options_it_has() -> None:
    documented: dict[str, set[str]] = {}
    for page in PAGES:
        for line in commands(text(page)):
            for module, rest in re.findall(r"python -m (loadtests\.\w+)((?: [^|;&>]*)?)", line):
                documented.setdefault(module, set()).update(
                    re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest)
                )
    assert {"loadtests.pipeline", "loadtests.http_api"} <= documented.keys()
    for module, options in documented.items():
        assert options <= _benchmark_options(module), module


def test_the_docs_give_the_reconcilers_delay_its_settings_make() -> None:
    # A delivery whose job was lost waits out the grace, then up to one period for the next run.
    fields = Settings.model_fields
    worst = fields["reconcile_grace_seconds"].default + fields["reconcile_every_seconds"].default
    assert worst == 120
    for page in PAGES:
        prose = " ".join(text(page).split())
        assert not re.search(r"reconciler[^.]{0,80}within a minute", prose), page.name
    assert "within about two minutes" in text(ROOT / "docs" / "operations.md")
