"""Genotype types: the ``Genotype`` tuple and its layouts, the primitive sets, the JSON form,
and the DARTS rule that turns a search's weights into a cell genotype.

A *genotype* describes an architecture found by a search. Three layouts exist:

- ``'cell'``: DARTS-style cells. ``normal`` and ``reduce`` list ``(op_name, input_index)``
  pairs, two per intermediate node; ``*_concat`` lists the states concatenated as output.
- ``'raw_weights'``: the softmax weights of a search, kept as nested lists (the original
  multi-channel search stored its result this way).
- ``'path'``: a multi-channel (HyperCuboid) path; ``normal`` lists its node names and the
  other fields are empty.
- ``'edges'``: cells whose nodes read any number of inputs (FairDARTS): ``normal`` and
  ``reduce`` list ``(op_name, node, input)`` triples (:mod:`sharpdarts.core.edge_genotypes`).

Everything here is re-exported by :mod:`sharpdarts.core.genotypes`, the public module, which
adds the named-genotype registry and the resolver.
"""

from __future__ import annotations

import functools
import json
from collections import namedtuple
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sharpdarts.core import edge_genotypes
from sharpdarts.registry import Registry

Genotype = namedtuple(
    "Genotype", ["normal", "normal_concat", "reduce", "reduce_concat", "layout"], defaults=("cell",)
)
Genotype.__doc__ = """An architecture: two cell descriptions (or weights, or a path) and their
concat lists.

Attributes:
    normal: For layout 'cell', ``(op_name, input_index)`` tuples, two per node; for
        'edges', ``(op_name, node, input)`` tuples, any number per node; for
        'raw_weights', nested lists of weights; for 'path', the node names of the path.
    normal_concat: Indices of the states concatenated into a normal cell's output.
    reduce: Like ``normal``, for reduction cells (empty for a path).
    reduce_concat: Like ``normal_concat``, for reduction cells.
    layout: 'cell' (the default), 'edges', 'raw_weights' or 'path'.
"""

LAYOUTS = ("cell", "raw_weights", "path", "edges")

_FIELDS = Genotype._fields


# ---------------------------------------------------------------------------------------------
# Reference data


@functools.lru_cache(maxsize=1)
def reference_data() -> dict:
    """The published genotypes and primitive sets shipped with the package (read once)."""
    path = Path(__file__).resolve().parents[1] / "reference" / "genotypes.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


PRIMITIVES: list[str] = list(reference_data()["primitives"]["PRIMITIVES"])
SHARPER_PRIMITIVES: list[str] = list(reference_data()["primitives"]["SHARPER_PRIMITIVES"])
DARTS_PRIMITIVES: list[str] = list(reference_data()["primitives"]["DARTS_PRIMITIVES"])
MULTICHANNELNET_PRIMITIVES: list[str] = list(
    reference_data()["primitives"]["MULTICHANNELNET_PRIMITIVES"]
)

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
        raise ValueError(
            f"{where}: expected a list of (op_name, input_index) pairs, got {entries!r}."
        )
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
            raise ValueError(
                f"{where}: expected (op_name, input_index) pairs, got entry {entry!r}."
            )
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
        raise ValueError(
            f"Unknown genotype layout {layout!r}; expected one of {', '.join(LAYOUTS)}."
        )
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
    elif layout == "edges":
        normal = edge_genotypes.edge_entries(fields["normal"], "normal")
        reduce = edge_genotypes.edge_entries(fields["reduce"], "reduce")
        edge_genotypes.check_concat(normal, normal_concat, "normal")
        edge_genotypes.check_concat(reduce, reduce_concat, "reduce")
    elif layout == "raw_weights":
        normal = _plain(fields["normal"])
        reduce = _plain(fields["reduce"])
        if not isinstance(normal, list) or not isinstance(reduce, list):
            raise ValueError("A 'raw_weights' genotype holds nested lists of weights.")
    else:  # path
        normal = list(fields["normal"])
        reduce = list(fields["reduce"])
        if not all(isinstance(n, str) for n in normal) or reduce:
            raise ValueError(
                "A 'path' genotype holds node names in 'normal' and nothing in 'reduce'."
            )
    return Genotype(normal, normal_concat, reduce, reduce_concat, layout)


def to_dict(genotype: Genotype) -> dict[str, Any]:
    """Converts a genotype to a JSON-ready dict.

    Cell entries become ``[op_name, input_index]`` lists (edges ``[op_name, node, input]``);
    concat ranges become lists.

    Args:
        genotype: A ``Genotype`` (or any 5-tuple / 4-tuple in its field order).

    Returns:
        ``{'normal', 'normal_concat', 'reduce', 'reduce_concat', 'layout'}``.

    Raises:
        ValueError: The genotype is malformed.
    """
    g = _normalise(dict(zip(_FIELDS, genotype)) if not isinstance(genotype, Mapping) else genotype)
    d = g._asdict()
    if g.layout in ("cell", "edges"):
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
        raise ValueError(
            f"multiplier must be an integer in 1..steps ({steps}), got {multiplier!r}."
        )
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(
        normal=parse_cell(normal, primitives, steps, skip_primitive),
        normal_concat=concat,
        reduce=parse_cell(reduce, primitives, steps, skip_primitive),
        reduce_concat=list(concat),
        layout="cell",
    )
