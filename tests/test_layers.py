"""The layers import in one direction; this test reads every module's imports and keeps it so.

::

    composition roots  controlplane/cli.py, dev.py (start a worker), app.py (builds the API),
                       __main__.py
          │
          ├──▶ HTTP layer   controlplane/api/, controlplane/middleware/,
          │                 controlplane/dashboard/ (pages over the API's operations)
          │        │
          │        ▼
          └──▶ domain       the rest of controlplane/ (services, auth, models, …)  ◀── workers/
                   │                                                                     │
                   ▼                                                                     │
               shared core  controlplane/core/  ◀────────────────────────────────────────┘

The worker and the HTTP layer are two doors onto the same domain: neither imports the other.
The domain never imports a door, and takes no Starlette ``Request`` or API ``Call`` — it gets
what it needs (an organization, an origin, a send function). The shared core imports only
itself. The only way from ``controlplane`` into ``workers`` is a composition root, each allowed
exactly the import named in :data:`ROOT_IMPORTS`. The SDK is its own distribution and imports
neither.

Imports are read with :mod:`ast` from the source — those inside functions and under
``TYPE_CHECKING`` too, since they couple modules just the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"controlplane": ROOT / "controlplane", "workers": ROOT / "workers",
            "brik": ROOT / "sdk" / "brik"}  # fmt: skip

HTTP = ("controlplane.api", "controlplane.middleware", "controlplane.dashboard")
CORE = ("controlplane.core",)
# The composition roots, and the one thing each may take from the worker package.
ROOT_IMPORTS = {
    # `brik-cloud worker` and `brik-cloud dev` run a worker: that is their job.
    "controlplane.cli": {"workers.worker"},
    "controlplane.dev": {"workers.worker"},
    # create_app hands the API the provider registry (app.state.providers), which the HTTP layer
    # knows only as controlplane.payloads.ProviderCatalog: who sends to which platform, and how
    # big a push is on each provider's wire (the 4 KB check at accept time).
    # And the APNs channel manager (app.state.channels), known to the API only as
    # controlplane.activities.BroadcastChannels: a broadcast Live Activity opens its channel.
    "controlplane.app": {"workers.providers.registry", "workers.providers.apns_channels"},
    # `python -m controlplane` runs the CLI; it takes nothing from workers itself.
    "controlplane.__main__": set(),
}
ROOTS = tuple(ROOT_IMPORTS)
# Domain modules that read HTTP requests by nature, and so may take a Request.
HTTP_EDGE = {
    # Its exception handlers render the error tree for Starlette; the tree itself is plain.
    "controlplane.errors": "renders errors as responses",
    # Credentials arrive on requests: session cookies and bearer tokens, the OIDC redirect.
    "controlplane.auth.admin": "reads the session cookie or bearer token",
    "controlplane.auth.sessions": "sets and reads the session cookie",
    "controlplane.auth.oidc": "runs the OIDC redirect and callback",
}
REQUEST_TYPES = {"Request", "Call"}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} imports {self.imported} (line {self.line})"


def _module_name(package: str, path: Path) -> str:
    parts = path.relative_to(PACKAGES[package]).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            found[_module_name(package, path)] = path
    return found


def imports_of(name: str, source: str, known: set[str]) -> Iterator[Import]:
    """Every module of ours that ``source`` (module ``name``) imports, wherever it does."""
    package = name if name in known and _is_package(name, known) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(name, sub if sub in known else base, node.lineno)


def _is_package(name: str, known: set[str]) -> bool:
    return any(other.startswith(name + ".") for other in known)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _is_domain(name: str) -> bool:
    return name.startswith("controlplane") and not _within(name, HTTP + ROOTS + CORE)


def _broken_rule(importer: str, target: str) -> str | None:
    """The rule ``importer`` breaks by importing ``target``, if any."""
    ours = ("controlplane", "workers")
    if importer.startswith("controlplane") and _within(target, ("workers",)):
        if target in ROOT_IMPORTS.get(importer, set()):
            return None
        return "controlplane imports workers only in a composition root"
    if importer.startswith("workers") and _within(target, HTTP + ROOTS):
        return "the worker uses the domain, never the HTTP layer or a root"
    if _is_domain(importer) and _within(target, HTTP + ROOTS):
        return "domain code never imports the HTTP layer or a root"
    if _is_domain(importer) and importer not in HTTP_EDGE and target == "starlette.requests":
        return "domain code takes no Starlette Request"
    if _within(importer, CORE) and _within(target, ours) and not _within(target, CORE):
        return "the shared core imports only itself"
    if importer.startswith("brik") and _within(target, ours):
        return "the SDK is its own distribution"
    return None


def layer_violations(name: str, source: str, known: set[str]) -> list[str]:
    """What in module ``name`` breaks the layering, each with the rule it breaks."""
    wrong = []
    for found in dict.fromkeys(imports_of(name, source, known)):  # once per module and line
        rule = _broken_rule(name, found.imported)
        if rule is not None:
            wrong.append(f"{found}: {rule}")
    if _is_domain(name) and name not in HTTP_EDGE:
        wrong += [f"{name}: {problem}: domain code takes no Request or Call; pass what it needs"
                  for problem in _request_parameters(source)]  # fmt: skip
    return wrong


def _request_parameters(source: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        arguments = node.args
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
            if argument.annotation is not None and _names_request(argument.annotation):
                yield f"{node.name}({argument.arg}) on line {node.lineno}"


def _names_request(annotation: ast.expr) -> bool:
    for part in ast.walk(annotation):
        if isinstance(part, ast.Name) and part.id in REQUEST_TYPES:
            return True
        if isinstance(part, ast.Attribute) and part.attr in REQUEST_TYPES:
            return True
        written = part.value if isinstance(part, ast.Constant) else None
        if isinstance(written, str) and REQUEST_TYPES & set(written.replace("|", " ").split()):
            return True
    return False


def test_every_module_imports_in_the_direction_of_the_layers() -> None:
    found = modules()
    known = set(found)
    wrong = [
        problem
        for name, path in found.items()
        for problem in layer_violations(name, path.read_text(), known)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_the_whole_tree_and_every_allowed_import_is_still_needed() -> None:
    found = modules()
    known = set(found)
    assert {"controlplane.core.queue", "workers.providers.registry", "brik.client"} <= known
    assert len(found) > 100  # not vacuously green
    for root, allowed in ROOT_IMPORTS.items():
        used = {i.imported for i in imports_of(root, found[root].read_text(), known)}
        assert allowed <= used, f"{root} no longer needs {allowed - used}: drop the exception"
    for edge in HTTP_EDGE:
        assert edge in known, f"{edge} is gone: drop its exception"


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("controlplane.billing", "from workers.providers import apns\n", "composition root"),
        ("controlplane.api.pushes", "import workers.queue\n", "composition root"),
        ("controlplane.app", "from workers.worker import run_worker\n", "composition root"),
        ("workers.tasks.deliver", "from controlplane.api.routing import Call\n", "HTTP layer"),
        ("workers.worker", "from controlplane import app\n", "HTTP layer or a root"),
        ("controlplane.usage_alerts",
         "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
         "    from controlplane.api.routing import Call\n", "never imports the HTTP layer"),
        ("controlplane.audit", "from starlette.requests import Request\n", "no Starlette Request"),
        ("controlplane.usage_alerts", "async def warn(call: Call) -> None: ...\n",
         "takes no Request or Call"),
        ("controlplane.billing", "def f(request: 'Request | None') -> None: ...\n",
         "takes no Request or Call"),
        ("controlplane.core.queue", "from controlplane.models import Push\n", "only itself"),
        ("controlplane.core.queue", "from . import keyspace\nfrom .. import settings\n",
         "only itself"),
        ("brik.client", "from controlplane.errors import APIError\n", "own distribution"),
    ],
)  # fmt: skip
def test_a_forbidden_import_is_caught(module: str, source: str, rule: str) -> None:
    known = set(modules())
    problems = layer_violations(module, source, known)
    assert problems, f"{module}: {source!r} passed"
    assert all(rule in problem for problem in problems), problems


def test_what_the_layers_allow_passes() -> None:
    known = set(modules())
    allowed = {
        "workers.tasks.deliver": "from controlplane.models import Push\n",
        "controlplane.api.pushes": "from controlplane.core.queue import enqueue_deliveries\n",
        "controlplane.cli": "from workers.worker import run_worker\n",
        "controlplane.auth.admin": "from starlette.requests import Request\n",
        "controlplane.core.queue": "from controlplane.core import keyspace\n",
    }
    for module, source in allowed.items():
        assert layer_violations(module, source, known) == [], module
