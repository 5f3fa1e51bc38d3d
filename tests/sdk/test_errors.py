"""The error tree drawn in ``brik.errors``' docstring is the classes' real hierarchy."""

from __future__ import annotations

import re

from brik import errors


def drawn_tree() -> dict[str, str | None]:
    """Each class the docstring draws, with the class drawn as its parent."""
    drawing = (errors.__doc__ or "").split("::", 1)[1].split("\n\n")[1]
    parents: dict[str, str | None] = {}
    above: list[tuple[int, str]] = []  # (column, name) of the classes above, outermost first
    for line in drawing.splitlines():
        found = re.match(r"(?P<prefix>[ │├└─]*)(?P<name>[A-Z][A-Za-z]*Error)\b", line)
        if found is None:
            continue  # a description's second line
        column = len(found["prefix"])
        while above and above[-1][0] >= column:
            above.pop()
        parents[found["name"]] = above[-1][1] if above else None
        above.append((column, found["name"]))
    return parents


def test_the_drawn_tree_is_every_exported_error_under_its_real_parent() -> None:
    tree = drawn_tree()
    assert sorted(tree) == sorted(errors.__all__)
    for name, parent in tree.items():
        base = getattr(errors, name).__bases__[0]
        assert base.__name__ == (parent or "Exception"), name
    assert tree["ConflictError"] == "APIError"
