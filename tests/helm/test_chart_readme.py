"""The chart's README documents every value it has, and no value it does not have."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.helm.conftest import CHART_DIR

README = (CHART_DIR / "README.md").read_text()
VALUES: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def documented() -> set[str]:
    section = README[README.index("## Parameters") :]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    names = set()
    for row in rows:
        first_cell = row.split(" | ")[0]
        names.update(re.findall(r"`([\w.]+)`", first_cell))
    return names


def test_every_value_is_in_the_parameters_table() -> None:
    names = documented()
    for leaf in leaves(VALUES):
        parts = leaf.split(".")
        covering = {".".join(parts[:end]) for end in range(1, len(parts) + 1)}
        assert covering & names, f"{leaf} is not documented in helm/brik-cloud/README.md"


def test_the_parameters_table_names_only_values_that_exist() -> None:
    paths = set(leaves(VALUES))
    prefixes = {".".join(path.split(".")[:end]) for path in paths for end in range(1, 9)}
    for name in documented():
        assert name in prefixes, f"README documents {name}, which values.yaml does not have"
