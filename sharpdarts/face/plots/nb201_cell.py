"""NAS-Bench-201 cells drawn by graphviz, in the style of the DARTS cell figures.

The benchmark's cell (Dong & Yang, ICLR 2020, Figure 1) has four nodes: node 0 is the cell's
input, node 3 its output, and every edge ``i <- j`` (``j < i``) carries one op. An edge whose op
is ``none`` (the benchmark's zero op) adds nothing to its node, so it is left out of the picture.
"""

from __future__ import annotations

from sharpdarts.core.nb201_arch import EDGES, NODES, parse_arch
from sharpdarts.face.plots.common import cell_digraph

_INPUT_COLOR = "darkseagreen2"
_NODE_COLOR = "lightblue"
_OUTPUT_COLOR = "palegoldenrod"


def nb201_graph(arch: str, title: str | None = None):
    """The graphviz ``Digraph`` of a NAS-Bench-201 arch string (not rendered).

    Raises:
        UserError: a malformed arch string (the message shows the form).
    """
    ops = parse_arch(arch)
    graph = cell_digraph("nb201", title)
    for node in range(NODES):
        color = {0: _INPUT_COLOR, NODES - 1: _OUTPUT_COLOR}.get(node, _NODE_COLOR)
        label = {0: "in (0)", NODES - 1: "out (3)"}.get(node, str(node))
        graph.node(f"n{node}", label=label, fillcolor=color)
    for (node, source), op in zip(EDGES, ops):
        if op != "none":
            graph.edge(f"n{source}", f"n{node}", label=op, fillcolor="gray")
    return graph
