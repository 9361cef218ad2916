"""The import graph runs one way: face -> engine, store; engine -> nn -> core; store -> core.

Every ``import`` of every module, at any depth (lazy imports inside functions included), is
checked against the layer rules below (drawn in docs/layout.md), so a shortcut through the
layers fails here the moment it is written.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sharpdarts"
BASE = "base"  # registry, resources, errors: usable from every layer
LAYERS = ("core", "nn", "engine", "store", "face")
ALLOWED = {
    BASE: {BASE},
    "core": {BASE, "core"},
    "nn": {BASE, "core", "nn"},
    "engine": {BASE, "core", "nn", "engine"},
    "store": {BASE, "core", "store"},
    "face": {BASE, "core", "nn", "engine", "store", "face"},
}
# The package's own entry points sit above every layer.
ENTRY_POINTS = {"sharpdarts/__init__.py", "sharpdarts/__main__.py"}


def _layer_of_module(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "sharpdarts":
        return None
    if len(parts) == 1:
        return BASE  # the package itself: its version and the alias map, no layer
    return parts[1] if parts[1] in LAYERS else BASE


def _layer_of_file(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return _layer_of_module(".".join(relative.parts))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sharpdarts":  # from sharpdarts import x: x is the module
                found += [(node.lineno, f"sharpdarts.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(
    p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE.parent).as_posix() not in ENTRY_POINTS
)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_follow_the_layers(path):
    layer = _layer_of_file(path)
    wrong = []
    for line, module in _imports(path):
        target = _layer_of_module(module)
        if target is None:
            continue
        if target not in ALLOWED[layer]:
            wrong.append(f"line {line}: {module} ({target})")
    assert not wrong, f"{path.name} is in layer '{layer}' and may not import: {wrong}"


def test_the_checker_sees_a_violation(tmp_path):
    """The rules bite: a store module importing the engine is caught, lazily or not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    from sharpdarts.engine import jobs\n    import sharpdarts.nn.ops\n"
    )
    targets = {_layer_of_module(m) for _, m in _imports(bad)}
    assert targets == {"engine", "nn"}
    assert not targets <= ALLOWED["store"]
