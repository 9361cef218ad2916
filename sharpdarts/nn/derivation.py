"""Derivation rules of the DARTS family: how a search's weights become a cell.

``DERIVATIONS`` holds the rules that give two ``(op, input)`` entries per node, the
genotypes every network builds: ``'darts'`` (``genotypes.parse_cell``: the two input
edges with the strongest op, each with its best op), ``'gdas'`` (GDAS: the two strongest
``(op, input)`` pairs over all of a node's edges, so both may read the same input) and
``'pdarts'`` (P-DARTS: DARTS's choice, listed input by input, with at most ``max_skips``
skip connections); ``SearchNetwork.derivation`` picks one.

FairDARTS' threshold rule reads a cell from its sigmoid weights: each node keeps the two
input edges with the largest weight of any op (as DARTS), and then an edge's best op only
if its weight reaches the threshold, so a node may keep one input or none. The result is
a list of ``(op, node, input)`` triples, FairDARTS' own genotype entries, since such a cell
does not fit a genotype of two inputs per node: ``DERIVATIONS['fairdarts']`` is this rule,
and :func:`derive` makes an ``'edges'`` genotype of it (:mod:`sharpdarts.core.edge_genotypes`;
FairDARTS' cell, :mod:`sharpdarts.nn.fair_cells`, trains it). docs/family.md gives the source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sharpdarts.core import edge_genotypes, genotype_types
from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.registry import Registry

CellRule = Callable[..., list]
DERIVATIONS: Registry[CellRule] = Registry(
    "derivation", "DERIVATIONS", hint="Rules are registered with @DERIVATIONS.register('name')."
)
DERIVATIONS.register("darts")(genotypes_lib.parse_cell)
# The rules that give ``(op, node, input)`` edges, any number per node ('edges' genotypes).
EDGE_RULES = {"fairdarts"}


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


@DERIVATIONS.register("pdarts")
def pdarts_cell(
    weights,
    primitives: Sequence[str],
    steps: int = 4,
    skip_primitive: str | None = "none",
    max_skips: int | None = None,
    skip_op: str = "skip_connect",
) -> list[tuple[str, int]]:
    """P-DARTS's final cell (chenxin061/pdarts ``train_search.py``, after the last stage).

    Each edge takes its strongest op but ``skip_primitive`` (equal weights: the later op);
    each node keeps the two edges whose op is strongest (equal weights: the later input) and
    lists them input by input. With ``max_skips``, while the cell has more skip connections,
    the weakest skip (equal weights: the earlier edge) is struck out (its weight set to 0) and
    ops and edges are chosen again: their ``delete_min_sk_prob``, ``keep_1_on`` and
    ``keep_2_branches`` loop, which they apply to the normal cell only.

    Args:
        weights: (edges, ops) op weights; an op that an edge no longer has weighs 0.
        primitives: the op names of the columns.
        steps: intermediate nodes.
        skip_primitive: the op never chosen ('none'), or None.
        max_skips: the most skip connections kept (P-DARTS: 2), or None for no cap.
        skip_op: the op counted as a skip connection.

    Returns:
        ``(op, input)`` pairs, two per node.
    """
    weights = np.array(weights, dtype=np.float64)  # a copy: struck-out skips are set to 0
    names = list(primitives)
    if skip_primitive in names:
        weights[:, names.index(skip_primitive)] = 0.0
    skip = names.index(skip_op) if skip_op in names else None
    while True:
        # The last of equal maxima, as their repeated argmin drops the first of equal minima.
        best = [len(names) - 1 - int(np.argmax(row[::-1])) for row in weights]
        strength = [row[k] for row, k in zip(weights, best)]
        kept, start = [], 0
        for i in range(steps):
            order = sorted(range(i + 2), key=lambda j: strength[start + j])  # stable
            kept.extend(sorted(start + j for j in order[-2:]))
            start += i + 2
        skips = [e for e in kept if best[e] == skip]
        if max_skips is None or len(skips) <= max_skips:
            break
        weakest = min(skips, key=lambda e: weights[e, skip])  # the first of equal minima
        weights[weakest, skip] = 0.0
    cell, start = [], 0
    for i in range(steps):
        cell.extend((names[best[e]], e - start) for e in kept if start <= e < start + i + 2)
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
    normal_options: dict | None = None,
) -> genotypes_lib.Genotype:
    """A cell genotype from normal and reduction weights by the rule named ``rule``;
    ``normal_options`` are extra keyword arguments of the normal cell's rule only (P-DARTS
    caps the skip connections of its normal cell alone). An edge rule (``EDGE_RULES``) gives
    an 'edges' genotype, whose concat is the nodes that kept an edge (``multiplier`` unused:
    FairDARTS' cell outputs those)."""
    if rule == "darts" and not normal_options:  # the one path every DARTS search takes
        return genotype_types.genotype_from_weights(
            normal, reduce, primitives, steps, multiplier, skip_primitive
        )
    cell_rule = DERIVATIONS[rule]
    normal = cell_rule(normal, primitives, steps, skip_primitive, **(normal_options or {}))
    reduce = cell_rule(reduce, primitives, steps, skip_primitive)
    if rule in EDGE_RULES:
        return genotypes_lib.Genotype(
            normal=normal,
            normal_concat=edge_genotypes.nodes_with_inputs(normal),
            reduce=reduce,
            reduce_concat=edge_genotypes.nodes_with_inputs(reduce),
            layout="edges",
        )
    concat = list(range(2 + steps - multiplier, steps + 2))
    return genotypes_lib.Genotype(
        normal=normal,
        normal_concat=concat,
        reduce=reduce,
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


@DERIVATIONS.register("fairdarts")
def fairdarts_cell(
    weights,
    primitives: Sequence[str],
    steps: int = 4,
    skip_primitive: str | None = None,
    threshold: float = 0.85,
) -> list[tuple[str, int, int]]:
    """FairDARTS' final cell, the derivation of their search (``train_search.py
    --parse_method threshold_sparse --op_threshold 0.85``, the defaults): :func:`threshold_cell`
    on the sigmoid weights, ``skip_primitive``'s column left out first (their ops have no
    'none'; sharpdarts' rules never choose it).

    Args:
        weights: (edges, ops) weights, FairDARTS' ``sigmoid(alpha)``, node by node.
        primitives: the op names of the columns.
        steps: intermediate nodes.
        skip_primitive: the op never chosen, or None.
        threshold: the weight an op needs to be kept; a search uses their default, 0.85.

    Returns:
        ``(op, node, input)`` edges; a node keeps at most two.
    """
    names = list(primitives)
    weights = np.asarray(weights)
    if skip_primitive in names:
        keep = [k for k, name in enumerate(names) if name != skip_primitive]
        weights, names = weights[:, keep], [names[k] for k in keep]
    return threshold_cell(weights, names, steps, threshold)
