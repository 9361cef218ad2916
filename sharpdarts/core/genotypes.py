"""Genotypes, primitive sets, the named-genotype registry (read side), resolution and parsing.

A *genotype* describes an architecture found by a search. Three layouts exist:

- ``'cell'``: DARTS-style cells. ``normal`` and ``reduce`` list ``(op_name, input_index)``
  pairs, two per intermediate node; ``*_concat`` lists the states concatenated as output.
- ``'raw_weights'``: the softmax weights of a search, kept as nested lists (the original
  multi-channel search stored its result this way).
- ``'path'``: a multi-channel (HyperCuboid) path; ``normal`` lists its node names and the
  other fields are empty.

Named genotypes come from two places: the published ones in ``reference/genotypes.json``
(shipped with the package; the *builtin* names) and a user registry file holding genotypes
promoted from search runs together with their lineage. By default the user registry is
``experiments/genotypes.json`` under ``sharpdarts.resources.writable_root()`` (the project
root); the environment variable ``SHARPDARTS_GENOTYPES`` names another file. Builtin names
always win and cannot be shadowed.

This module only reads the registry; writing to it (promotion) is
:mod:`sharpdarts.store.genotype_store`'s job. :func:`resolve` is the one place where a
genotype given as a value (a Genotype, a dict or a name) becomes a Genotype.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections import namedtuple
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sharpdarts import resources
from sharpdarts.registry import Registry, UnknownNameError, unknown_name

__all__ = [
    "Genotype",
    "LAYOUTS",
    "PRIMITIVES",
    "SHARPER_PRIMITIVES",
    "DARTS_PRIMITIVES",
    "MULTICHANNELNET_PRIMITIVES",
    "PRIMITIVE_SETS",
    "UnknownNameError",
    "primitives",
    "to_dict",
    "from_dict",
    "to_json",
    "from_json",
    "get",
    "resolve",
    "names",
    "builtin_names",
    "aliases",
    "is_builtin",
    "lineage",
    "user_registry_path",
    "NAME_RE",
    "parse_cell",
    "genotype_from_weights",
]

Genotype = namedtuple(
    "Genotype", ["normal", "normal_concat", "reduce", "reduce_concat", "layout"], defaults=("cell",)
)
Genotype.__doc__ = """An architecture: two cell descriptions (or weights, or a path) and their concat lists.

Attributes:
    normal: For layout 'cell', ``(op_name, input_index)`` tuples, two per node; for
        'raw_weights', nested lists of weights; for 'path', the node names of the path.
    normal_concat: Indices of the states concatenated into a normal cell's output.
    reduce: Like ``normal``, for reduction cells (empty for a path).
    reduce_concat: Like ``normal_concat``, for reduction cells.
    layout: 'cell' (the default), 'raw_weights' or 'path'.
