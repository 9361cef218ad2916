"""The differentiable hyperparameter grid (HyperCuboid) of a multi-channel search, drawn by
graphviz: op nodes shaded by their softmax weight, the chosen path in red."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sharpdarts.core import genotypes, run_folder
from sharpdarts.core.genotypes import Genotype
from sharpdarts.errors import UserError
from sharpdarts.face.plots.common import output_format, render_graph
from sharpdarts.store import reader


def grid_weights_for(source: str | Path | Genotype) -> Genotype:
    """The grid's raw weights: a raw-weights genotype name, or a multi-channel search run folder.

    A run gives its final raw weights (run.json) or, while it is still running, the weights
    of its last logged epoch.
    """
    if isinstance(source, Genotype):
        return source
    path = Path(source)
    if path.is_dir() or path.name == run_folder.RUN_JSON:
        info = reader.read_info(path)
        raw = (info.get("final") or {}).get("raw_weights")
        if raw is None:
            logged = [r["grid_weights"] for r in reader.read_metrics(path) if "grid_weights" in r]
            if not logged:
                raise UserError(
                    f"{run_folder.run_dir(path)} is not a multi-channel search run: "
                    "it has no grid weights."
                )
            raw = {**logged[-1], "normal_concat": [], "reduce_concat": [], "layout": "raw_weights"}
        return genotypes.from_dict(raw)
    try:
        genotype = genotypes.get(str(source))
    except KeyError as e:
        raise UserError(str(e.args[0]) if e.args else str(e)) from None
    if genotype.layout != "raw_weights":
        raise UserError(f"{source} is a '{genotype.layout}' genotype, not grid weights.")
    return genotype


def plot_grid(
    source: str | Path | Genotype,
    out: str | Path,
    path: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draws the grid's graph: op nodes shaded by their softmax weight, the chosen path in red.

    Args:
        source: raw grid weights (see ``grid_weights_for``).
        out: the output file (.svg, .pdf or .png).
        path: the path to highlight; the weights' longest path when None.
        title: a caption above the graph.
    """
    import graphviz

    from sharpdarts.nn.multichannel import graph as graph_lib

    out, fmt = output_format(out)
    weights = grid_weights_for(source)
    graph = graph_lib.grid_graph(weights)
    chosen = list(path) if path is not None else graph_lib.longest_path(graph)
    on_path = set(zip(chosen, chosen[1:]))
    dot = graphviz.Digraph(
        format=fmt,
        graph_attr={"rankdir": "TB", "fontsize": "10"},
        node_attr={"shape": "box", "style": "filled", "fontsize": "8"},
        edge_attr={"arrowsize": "0.4"},
    )
    if title:
        dot.attr(label=title, labelloc="t")
    for node, attrs in graph.nodes(data=True):
        weight = attrs.get("weight")
        shade = 1.0 - 0.8 * min(float(weight) * 8.0, 1.0) if weight is not None else 1.0
        color = "#ff9999" if node in chosen else f"0.6 {1 - shade:.2f} 1.0"
        dot.node(node, node, fillcolor=color)
    for a, b in graph.edges():
        dot.edge(
            a,
            b,
            color="red" if (a, b) in on_path else "gray70",
            penwidth="2.5" if (a, b) in on_path else "0.5",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(render_graph(dot, fmt))
    return out
