"""Imports go down: a stage of `pipeline/` imports only the stages before it in the data's
flow, so each can be read, tested and changed without the ones after it.

The order is the asset graph's: core, microdata, engine, source, targets, package, fit,
sparsity, publish, validate, release; then the composition layer (config: the profile that
composes every stage's settings, and cli). A stage that needs a setting takes it as an
argument; none imports config.
"""

import ast
from pathlib import Path

import pipeline

ORDER = ("core", "microdata", "engine", "source", "targets", "package", "fit", "sparsity",
         "publish", "validate", "release", "config", "cli")
RANK = {name: i for i, name in enumerate(ORDER)}
ROOT = Path(pipeline.__file__).parent


def _layer(module: str) -> str | None:
    """The stage (or composition layer) a dotted `pipeline.` module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pipeline" else None


def _imported(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, module) of every pipeline import, at the top or inside a function."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")[:-node.level]
                base = ".".join([*package, base] if base else package)
            found.append((node.lineno, base))
            if base == "pipeline":  # `from pipeline import fit`
                found += [(node.lineno, f"pipeline.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("pipeline.")]


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        own = _layer(module)
        if own is None:  # pipeline/__init__.py
            continue
        for line, name in _imported(ast.parse(path.read_text(), str(path)), module):
            other = _layer(name)
            if other not in RANK or own not in RANK:
                problems.append(f"{path}:{line}: {own or module} or {other} is in no layer "
                                f"of ORDER; add it where it belongs in the data's flow")
            elif RANK[other] > RANK[own]:
                problems.append(f"{path}:{line}: {own} imports {name}, a later stage")
    return problems


def test_stages_import_only_the_stages_before_them():
    problems = upward_imports()
    assert not problems, "imports must go down (tests/test_imports_go_down.py):\n" + "\n".join(
        problems)


def test_every_stage_package_has_a_place_in_the_order():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in ROOT.glob("*.py")} - {"__init__"}
    assert packages | modules == set(ORDER)


def test_an_upward_import_is_caught():
    """The check itself: a fit module importing sparsity is named."""
    tree = ast.parse("from pipeline.sparsity.search import search\nimport pipeline.core.errors\n"
                     "def f():\n    from pipeline import release\n")
    found = _imported(tree, "pipeline.fit.training")
    assert found == [(1, "pipeline.sparsity.search"), (2, "pipeline.core.errors"),
                     (4, "pipeline.release")]
    upward = [name for _, name in found if RANK[_layer(name)] > RANK["fit"]]
    assert upward == ["pipeline.sparsity.search", "pipeline.release"]
