"""The import graph: one import path per name, no removed path, and no cycle.

Every ``import`` in the package, the tests, the benchmarks and the docs' scripts is read with
``ast`` (lazy imports inside functions included):

- a name is imported from the module that defines it (or, for the few names the public API
  promises at another path, from that path: :data:`CONTRACT_PATHS`), never through a module
  that merely imported it;
- no module of the package imports another in a circle, inside or across subpackages.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sharpdarts"

# The flat paths the package once served through an import hook; none of them imports now.
REMOVED_PATHS = (
    "sharpdarts.ops",
    "sharpdarts.fast",
    "sharpdarts.weighting",
    "sharpdarts.cells",
    "sharpdarts.models",
    "sharpdarts.multichannel",
    "sharpdarts.genotypes",
    "sharpdarts.schedules",
    "sharpdarts.metrics",
    "sharpdarts.configurables",
    "sharpdarts.architect",
    "sharpdarts.data",
    "sharpdarts.runs",
    "sharpdarts.store.runs",
    "sharpdarts.results",
    "sharpdarts.plots",
    "sharpdarts.cli",
)

# The public API's promised paths (the contracts in docs/api.md) for names defined elsewhere:
# path -> {name: the module that defines it}. Only these may be imported from a module that
# does not define them, and nobody imports them from their defining module instead.
CONTRACT_PATHS = {
    "sharpdarts.core.genotypes": {
        **dict.fromkeys(
            (
                "Genotype",
                "PRIMITIVES",
                "SHARPER_PRIMITIVES",
                "DARTS_PRIMITIVES",
                "MULTICHANNELNET_PRIMITIVES",
                "parse_cell",
            ),
            "sharpdarts.core.genotype_types",
        ),
        "RNN_PRIMITIVES": "sharpdarts.core.recurrent_genotypes",
    },
    "sharpdarts.nn.models": {
        **dict.fromkeys(("RNNModel", "RNNSearchModel"), "sharpdarts.nn.recurrent.model"),
        "SearchNetwork": "sharpdarts.nn.search_network",
    },
}

# What the DESIGN contracts name, each at its path: all of them import.
CONTRACT_NAMES = {
    "sharpdarts.core.genotypes": (
        "get",
        "Genotype",
        "PRIMITIVES",
        "SHARPER_PRIMITIVES",
        "DARTS_PRIMITIVES",
        "MULTICHANNELNET_PRIMITIVES",
        "RNN_PRIMITIVES",
        "parse_cell",
    ),
    "sharpdarts.core.schedules": ("cosine_power_annealing",),
    "sharpdarts.core.metrics": ("count_parameters", "multiply_adds"),
    "sharpdarts.nn.models": (
        "NetworkCIFAR",
        "NetworkImageNet",
        "SearchNetwork",
        "RNNModel",
        "RNNSearchModel",
        "load_original_state_dict",
    ),
    "sharpdarts.engine.architect": ("Architect",),
    "sharpdarts.nn.nb201": (
        "OPS",
        "NB201Network",
        "NB201SearchNetwork",
        "load_original_state_dict",
    ),
}


def _python_files() -> list[Path]:
    folders = ("sharpdarts", "tests", "benchmarks", "docs")
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


@functools.cache  # asked for each name each file uses: the files do not change during a run
def _module_file(dotted: str) -> tuple[Path | None, bool]:
    """The source file of a module of this repository, and whether it is a package."""
    base = ROOT.joinpath(*dotted.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    return None, False


@functools.cache
def _defined_names(dotted: str) -> frozenset[str] | None:
    """The names a module defines itself (and a package's submodules), or None if missing."""
    path, is_package = _module_file(dotted)
    if path is None:
        return None
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if is_package:
        names |= {p.stem for p in path.parent.glob("*.py")}
        names |= {p.parent.name for p in path.parent.glob("*/__init__.py")}
    return frozenset(names)


def _imports(tree: ast.AST) -> list[tuple[int, str, str | None]]:
    """(line, module, name) for each imported name (name None for ``import module``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


def _path_problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    module_aliases = {}  # local name -> module, for attribute access (store.Run)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sharp"):
            for alias in node.names:
                if _module_file(f"{node.module}.{alias.name}")[0] is not None:
                    module_aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name.startswith("sharpdarts"):
                    module_aliases[alias.asname] = alias.name
    uses = [(line, module, name) for line, module, name in _imports(tree) if name]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and not isinstance(node.ctx, ast.Store)  # a test patching where a name is used
        ):
            uses.append((node.lineno, module_aliases[node.value.id], node.attr))
    for line, module, name in _imports(tree):
        if module.split(".")[0] == "sharpdarts" and _module_file(module)[0] is None:
            problems.append(f"line {line}: {module} does not exist")
    for line, module, name in uses:
        if module.split(".")[0] != "sharpdarts" or name is None:
            continue
        defined = _defined_names(module)
        if defined is None:
            continue  # reported above
        promised = CONTRACT_PATHS.get(module, {})
        if name not in defined and name not in promised and not name.startswith("__"):
            problems.append(f"line {line}: {module}.{name} is not defined there")
        for contract_path, names in CONTRACT_PATHS.items():
            if names.get(name) == module and path.resolve() != _module_file(contract_path)[0]:
                problems.append(f"line {line}: import {name} from {contract_path}, its public path")
    return problems


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_each_name_is_imported_from_its_home(path):
    problems = _path_problems(path)
    assert not problems, f"{path.relative_to(ROOT)}: {problems}"


def test_the_path_checker_sees_a_reexport(tmp_path):
    """The rule bites: a name taken through a module that only imported it is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from sharpdarts.nn.cells import set_reference_path\n"
        "from sharpdarts.core.genotype_types import Genotype\n"
        "from sharpdarts.core import genotypes\n"
        "genotypes.resources\n"
        "import sharpdarts.models\n"
    )
    problems = " ".join(_path_problems(bad))
    assert "sharpdarts.nn.cells.set_reference_path is not defined there" in problems
    assert "import Genotype from sharpdarts.core.genotypes, its public path" in problems
    assert "sharpdarts.core.genotypes.resources is not defined there" in problems
    assert "sharpdarts.models does not exist" in problems