"""

LAYOUTS = ("cell", "raw_weights", "path")

ENV_VAR = "SHARPDARTS_GENOTYPES"

# What a promoted name may look like (a Python identifier, so gin macros can hold it).
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS = Genotype._fields


# ---------------------------------------------------------------------------------------------
# Reference data


@functools.lru_cache(maxsize=1)
def _reference() -> dict:
    """The published genotypes and primitive sets shipped with the package (read once)."""
    path = Path(__file__).resolve().parents[1] / "reference" / "genotypes.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


PRIMITIVES: list[str] = list(_reference()["primitives"]["PRIMITIVES"])
SHARPER_PRIMITIVES: list[str] = list(_reference()["primitives"]["SHARPER_PRIMITIVES"])
DARTS_PRIMITIVES: list[str] = list(_reference()["primitives"]["DARTS_PRIMITIVES"])
MULTICHANNELNET_PRIMITIVES: list[str] = list(_reference()["primitives"]["MULTICHANNELNET_PRIMITIVES"])

# Users add a set with ``PRIMITIVE_SETS.register('MY_PRIMITIVES')(['none', 'my_op', ...])``.
PRIMITIVE_SETS: Registry[list[str]] = Registry("primitive set", "PRIMITIVE_SETS")
PRIMITIVE_SETS.register("PRIMITIVES")(PRIMITIVES)
PRIMITIVE_SETS.register("SHARPER_PRIMITIVES")(SHARPER_PRIMITIVES)
PRIMITIVE_SETS.register("DARTS_PRIMITIVES")(DARTS_PRIMITIVES)
PRIMITIVE_SETS.register("MULTICHANNELNET_PRIMITIVES")(MULTICHANNELNET_PRIMITIVES)


def primitives(name_or_list: str | Sequence[str]) -> list[str]:
    """Resolves a primitive set given by name, or passes an explicit list through.

    Args:
        name_or_list: A key of ``PRIMITIVE_SETS`` (e.g. ``'DARTS_PRIMITIVES'``, as a gin config
            would write it) or a sequence of op names.

    Returns:
        A new list of op names, in order.

    Raises:
        KeyError: An unknown set name (the message lists close matches).
        TypeError: A sequence holding something other than strings.
    """
    if isinstance(name_or_list, str):
        return list(PRIMITIVE_SETS[name_or_list])
    ops = list(name_or_list)
    bad = [op for op in ops if not isinstance(op, str)]
    if bad:
        raise TypeError(f"Primitive names must be strings, got {bad!r}.")
    return ops


# ---------------------------------------------------------------------------------------------
# Serialisation


def _plain(value: Any) -> Any:
    """Nested lists of plain Python numbers from arrays, tensors, tuples and numpy scalars."""
    if hasattr(value, "detach"):  # torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cell_entries(entries: Any, where: str) -> list[tuple[str, int]]:
    """Validates cell entries and normalises them to ``(str, int)`` tuples."""
    if not isinstance(entries, list | tuple):
        raise ValueError(f"{where}: expected a list of (op_name, input_index) pairs, got {entries!r}.")
    out = []
    for entry in entries:
        if (
            not isinstance(entry, list | tuple)
            or len(entry) != 2
            or not isinstance(entry[0], str)
            or isinstance(entry[1], bool)
            or not isinstance(entry[1], int | np.integer)
            or entry[1] < 0
        ):
            raise ValueError(f"{where}: expected (op_name, input_index) pairs, got entry {entry!r}.")
        out.append((entry[0], int(entry[1])))
    return out


def _concat(value: Any, where: str) -> list[int]:
    """Normalises a concat list (list, tuple or range) to a list of ints."""
    if not isinstance(value, list | tuple | range | np.ndarray):
        raise ValueError(f"{where}: expected a list of state indices, got {value!r}.")
    items = list(value)
    if any(isinstance(i, bool) or not isinstance(i, int | np.integer) for i in items):
        raise ValueError(f"{where}: expected a list of state indices, got {value!r}.")
    return [int(i) for i in items]


def _normalise(fields: Mapping[str, Any]) -> Genotype:
    """Builds a validated Genotype with canonical types from a field mapping."""
    layout = fields.get("layout", "cell")
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown genotype layout {layout!r}; expected one of {', '.join(LAYOUTS)}.")
    missing = [f for f in ("normal", "normal_concat", "reduce", "reduce_concat") if f not in fields]
    if missing:
        raise ValueError(f"Genotype is missing the field(s) {', '.join(missing)}.")
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise ValueError(f"Genotype has unknown field(s) {', '.join(unknown)}.")
    normal_concat = _concat(fields["normal_concat"], "normal_concat")
    reduce_concat = _concat(fields["reduce_concat"], "reduce_concat")
    if layout == "cell":
        normal = _cell_entries(fields["normal"], "normal")
        reduce = _cell_entries(fields["reduce"], "reduce")
    elif layout == "raw_weights":
        normal = _plain(fields["normal"])
        reduce = _plain(fields["reduce"])
        if not isinstance(normal, list) or not isinstance(reduce, list):
            raise ValueError("A 'raw_weights' genotype holds nested lists of weights.")
    else:  # path
        normal = list(fields["normal"])
        reduce = list(fields["reduce"])
        if not all(isinstance(n, str) for n in normal) or reduce:
            raise ValueError("A 'path' genotype holds node names in 'normal' and nothing in 'reduce'.")
    return Genotype(normal, normal_concat, reduce, reduce_concat, layout)


def to_dict(genotype: Genotype) -> dict[str, Any]:
    """Converts a genotype to a JSON-ready dict.

    Cell entries become ``[op_name, input_index]`` lists; concat ranges become lists.

    Args:
        genotype: A ``Genotype`` (or any 5-tuple / 4-tuple in its field order).

    Returns:
        ``{'normal', 'normal_concat', 'reduce', 'reduce_concat', 'layout'}``.

    Raises:
        ValueError: The genotype is malformed.
    """
    g = _normalise(dict(zip(_FIELDS, genotype)) if not isinstance(genotype, Mapping) else genotype)
    d = g._asdict()
    if g.layout == "cell":
        d["normal"] = [list(e) for e in g.normal]
        d["reduce"] = [list(e) for e in g.reduce]
    return d


def from_dict(d: Mapping[str, Any]) -> Genotype:
    """Builds a genotype from a dict as written by ``to_dict`` (``layout`` defaults to 'cell').

    Raises:
        ValueError: A field is missing, unknown or malformed.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"Expected a genotype dict, got {type(d).__name__}.")
    return _normalise(d)


def to_json(genotype: Genotype) -> str:
    """Serialises a genotype to a JSON string (see ``to_dict``)."""
    return json.dumps(to_dict(genotype))


