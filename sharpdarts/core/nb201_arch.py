"""NAS-Bench-201 cells as the benchmark writes them: its five ops, six edges and arch strings.

The benchmark (Dong & Yang, "NAS-Bench-201", ICLR 2020; code: github.com/D-X-Y/AutoDL-Projects,
packaged as ``xautodl``) fixes one cell: nodes 0 (the input) to 3 (the output), and one op on
each edge ``i <- j`` for ``j < i``. An *arch string* lists node 1's, 2's and 3's inputs, each
node between ``|`` bars and the nodes joined by ``+``::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|

Here a cell is the tuple of its six op names in :data:`EDGES` order, the order the authors'
search models keep their architecture rows in (``edge2index``: ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1,
3<-2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sharpdarts.errors import UserError

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4
# (node, input) of each edge, in the order of the search models' architecture rows.
EDGES = tuple((i, j) for i in range(1, NODES) for j in range(i))

_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


def arch_string(ops: Sequence[str]) -> str:
    """The benchmark's string of a cell given as six op names in :data:`EDGES` order."""
    ops = tuple(ops)
    if len(ops) != len(EDGES) or any(op not in OPS for op in ops):
        raise UserError(
            f"a NAS-Bench-201 cell is six op names from {', '.join(OPS)}, one per edge in the "
            f"order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2; got {list(ops)}."
        )
    nodes = []
    for i in range(1, NODES):
        edges = [f"{op}~{j}" for (node, j), op in zip(EDGES, ops) if node == i]
        nodes.append("|" + "|".join(edges) + "|")
    return "+".join(nodes)


def parse_arch(arch: str) -> tuple[str, ...]:
    """The six op names (in :data:`EDGES` order) of a benchmark arch string.

    Raises:
        UserError: the string is not a NAS-Bench-201 cell (the message shows the form).
    """
    text = arch.strip() if isinstance(arch, str) else None
    ops = []
    try:
        nodes = text.split("+")
        if len(nodes) != NODES - 1:
            raise ValueError
        for i, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise ValueError
            edges = node[1:-1].split("|")
            if len(edges) != i:
                raise ValueError
            for j, edge in enumerate(edges):
                op, _, source = edge.partition("~")
                if op not in OPS or source != str(j):
                    raise ValueError
                ops.append(op)
    except (ValueError, AttributeError):
        raise UserError(
            f"{arch!r} is not a NAS-Bench-201 arch string. One looks like {_EXAMPLE}: node 1's, "
            f"2's and 3's inputs between bars, joined by '+', each edge OP~INPUT with OP one of "
            f"{', '.join(OPS)} and the inputs in order from 0."
        ) from None
    return tuple(ops)


def arch_from_weights(weights) -> str:
    """The arch string that a search's (6 x 5) edge weights or alphas select.

    Each edge takes its largest entry, ``none`` included, as the authors' search models do
    (``genotype()`` of xautodl's ``GenericNAS201Model``); a tie goes to the first op.
    """
    weights = np.asarray(weights)
    if weights.shape != (len(EDGES), len(OPS)):
        raise ValueError(f"NAS-Bench-201 weights are (6, 5), edges x ops; got {weights.shape}")
    return arch_string([OPS[k] for k in weights.argmax(axis=1)])
