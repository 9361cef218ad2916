"""Genotype cells drawn by graphviz (``dot``), like the DARTS and sharpDARTS figures.

``plot_genotype`` draws one edge per genotype entry, labelled with its op. It uses a system
Graphviz ``dot`` when one is on the PATH and otherwise the WebAssembly Graphviz that pip
installs (``plots.render``), so no system package is needed. ``genotype_for`` resolves a
registry name or a run folder to a ``Genotype``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sharpdarts.core import edge_genotypes, genotypes, recurrent_genotypes, run_folder
from sharpdarts.core.genotypes import Genotype
from sharpdarts.errors import UserError
from sharpdarts.face.plots.common import (
    CELL_TITLES,
    CELLS,
    cell_digraph,
    output_format,
    render_graph,
)
from sharpdarts.store import reader

# DARTS' visualize.py look: green inputs, blue intermediate nodes, yellow output.
_INPUT_COLOR = "darkseagreen2"
_NODE_COLOR = "lightblue"
_OUTPUT_COLOR = "palegoldenrod"


def _genotype_from_value(value: Any, where: str) -> Genotype | None:
    """A genotype from a run.json value: a genotype dict, a registry name, or None."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        try:
            return genotypes.from_dict(value)
        except ValueError as e:
            raise UserError(f"The genotype in {where} is malformed: {e}") from e
    if isinstance(value, str) and not value.startswith("run:"):
        try:
            return genotypes.get(value)
        except KeyError:
            return None
    return None


def genotype_for(name_or_run_dir: str | Path | Genotype, prefer: str = "genotype") -> Genotype:
    """Resolves a registry name or a run folder to a genotype.

    A run folder (or its run.json) gives, in order: ``final[prefer]``, the other of
    ``final['genotype']`` / ``final['best_genotype']``, a top-level ``genotype`` (a genotype
    dict or a registry name, as a training run may record), and finally the ``genotype`` of
    the last logged epoch (so a search that is still running can be drawn). Anything else is
    looked up in the genotype registry (``genotypes.get``). A ``Genotype`` passes through.

    Args:
        name_or_run_dir: A genotype name (e.g. ``'DARTS_V2'``), a run folder path, or a
            ``Genotype``.
        prefer: ``'genotype'`` (the search's final genotype, the default) or
            ``'best_genotype'`` (the genotype at the best validation epoch).

    Returns:
        The genotype.

    Raises:
        UserError: An unknown name, a folder that is not a run folder, a run without a
            genotype, or a malformed genotype.
    """
    if isinstance(name_or_run_dir, (Genotype, recurrent_genotypes.RecurrentGenotype)):
        return name_or_run_dir
    if prefer not in ("genotype", "best_genotype"):
        raise ValueError(f"prefer must be 'genotype' or 'best_genotype', got {prefer!r}.")
    text = str(name_or_run_dir)
    path = Path(text)
    if path.is_dir() or (path.name == run_folder.RUN_JSON and path.is_file()):
        folder = run_folder.run_dir(path)
        info = reader.read_info(folder)
        where = str(run_folder.run_json_path(folder))
        final = info.get("final") if isinstance(info.get("final"), Mapping) else {}
        other = "best_genotype" if prefer == "genotype" else "genotype"
        for value, source in (
            (final.get(prefer), f"{where} final.{prefer}"),
            (final.get(other), f"{where} final.{other}"),
            (info.get("genotype"), f"{where} genotype"),
        ):
            found = _genotype_from_value(value, source)
            if found is not None:
                return found
        for record in reversed(reader.read_metrics(folder)):
            found = _genotype_from_value(
                record.get("genotype"), str(run_folder.metrics_path(folder))
            )
            if found is not None:
                return found
        raise UserError(
            f"The run in {folder} has no genotype yet (run.json has no final genotype and no "
            "epoch logged one); only search runs record one."
        )
    try:
        return genotypes.get(text)
    except KeyError as e:
        raise UserError(f"{e} It is not a run folder either.") from None
    except ValueError as e:
        raise UserError(str(e)) from e


def _check_cell(genotype: Genotype, cell: str) -> tuple[list[tuple[str, int, int]], list[int], int]:
    """The (edges, concat, steps) of one cell, validated for drawing: edges as
    ``(op, state, input)`` triples, a two-input cell's entry ``k`` into state ``2 + k // 2``."""
    entries = list(getattr(genotype, cell))
    concat = [int(i) for i in getattr(genotype, f"{cell}_concat")]
    if genotype.layout == "edges":  # validated when built; a node without edges is drawn alone
        steps = max([node for _, node, _ in entries] + concat + [1]) - 1
        return [tuple(e) for e in entries], concat, steps
    if len(entries) % 2:
        raise UserError(
            f"The {cell} cell has {len(entries)} entries; a cell genotype has two per node."
        )
    steps = len(entries) // 2
    for k, (op, index) in enumerate(entries):
        node = k // 2
        if not 0 <= index < node + 2:
            raise UserError(
                f"The {cell} cell entry {k} ({op!r}, {index}) feeds node {node} from state "
                f"{index}, which does not exist yet (states 0..{node + 1})."
            )
    bad = [i for i in concat if not 0 <= i < steps + 2]
    if bad:
        raise UserError(
            f"The {cell} cell concatenates states {bad} that do not exist (states 0..{steps + 1})."
        )
    return edge_genotypes.pairs_to_edges(entries), concat, steps


