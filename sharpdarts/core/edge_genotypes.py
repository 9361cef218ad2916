"""Edge genotypes: cells whose nodes read any number of inputs (FairDARTS' cells).

A genotype of layout ``'edges'`` lists, for each of ``normal`` and ``reduce``, the cell's
edges as ``(op_name, node, input)`` triples, FairDARTS' own gene format
(xiaomi-automl/FairDARTS ``fairdarts/genotypes.py``, ``FairDARTS_a`` .. ``FairDARTS_g``):
intermediate nodes count from 2 (0 and 1 are the cell's two inputs), and ``input`` is a
state before ``node``. A node may have no edge at all (FairDARTS' threshold rule dropped
every one), one, two or more; two edges may join the same pair of states (each op is
added). The edges are grouped node by node in increasing node order, the order in which
the cell computes its nodes; within a node they keep their order.

Their evaluation cell (``DCOCell``) concatenates every node that has an edge, in node order,
whatever the genotype's ``*_concat`` says (their genotypes write ``range(2, 6)`` even where a
node has none). Here ``*_concat`` must list exactly those nodes, so that a genotype says
what its cell outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _is_index(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


def edge_entries(entries: Any, where: str) -> list[tuple[str, int, int]]:
    """Validates the edges of one cell and normalises them to ``(str, int, int)`` tuples.

    Args:
        entries: ``(op_name, node, input)`` triples, grouped by node in increasing order.
        where: names the cell in error messages (``'normal'``, ``'reduce'``).

    Returns:
        The triples as tuples of plain Python values.

    Raises:
        ValueError: an entry that is not such a triple, a node below 2, an input that is not
            an earlier state, or nodes out of order.
    """
    if not isinstance(entries, list | tuple):
        raise ValueError(
            f"{where}: expected a list of (op_name, node, input) triples, got {entries!r}."
        )
    out: list[tuple[str, int, int]] = []
    for entry in entries:
        if (
            not isinstance(entry, list | tuple)
            or len(entry) != 3
            or not isinstance(entry[0], str)
            or not all(_is_index(v) for v in entry[1:])
        ):
            raise ValueError(
                f"{where}: expected (op_name, node, input) triples, got entry {entry!r}."
            )
        op, node, index = entry[0], int(entry[1]), int(entry[2])
        if node < 2 or not 0 <= index < node:
            raise ValueError(
                f"{where}: edge {tuple(entry)!r} is not an edge into an intermediate node "
                "(nodes count from 2; an input is a state before its node)."
            )
        if out and node < out[-1][1]:
            raise ValueError(
                f"{where}: edge {tuple(entry)!r} comes after an edge into node {out[-1][1]}; "
                "list the edges node by node in increasing order (the order the cell computes)."
            )
        out.append((op, node, index))
    return out


def nodes_with_inputs(entries: Sequence[Sequence]) -> list[int]:
    """The nodes that have at least one edge, in increasing order: the cell's output."""
    return sorted({int(node) for _, node, _ in entries})


def check_concat(entries: Sequence[Sequence], concat: Sequence[int], where: str) -> None:
    """Refuses a concat list other than the nodes with an edge (what the cell outputs).

    Raises:
        ValueError: naming the list expected.
    """
    expected = nodes_with_inputs(entries)
    if list(concat) != expected:
        raise ValueError(
            f"{where}_concat is {list(concat)}, but an edge cell outputs the nodes that have an "
            f"edge, {expected} (FairDARTS' DCOCell concatenates those whatever its concat says)."
        )


def pairs_to_edges(pairs: Sequence[Sequence]) -> list[tuple[str, int, int]]:
    """A two-input cell's ``(op_name, input)`` pairs as edges: pair ``k`` goes into node
    ``2 + k // 2``, in the pairs' order."""
    return [(str(op), 2 + k // 2, int(index)) for k, (op, index) in enumerate(pairs)]
