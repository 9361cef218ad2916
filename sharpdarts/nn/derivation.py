"""Derivation rules of the DARTS family: how a search's weights become a cell.

``DERIVATIONS`` holds the rules that give two ``(op, input)`` entries per node, the
genotypes every network builds: ``'darts'`` (``genotypes.parse_cell``: the two input
edges with the strongest op, each with its best op) and ``'gdas'`` (GDAS: the two strongest
``(op, input)`` pairs over all of a node's edges, so both may read the same input);
``SearchNetwork.derivation`` picks one.

FairDARTS' threshold rule reads a cell from its sigmoid weights: each node keeps the two
input edges with the largest weight of any op (as DARTS), and then an edge's best op only
if its weight reaches the threshold, so a node may keep one input or none. The result is
a list of ``(op, node, input)`` triples, FairDARTS' own genotype entries, since such a cell
does not fit a genotype of two inputs per node. docs/family.md gives the source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sharpdarts.core import genotype_types
from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.registry import Registry

CellRule = Callable[..., list]
DERIVATIONS: Registry[CellRule] = Registry(
    "derivation", "DERIVATIONS", hint="Rules are registered with @DERIVATIONS.register('name')."
)
DERIVATIONS.register("darts")(genotypes_lib.parse_cell)


@DERIVATIONS.register("gdas")
def top_pairs_cell(
    weights, primitives: Sequence[str], steps: int = 4, skip_primitive: str | None = "none"
) -> list[tuple[str, int]]:
    """GDAS's rule (xautodl ``NASNetworkGDAS.genotype``): for each node, every ``(op, input)``
    pair but ``skip_primitive``'s, ranked by weight, the top two kept.

    Pairs are listed input by input, op by op, and sorted stably, as their code does.
    """
    weights = np.asarray(weights)
    cell, start = [], 0
    for i in range(steps):
        rows = weights[start : start + i + 2]
        pairs = [
            (name, j, rows[j][k])
            for j in range(i + 2)
            for k, name in enumerate(primitives)
            if name != skip_primitive
        ]
        cell.extend((name, j) for name, j, _ in sorted(pairs, key=lambda p: -p[2])[:2])
        start += i + 2
    return cell


def derive(
    rule: str,
    normal,
    reduce,
    primitives: Sequence[str],
    steps: int,
    multiplier: int,
    skip_primitive: str | None = "none",
) -> genotypes_lib.Genotype:
    """A cell genotype from normal and reduction weights by the rule named ``rule``."""
    if rule == "darts":  # the one path every existing search takes
        return genotype_types.genotype_from_weights(
            normal, reduce, primitives, steps, multiplier, skip_primitive
        )
    cell_rule = DERIVATIONS[rule]
    concat = list(range(2 + steps - multiplier, steps + 2))
    return genotypes_lib.Genotype(
        normal=cell_rule(normal, primitives, steps, skip_primitive),
        normal_concat=concat,
        reduce=cell_rule(reduce, primitives, steps, skip_primitive),
        reduce_concat=list(concat),
        layout="cell",
    )


def threshold_cell(
    weights, primitives: Sequence[str], steps: int = 4, threshold: float = 0.85
) -> list[tuple[str, int, int]]:
    """FairDARTS' ``threshold_sparse`` rule (``fairdarts/utils.py`` ``parse``).

    Args:
        weights: (edges, ops) weights, FairDARTS' ``sigmoid(alpha)``, node by node.
        primitives: the op names of the columns.
        steps: intermediate nodes.
        threshold: the weight an op needs to be kept (their ``--op_threshold``, 0.85).

    Returns:
        ``(op, node, input)`` triples; nodes count from 2 (0 and 1 are the cell's inputs).
    """
    weights = np.asarray(weights)
    cell, start = [], 0
    for i in range(steps):
        rows = weights[start : start + i + 2]
        # Ties keep the lower input first, as Python's stable sort in their code.
        edges = sorted(range(i + 2), key=lambda j: -max(rows[j]))[:2]
        for j in edges:
            best = int(np.argmax(rows[j]))  # the first of equal maxima, as their loop
            if rows[j][best] >= threshold:
                cell.append((primitives[best], i + 2, j))
        start += i + 2
    return cell