def genotype_graph(genotype: Genotype, cells: Sequence[str] = CELLS, title: str | None = None):
    """Builds the graphviz ``Digraph`` of a cell genotype (without rendering it).

    Each cell is a cluster with input nodes ``c_{k-2}`` and ``c_{k-1}``, intermediate nodes
    ``0..n-1`` and the output ``c_{k}``. Genotype entry ``2*i + j`` (j = 0, 1) is an edge into
    node ``i`` from state ``input_index`` (0: ``c_{k-2}``, 1: ``c_{k-1}``, s >= 2: node
    ``s - 2``), labelled with its op (an 'edges' genotype: each ``(op, node, input)`` edge; a
    node without edges stands alone); every state in the cell's concat list has an unlabelled
    edge to the output. Node ids are prefixed with the cell name, so both cells fit in one
    graph.

    Args:
        genotype: A genotype of layout 'cell' or 'edges'.
        cells: Which cells to draw, any of ``('normal', 'reduce')``, in that drawing order.
        title: A caption above the graph; None for none.

    Returns:
        A ``graphviz.Digraph`` (engine dot).

    Raises:
        UserError: A genotype that is not of layout 'cell' or 'edges', an unknown cell name, or a
            malformed cell.
    """
    if getattr(genotype, "layout", "cell") not in ("cell", "edges"):
        raise UserError(
            "Only 'cell' and 'edges' genotypes can be drawn as cells; this one has layout "
            f"{genotype.layout!r}."
        )
    cells = tuple(cells)
    unknown = [c for c in cells if c not in CELLS]
    if unknown or not cells:
        raise UserError(
            f"Unknown cell(s) {unknown or list(cells)}; choose from {', '.join(CELLS)}."
        )

    graph = cell_digraph("genotype", title, nodesep="0.3")
    checked = {cell: _check_cell(genotype, cell) for cell in cells}
    # With rankdir=LR, dot stacks clusters bottom-up in definition order: define them in
    # reverse so that the first cell (normal) is drawn on top.
    for cell in reversed(cells):
        entries, concat, steps = checked[cell]
        with graph.subgraph(name=f"cluster_{cell}") as sub:
            sub.attr(label=CELL_TITLES[cell], labelloc="t", style="rounded", color="gray60")

            def state(s: int) -> str:
                # Plain ids: a ':' would be read as a port, and names must differ per cell.
                return f"{cell}_in{s}" if s < 2 else f"{cell}_node{s - 2}"

            sub.node(state(0), label="c_{k-2}", fillcolor=_INPUT_COLOR)
            sub.node(state(1), label="c_{k-1}", fillcolor=_INPUT_COLOR)
            for i in range(steps):
                sub.node(state(i + 2), label=str(i), fillcolor=_NODE_COLOR)
            output = f"{cell}_out"
            sub.node(output, label="c_{k}", fillcolor=_OUTPUT_COLOR)
            for op, node, index in entries:
                sub.edge(state(index), state(node), label=op, fillcolor="gray")
            for s in concat:
                sub.edge(state(s), output, fillcolor="gray")
    return graph


def plot_genotype(
    genotype: Genotype,
    out: str | Path,
    cells: Sequence[str] = CELLS,
    separate: bool = False,
    title: str | None = None,
) -> Path | list[Path]:
    """Draws the cells of a genotype with graphviz, like the DARTS and sharpDARTS figures.

    Args:
        genotype: A 'cell' or 'edges' genotype (see ``genotype_for`` to resolve a name or run
            folder), a recurrent genotype or a NAS-Bench-201 arch string (one cell each).
        out: The output file; its extension picks the format (.svg, .pdf or .png).
        cells: Which cells to draw, any of ``('normal', 'reduce')``.
        separate: False: every cell in one file (one cluster each). True: one file per cell,
            named ``<stem>_<cell><suffix>`` beside ``out`` (e.g. ``arch_normal.svg``).
        title: A caption above the graph (in every file when separate).

    Returns:
        The written path, or the list of paths (in ``cells`` order) when ``separate``.

    Raises:
        UserError: An unsupported extension, or a genotype that cannot be drawn.
    """
    out, fmt = output_format(out)
    cells = tuple(cells)
    # A recurrent cell or a NAS-Bench-201 cell (an arch string) is one cell: one graph.
    if isinstance(genotype, (recurrent_genotypes.RecurrentGenotype, str)):
        from sharpdarts.face.plots.nb201_cell import nb201_graph
        from sharpdarts.face.plots.recurrent import recurrent_graph

        draw = nb201_graph if isinstance(genotype, str) else recurrent_graph
        data = render_graph(draw(genotype, title), fmt)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return [out] if separate else out
    if separate:
        graphs = [
            (out.with_name(f"{out.stem}_{c}{out.suffix}"), genotype_graph(genotype, (c,), title))
            for c in cells
        ]
    else:
        graphs = [(out, genotype_graph(genotype, cells, title))]
    rendered = [(path, render_graph(graph, fmt)) for path, graph in graphs]  # all or nothing
    for path, data in rendered:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    paths = [path for path, _ in rendered]
    return paths if separate else paths[0]
