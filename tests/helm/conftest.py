"""The chart rendered offline by the real Helm library (helm-python-sdk), no cluster needed.

``render`` returns the manifests of one install (or upgrade) as parsed objects; the value sets
the tests share are the chart's ``ci/`` files (``chart-testing`` lints with them too): the least
an install needs (:data:`MINIMAL`) and a production-like install (:data:`PRODUCTION`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_python import Chart

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "brik-cloud"
RELEASE = "brik"
NAMESPACE = "push"

MINIMAL: dict[str, Any] = yaml.safe_load((CHART_DIR / "ci" / "minimal-values.yaml").read_text())
PRODUCTION: dict[str, Any] = yaml.safe_load(
    (CHART_DIR / "ci" / "production-values.yaml").read_text()
)

Manifest = dict[str, Any]


class Rendered:
    """One rendering: the objects, by kind and name, and NOTES.txt."""

    def __init__(self, files: dict[str, str]) -> None:
        self.notes = ""
        self.objects: list[Manifest] = []
        for path, text in files.items():
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            self.objects.extend(doc for doc in yaml.safe_load_all(text) if doc)

    def of_kind(self, kind: str) -> list[Manifest]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> Manifest:
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {obj["metadata"]["name"] for obj in self.of_kind(kind)}

    def pod_specs(self) -> list[tuple[str, Manifest]]:
        """(owner, pod spec) of every Deployment, Job and Pod."""
        specs = []
        for obj in self.objects:
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            if obj["kind"] in ("Deployment", "Job"):
                specs.append((name, obj["spec"]["template"]["spec"]))
            elif obj["kind"] == "Pod":
                specs.append((name, obj["spec"]))
        return specs

    def secret_data(self, name: str) -> dict[str, str]:
        data = self.get("Secret", name).get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Values layered like repeated ``-f``/``--set``: later maps win, key by key."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


@pytest.fixture(scope="session")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Chart) -> Callable[..., Rendered]:
    def go(*layers: dict[str, Any], upgrade: bool = False) -> Rendered:
        files = chart.render(
            merged(*layers),
            name=RELEASE,
            namespace=NAMESPACE,
            is_install=not upgrade,
            is_upgrade=upgrade,
            revision=2 if upgrade else 1,
        )
        return Rendered(files)

    return go
