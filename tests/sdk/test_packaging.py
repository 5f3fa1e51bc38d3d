"""The SDK is its own distribution: it installs alone, needs only httpx, and is typed.

Its distribution is ``brik-sdk`` (``pip install brik-sdk``) and its package ``brik``
(``import brik``): the name ``brik`` on the public package index belongs to someone else, so
``pip install brik`` would install a stranger's code.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk"
STANDARD_LIBRARY = sys.stdlib_module_names


def test_the_wheel_holds_the_package_its_types_and_only_httpx_as_a_dependency(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(SDK)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("*.whl")
    assert wheel.name.startswith("brik_sdk-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert metadata["Name"] == "brik-sdk"
    assert "brik/py.typed" in names
    assert {"brik/__init__.py", "brik/client.py", "brik/errors.py", "brik/resources.py",
            "brik/types.py"} <= names  # fmt: skip
    assert not any(name.startswith(("controlplane/", "workers/")) for name in names)
    assert metadata.get_all("Requires-Dist") == ["httpx<1,>=0.27"]
    assert metadata["Requires-Python"] == ">=3.10"

    # Installed under its distribution name, it is still imported as ``brik``.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    probe = subprocess.run(
        [sys.executable, "-c",
         "import importlib.metadata, brik; print(brik.__file__); "
         "print(importlib.metadata.version('brik-sdk'))"],
        env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path,
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    location, installed_version = probe.stdout.split()
    assert Path(location).is_relative_to(target)
    assert installed_version == metadata["Version"]


def test_the_sdk_imports_nothing_but_the_standard_library_and_httpx() -> None:
    imported: set[str] = set()
    for source in (SDK / "brik").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    assert imported - STANDARD_LIBRARY - {"__future__"} == {"brik", "httpx"}


def test_mypy_strict_passes_for_python_3_10() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.10",
         "--no-incremental", str(SDK / "brik")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