def from_json(text: str) -> Genotype:
    """Parses a genotype from the JSON text written by ``to_json``.

    Raises:
        ValueError: The text is not JSON or not a valid genotype.
    """
    return from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------
# Registry


@functools.lru_cache(maxsize=1)
def _builtin() -> dict[str, Genotype]:
    """Every published genotype by name, aliases resolved to their target's genotype."""
    ref = _reference()
    table: dict[str, Genotype] = {}
    for section in ("cell_genotypes", "raw_weight_genotypes"):
        for name, d in ref[section].items():
            table[name] = from_dict(d)
    for name, path in ref["multichannel_paths"].items():
        table[name] = Genotype(list(path), [], [], [], "path")
    for alias, target in ref["aliases"].items():
        table[alias] = table[target]
    return table


def aliases() -> dict[str, str]:
    """The published aliases: ``{alias: target_name}``."""
    return dict(_reference()["aliases"])


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a published (builtin) genotype name or alias."""
    return name in _builtin()


def user_registry_path() -> Path:
    """The user registry file: ``$SHARPDARTS_GENOTYPES``, else
    ``resources.writable_root() / 'experiments' / 'genotypes.json'``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return resources.writable_root() / "experiments" / "genotypes.json"


def read_registry(path: Path) -> dict[str, Any]:
    """Reads a user registry file (``{"genotypes": {NAME: {genotype, lineage}}}``); a missing
    file is an empty registry.

    Raises:
        ValueError: the file is not JSON or not of that shape.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"genotypes": {}}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"The genotype registry {path} is not valid JSON: {e}.") from e
    if not isinstance(data, dict) or not isinstance(data.get("genotypes", {}), dict):
        raise ValueError(f"The genotype registry {path} must hold {{\"genotypes\": {{NAME: ...}}}}.")
    data.setdefault("genotypes", {})
    return data


def _user_entries(path: Path | None = None) -> dict[str, Any]:
    return read_registry(Path(path) if path is not None else user_registry_path())["genotypes"]


def get(name: str) -> Genotype:
    """Looks up a named genotype: builtin first, then the user registry.

    Args:
        name: A published name or alias (e.g. ``'DARTS_V2'``) or a promoted name.

    Returns:
        A fresh copy of the genotype (mutating it does not touch the registry).

    Raises:
        KeyError: The name is unknown (the message lists close matches).
        ValueError: The user registry file or its entry is malformed.
    """
    table = _builtin()
    if name in table:
        return copy.deepcopy(table[name])
    entries = _user_entries()
    if name not in entries:
        raise unknown_name("genotype", name, list(table) + list(entries))
    try:
        return from_dict(entries[name]["genotype"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"Genotype {name!r} in {user_registry_path()} is malformed: {e}") from e


def resolve(value: Any) -> Genotype:
    """The one genotype resolver: a Genotype, a genotype dict or a registry name -> Genotype.

    Args:
        value: a ``Genotype`` (returned as it is); a dict as written by :func:`to_dict`; a
            named tuple with Genotype's fields (e.g. the original code's 4-field Genotype);
            or a name of the registry (builtin or promoted).

    Returns:
        The genotype.

    Raises:
        UnknownNameError: (a KeyError) an unknown name, with close matches.
        ValueError: a malformed dict or registry entry.
        TypeError: a value of any other type.
    """
    if isinstance(value, Genotype):
        return value
    if isinstance(value, str):
        return get(value)
    if isinstance(value, Mapping):
        return from_dict(value)
    if hasattr(value, "_asdict"):
        return from_dict(value._asdict())
    raise TypeError(f"A genotype is a Genotype, a genotype dict or a registry name, "
                    f"got {type(value).__name__}.")


def _check_layout(layout: str | None) -> None:
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"Unknown genotype layout {layout!r}; expected one of {', '.join(LAYOUTS)}.")


def builtin_names(layout: str | None = None) -> list[str]:
    """Sorted published names (aliases included), optionally of one layout; never the user
    registry's (tests parametrise over these: they are the same on every machine).

    Raises:
        ValueError: An unknown layout.
    """
    _check_layout(layout)
    return sorted(n for n, g in _builtin().items() if layout is None or g.layout == layout)


def names(layout: str | None = None) -> list[str]:
    """Sorted names of every builtin and promoted genotype, optionally of one layout.

    Args:
        layout: None for all, else one of ``LAYOUTS``.

    Raises:
        ValueError: An unknown layout.
    """
    _check_layout(layout)
    found = {n: g.layout for n, g in _builtin().items()}
    for n, entry in _user_entries().items():
        if n not in found:
            genotype = entry.get("genotype", {}) if isinstance(entry, dict) else {}
            found[n] = genotype.get("layout", "cell") if isinstance(genotype, dict) else None
    return sorted(n for n, lay in found.items() if layout is None or lay == layout)


def lineage(name: str) -> dict | None:
    """The lineage recorded when ``name`` was promoted, or None for a builtin genotype.

    Raises:
        KeyError: The name is unknown.
    """
    if is_builtin(name):
        return None
    entries = _user_entries()
    if name not in entries:
        raise unknown_name("genotype", name, list(_builtin()) + list(entries))
    return copy.deepcopy(entries[name].get("lineage"))


# ---------------------------------------------------------------------------------------------
# Parsing search weights


def _edge_count(steps: int) -> int:
    return sum(i + 2 for i in range(steps))


def parse_cell(
    weights: Any,
    primitives: str | Sequence[str],
    steps: int = 4,
    skip_primitive: str | None = "none",
) -> list[tuple[str, int]]:
    """Turns one cell's architecture weights into its genotype entries (the DARTS rule).

    Rows are edges, ordered node by node (node 0 has rows 0-1, node 1 rows 2-4, ...); columns
    follow ``primitives``. For node ``i`` the ``i + 2`` candidate inputs are ranked by their
    largest weight over all ops except ``skip_primitive`` (a stable descending sort, so ties
    keep the lower input index); the top two are kept, in ranked order, and each gets the op
    with the largest weight except ``skip_primitive`` (ties keep the lower op index).

    Args:
        weights: (edges, ops) weights: a numpy array, a torch tensor or nested lists.
        primitives: The op names of the columns (or a ``PRIMITIVE_SETS`` name).
        steps: Intermediate nodes per cell.
        skip_primitive: The op excluded from both choices ('none': the DARTS hack, so that
            the zero op never wins); None excludes nothing.

    Returns:
        ``(op_name, input_index)`` pairs, two per node.

    Raises:
        ValueError: Wrong shape, non-finite weights, or a ``skip_primitive`` not in ``primitives``.
    """
    prims = _resolve_primitives(primitives)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if hasattr(weights, "detach"):  # torch tensor, without importing torch here
        weights = weights.detach().cpu().numpy()
    w = np.asarray(weights, dtype=np.float64)
    expected = (_edge_count(steps), len(prims))
    if w.shape != expected:
        raise ValueError(
            f"Cell weights have shape {w.shape}, expected {expected} "
            f"({steps} steps give {expected[0]} edges; {len(prims)} primitives)."
        )
    if not np.all(np.isfinite(w)):
        raise ValueError("Cell weights contain NaN or infinite values.")
    allowed = list(range(len(prims)))
    if skip_primitive is not None:
        if skip_primitive not in prims:
            raise ValueError(
                f"skip_primitive {skip_primitive!r} is not one of the primitives {prims}; "
                "pass skip_primitive=None to exclude nothing."
            )
        allowed.remove(prims.index(skip_primitive))
        if not allowed:
            raise ValueError("Excluding skip_primitive leaves no op to choose.")
    gene: list[tuple[str, int]] = []
    start = 0
    for node in range(steps):
        rows = w[start : start + node + 2][:, allowed]
        best = rows.max(axis=1)
        ranked = np.argsort(-best, kind="stable")[:2]
        for j in ranked:
            op = allowed[int(np.argmax(rows[j]))]  # argmax: the first maximum wins ties
            gene.append((prims[op], int(j)))
        start += node + 2
    return gene


_resolve_primitives = primitives  # parse_cell's argument shadows the function's name


def genotype_from_weights(
    normal: Any,
    reduce: Any,
    primitives: str | Sequence[str],
    steps: int = 4,
    multiplier: int = 4,
    skip_primitive: str | None = "none",
) -> Genotype:
    """Builds a cell genotype from the normal and reduction weights of a search.

    Args:
        normal: (edges, ops) weights of the normal cell (see ``parse_cell``).
        reduce: (edges, ops) weights of the reduction cell.
        primitives: The op names of the columns (or a ``PRIMITIVE_SETS`` name).
        steps: Intermediate nodes per cell.
        multiplier: How many of the last states are concatenated as the cell's output.
        skip_primitive: See ``parse_cell``.

    Returns:
        A 'cell' genotype with concat ``range(2 + steps - multiplier, steps + 2)`` as a list.

    Raises:
        ValueError: As ``parse_cell``, or ``multiplier`` outside ``1..steps``.
    """
    if not isinstance(multiplier, int) or not 1 <= multiplier <= steps:
        raise ValueError(f"multiplier must be an integer in 1..steps ({steps}), got {multiplier!r}.")
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(
        normal=parse_cell(normal, primitives, steps, skip_primitive),
        normal_concat=concat,
        reduce=parse_cell(reduce, primitives, steps, skip_primitive),
        reduce_concat=list(concat),
        layout="cell",
    )
