"""The SDK is its own distribution: it installs alone, needs only httpx, and is typed."""

from __future__ import annotations

import ast
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
    [wheel] = tmp_path.glob("brik-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert "brik/py.typed" in names
    assert {"brik/__init__.py", "brik/client.py", "brik/errors.py", "brik/resources.py",
            "brik/types.py"} <= names  # fmt: skip
    assert not any(name.startswith(("controlplane/", "workers/")) for name in names)
    assert metadata.get_all("Requires-Dist") == ["httpx<1,>=0.27"]
    assert metadata["Requires-Python"] == ">=3.10"


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
