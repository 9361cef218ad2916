"""Derivation rules of the DARTS family beyond DARTS's own (``genotypes.parse_cell``).

FairDARTS' threshold rule reads a cell from its sigmoid weights: each node keeps the two
input edges with the largest weight of any op (as DARTS), and then an edge's best op only
if its weight reaches the threshold, so a node may keep one input or none. The result is
a list of ``(op, node, input)`` triples, FairDARTS' own genotype entries, since such a cell
does not fit a genotype of two inputs per node. docs/family.md gives the source.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