@pytest.mark.parametrize("old", REMOVED_PATHS)
def test_removed_paths_do_not_import(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


@pytest.mark.parametrize("module", sorted(CONTRACT_NAMES))
def test_contract_paths_import(module):
    loaded = importlib.import_module(module)
    for name in CONTRACT_NAMES[module]:
        assert hasattr(loaded, name), f"{module}.{name}"


def test_promised_paths_give_the_defining_object():
    for contract_path, names in CONTRACT_PATHS.items():
        for name, home in names.items():
            promised = getattr(importlib.import_module(contract_path), name)
            assert promised is getattr(importlib.import_module(home), name), name


# ---- cycles --------------------------------------------------------------------------------
def _package_modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _edges(modules: dict[str, Path], sources: dict[str, str]) -> dict[str, set[str]]:
    """module -> the package modules it imports (at any depth), each import resolved to the
    module it loads: ``from a.b import c`` loads ``a.b.c`` when that is a module, else
    ``a.b``. Importing a module loads its parent packages first, so those are edges too."""
    graph = {name: set() for name in modules}
    for name in modules:
        targets = set()
        for _, module, imported in _imports(ast.parse(sources[name])):
            if imported and f"{module}.{imported}" in modules:
                targets.add(f"{module}.{imported}")
            elif module in modules:
                targets.add(module)
        for target in targets:
            parts = target.split(".")
            graph[name] |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        graph[name].discard(name)
        parent = name.rsplit(".", 1)[0]
        if "." in name and parent != "sharpdarts":
            graph[name].add(parent)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    modules = _package_modules()
    sources = {name: path.read_text(encoding="utf-8") for name, path in modules.items()}
    cycles = _cycles(_edges(modules, sources))
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_checker_sees_a_lazy_cycle():
    """A function-level import that closes a circle (here face.cli <-> face.runner) fails."""
    modules = _package_modules()
    sources = {name: path.read_text(encoding="utf-8") for name, path in modules.items()}
    sources["sharpdarts.face.cli"] += "\ndef _f():\n    from sharpdarts.face import runner\n"
    sources["sharpdarts.face.runner"] += "\ndef _g():\n    from sharpdarts.face import cli\n"
    cycles = _cycles(_edges(modules, sources))
    assert any({"sharpdarts.face.cli", "sharpdarts.face.runner"} <= set(c) for c in cycles)
