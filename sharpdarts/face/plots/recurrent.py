"""Recurrent cells drawn by graphviz, like the DARTS paper's recurrent cell figures.

The inputs ``x_{t}`` and ``h_{t-1}`` feed node 0 (the initial state); each genotype entry
``(op, j)`` is an edge from node ``j`` into the next node, labelled with its op; the nodes of
``concat`` are averaged into ``h_{t}``.
"""

from __future__ import annotations

from sharpdarts.core.recurrent_genotypes import RecurrentGenotype, check
from sharpdarts.errors import UserError
from sharpdarts.face.plots.common import cell_digraph

_INPUT_COLOR = "darkseagreen2"
_NODE_COLOR = "lightblue"
_OUTPUT_COLOR = "palegoldenrod"


def recurrent_graph(genotype: RecurrentGenotype, title: str | None = None):
    """The graphviz ``Digraph`` of a recurrent genotype (not rendered).

    Raises:
        UserError: a malformed genotype.
    """
    try:
        genotype = check(genotype)
    except ValueError as e:
        raise UserError(f"The recurrent genotype cannot be drawn: {e}") from e
    graph = cell_digraph("recurrent", title)
    graph.node("x", label="x_{t}", fillcolor=_INPUT_COLOR)
    graph.node("h", label="h_{t-1}", fillcolor=_INPUT_COLOR)
    graph.node("n0", label="0", fillcolor=_NODE_COLOR)
    graph.edge("x", "n0", fillcolor="gray")
    graph.edge("h", "n0", fillcolor="gray")
    for i, (op, pred) in enumerate(genotype.recurrent):
        graph.node(f"n{i + 1}", label=str(i + 1), fillcolor=_NODE_COLOR)
        graph.edge(f"n{pred}", f"n{i + 1}", label=op, fillcolor="gray")
    graph.node("out", label="h_{t}", fillcolor=_OUTPUT_COLOR)
    for s in genotype.concat:
        graph.edge(f"n{s}", "out", fillcolor="gray")
    return graph
