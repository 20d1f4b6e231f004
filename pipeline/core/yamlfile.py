"""YAML that a user edits, read strictly: a key given twice is an error, never a choice.

PyYAML keeps the last of two equal keys in a mapping without a word, so a second
`exclude:` silently replaces the first (a fit then trains on what the first excluded).
Every profile and target config is read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import InputError


def read_yaml(path: str | Path) -> Any:
    """The document in `path` (None when empty); InputError, with the line, for malformed
    YAML or a key given twice in one mapping (named by its dotted path)."""
    path = Path(path)
    loader = yaml.SafeLoader(path.read_text())
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicates(path, node, (), set())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, None, f"malformed YAML{line}: {problem}",
                         "fix the YAML syntax") from None
    finally:
        loader.dispose()


def _refuse_duplicates(path: Path, node: yaml.Node, at: tuple[str, ...],
                       visited: set[int]) -> None:
    if id(node) in visited:  # an alias of a node already checked (or a recursive one)
        return
    visited.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicates(path, item, (*at[:-1], f"{at[-1]}[{i}]") if at else (f"[{i}]",),
                               visited)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, yaml.Mark] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        mark = key_node.start_mark
        if key in seen:
            raise InputError(path, ".".join((*at, key)), f"given twice in one mapping, at "
                             f"{_place(seen[key], mark)} (YAML would silently keep only the "
                             "last)", "keep one of them, merging their values")
        seen[key] = mark
        _refuse_duplicates(path, value_node, (*at, key), visited)


def _place(first: yaml.Mark, again: yaml.Mark) -> str:
    if first.line == again.line:
        return f"line {first.line + 1}, columns {first.column + 1} and {again.column + 1}"
    return f"lines {first.line + 1} and {again.line + 1}"
