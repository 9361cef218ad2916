"""Recurrent genotypes: DARTS's language-model cells, their primitives, and the rule that turns
a recurrent search's architecture weights into a cell.

A recurrent cell has ``len(recurrent)`` intermediate nodes ``s_1..s_S`` after the initial state
``s_0``; node ``i + 1`` applies one activation to one earlier node, so the genotype lists one
``(op_name, predecessor)`` pair per node, and ``concat`` names the nodes averaged into the
cell's output. The published cells are DARTS_V1_RNN, DARTS_V2_RNN (DARTS's final PTB cell) and
ENAS_RNN (ENAS's cell, retrained in DARTS's setup); they are reached through
:func:`sharpdarts.core.genotypes.get` like every other named genotype.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RecurrentGenotype = namedtuple("RecurrentGenotype", ["recurrent", "concat"])
RecurrentGenotype.__doc__ = """A recurrent cell.

Attributes:
    recurrent: ``(op_name, predecessor)`` per intermediate node, in order; node ``i + 1``
        reads state ``predecessor`` (0 is the initial state ``s_0``).
    concat: The indices of the states averaged into the cell's output.
"""
# Lets code that sorts genotypes by layout (plots, info) tell recurrent cells apart.
RecurrentGenotype.layout = property(lambda self: "recurrent")

RNN_PRIMITIVES: list[str] = ["none", "tanh", "relu", "sigmoid", "identity"]

# The search space of DARTS's recurrent search: 8 nodes, all 8 averaged into the output.
RNN_STEPS = 8
RNN_CONCAT = 8

DARTS_V1_RNN = RecurrentGenotype(
    recurrent=[
        ("relu", 0),
        ("relu", 1),
        ("tanh", 2),
        ("relu", 3),
        ("relu", 4),
        ("identity", 1),
        ("relu", 5),
        ("relu", 1),
    ],
    concat=list(range(1, 9)),
)
DARTS_V2_RNN = RecurrentGenotype(
    recurrent=[
        ("sigmoid", 0),
        ("relu", 1),
        ("relu", 1),
        ("identity", 1),
        ("tanh", 2),
        ("sigmoid", 5),
        ("tanh", 3),
        ("relu", 5),
    ],
    concat=list(range(1, 9)),
)
ENAS_RNN = RecurrentGenotype(
    recurrent=[
        ("tanh", 0),
        ("tanh", 1),
        ("relu", 1),
        ("tanh", 3),
        ("tanh", 3),
        ("relu", 3),
        ("relu", 4),
        ("relu", 7),
        ("relu", 8),
        ("relu", 8),
        ("relu", 8),
    ],
    concat=[2, 5, 6, 9, 10, 11],
)

# Name -> genotype; 'DARTS_RNN' is the original's alias for its final cell (train.py's default).
RECURRENT_GENOTYPES: dict[str, RecurrentGenotype] = {
    "DARTS_V1_RNN": DARTS_V1_RNN,
    "DARTS_V2_RNN": DARTS_V2_RNN,
    "DARTS_RNN": DARTS_V2_RNN,
    "ENAS_RNN": ENAS_RNN,
}


def check(
    genotype: RecurrentGenotype, primitives: Sequence[str] = RNN_PRIMITIVES
) -> RecurrentGenotype:
    """Validates a recurrent genotype and returns it with tuples and lists normalised.

    Raises:
        ValueError: an unknown op, a predecessor that is not an earlier state, or a concat
            index outside the states.
    """
    nodes = []
    for i, entry in enumerate(genotype.recurrent):
        try:
            op, pred = entry
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Recurrent node {i + 1} must be (op_name, predecessor), got {entry!r}."
            ) from e
        if op not in primitives or op == "none":
            raise ValueError(
                f"Recurrent node {i + 1} has op {op!r}; expected one of "
                f"{', '.join(p for p in primitives if p != 'none')}."
            )
        if not isinstance(pred, (int, np.integer)) or not 0 <= pred <= i:
            raise ValueError(f"Recurrent node {i + 1} reads state {pred!r}; it may read 0..{i}.")
        nodes.append((str(op), int(pred)))
    concat = [int(c) for c in genotype.concat]
    if not concat or any(not 0 <= c <= len(nodes) for c in concat):
        raise ValueError(f"Recurrent concat {concat} must name states 0..{len(nodes)}.")
    return RecurrentGenotype(nodes, concat)


def recurrent_to_dict(genotype: RecurrentGenotype) -> dict[str, Any]:
    """The JSON form.

    ``{'recurrent': [[op, pred], ...], 'concat': [...], 'layout': 'recurrent'}``.
    """
    g = check(genotype)
    return {
        "recurrent": [list(e) for e in g.recurrent],
        "concat": list(g.concat),
        "layout": "recurrent",
    }


def recurrent_from_dict(d: Mapping[str, Any]) -> RecurrentGenotype:
    """Inverse of :func:`recurrent_to_dict`.

    Raises:
        ValueError: a missing field or a malformed genotype.
    """
    if not isinstance(d, Mapping) or "recurrent" not in d or "concat" not in d:
        raise ValueError("A recurrent genotype dict needs 'recurrent' and 'concat'.")
    return check(RecurrentGenotype([tuple(e) for e in d["recurrent"]], list(d["concat"])))


def parse_recurrent(
    probs,
    primitives: Sequence[str] = RNN_PRIMITIVES,
    steps: int = RNN_STEPS,
    concat: int = RNN_CONCAT,
    skip_primitive: str = "none",
) -> RecurrentGenotype:
    """DARTS's recurrent derivation rule: each node keeps its one strongest incoming edge.

    Rows of ``probs`` are edges, node by node: node ``i + 1`` owns the ``i + 1`` rows after the
    ``i (i + 1) / 2`` of earlier nodes, row ``j`` of them being the edge from state ``j``. The
    node reads the state ``j`` whose best op other than ``skip_primitive`` is strongest (the
    smaller ``j`` on a tie), through that op (the first on a tie).

    Args:
        probs: (edges x ops) weights, usually the softmax of the architecture parameters.
        primitives: the op names of the columns.
        steps: the number of nodes.
        concat: how many of the last states form the output.
        skip_primitive: the op never chosen ('none').

    Returns:
        The genotype, with ``concat`` the last ``concat`` of the ``steps + 1`` states.

    Raises:
        ValueError: the weights do not have ``steps (steps + 1) / 2`` rows of ``len(primitives)``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    rows = steps * (steps + 1) // 2
    if probs.shape != (rows, len(primitives)):
        raise ValueError(
            f"Recurrent weights must be {rows} x {len(primitives)}, got {probs.shape}."
        )
    masked = probs.copy()
    if skip_primitive in primitives:
        masked[:, list(primitives).index(skip_primitive)] = -np.inf
    gene = []
    start = 0
    for i in range(steps):
        block = masked[start : start + i + 1]
        # argmax returns the first maximum, which is the original's tie order for both choices.
        j = int(np.argmax(block.max(axis=1)))
        gene.append((primitives[int(np.argmax(block[j]))], j))
        start += i + 1
    return RecurrentGenotype(gene, list(range(steps + 1))[-concat:])
