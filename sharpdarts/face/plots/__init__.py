"""Pictures of NAS results: genotype graphs, learning-rate curves, learning curves, alphas.

Every ``plot_*`` function writes one file (or, for ``plot_genotype(separate=True)``, one per
cell) and returns its path. The format follows the output file's extension: ``.svg``,
``.pdf`` or ``.png``; any other extension is a ``UserError``, raised before anything is
written. Parent folders are created as needed.

- ``plot_genotype``: DARTS-style cell graphs drawn by graphviz (``dot``), one edge per
  genotype entry, labelled with its op. Needs the ``dot`` binary (``apt-get install graphviz``
  or ``conda install graphviz``); without it a ``UserError`` says so.
- ``plot_lr``: cosine power annealing for one or more exponent orders against plain cosine
  annealing and exponential decay (``lr_curves`` gives the values, ``make_lr_figure`` the
  matplotlib Figure).
- ``plot_curves``: accuracy, loss and learning rate per epoch of one or more runs; runs of
  the same experiment are drawn as their mean with a ± one standard deviation band.
- ``plot_alphas``: a search run's softmax architecture weights as heatmaps (edges x ops) for
  the normal and reduction cells at the last logged epoch, above a grid of small heatmaps over
  the logged epochs (every k-th epoch when there are many, always ending with the last).
- ``genotype_for``: resolves a registry name or a run folder to a ``Genotype``.

Figures are built on ``matplotlib.figure.Figure`` objects directly (no pyplot, no global
backend state), so this module is safe in headless processes and threads.

Run folders are read directly (``run.json`` and ``metrics.jsonl``, see docs/CONVENTIONS.md):
functions here take run folder *paths*; resolving run ids is the caller's job.
"""
from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sharpdarts.core import genotypes
from sharpdarts.errors import UserError
from sharpdarts.store import reader
from sharpdarts.core.genotypes import Genotype
from sharpdarts.core.schedules import cosine_annealing, cosine_power_annealing, exponential_decay

__all__ = [
    "FORMATS",
    "genotype_for",
    "genotype_graph",
    "plot_genotype",
    "lr_curves",
    "make_lr_figure",
    "plot_lr",
    "make_curves_figure",
    "plot_curves",
    "alphas_primitives",
    "edge_labels",
    "make_alphas_figure",
    "plot_alphas",
]

FORMATS = ("svg", "pdf", "png")
CELLS = ("normal", "reduce")
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
DOT_HINT = (
    "Drawing genotypes needs the Graphviz 'dot' program, which was not found on the PATH. "
    "Install it with 'apt-get install graphviz' (Debian/Ubuntu), 'conda install graphviz' "
    "or 'brew install graphviz', then try again."
)

# DARTS' visualize.py look: green inputs, blue intermediate nodes, yellow output.
_INPUT_COLOR = "darkseagreen2"
_NODE_COLOR = "lightblue"
_OUTPUT_COLOR = "palegoldenrod"
_CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _format(out: str | Path) -> tuple[Path, str]:
    """The output path and its format, or a UserError for an unsupported extension."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserError(
            f"Cannot write a figure to {str(out)!r}: unsupported file extension "
            f"{out.suffix or '(none)'!r}. Use one of {', '.join('.' + f for f in FORMATS)}.")
    return out, fmt


def _save_figure(fig: Figure, out: Path, fmt: str) -> Path:
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


# ---------------------------------------------------------------------------------------------
# Genotypes


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
    if isinstance(name_or_run_dir, Genotype):
        return name_or_run_dir
    if prefer not in ("genotype", "best_genotype"):
        raise ValueError(f"prefer must be 'genotype' or 'best_genotype', got {prefer!r}.")
    text = str(name_or_run_dir)
    path = Path(text)
    if path.is_dir() or (path.name == RUN_JSON and path.is_file()):
        folder = reader.run_dir(path)
        info = reader.read_info(folder)
        where = str(folder / RUN_JSON)
        final = info.get("final") if isinstance(info.get("final"), Mapping) else {}
        other = "best_genotype" if prefer == "genotype" else "genotype"
        for value, source in ((final.get(prefer), f"{where} final.{prefer}"),
                              (final.get(other), f"{where} final.{other}"),
                              (info.get("genotype"), f"{where} genotype")):
            found = _genotype_from_value(value, source)
            if found is not None:
                return found
        for record in reversed(reader.read_metrics(folder)):
            found = _genotype_from_value(record.get("genotype"), f"{folder / METRICS}")
            if found is not None:
                return found
        raise UserError(
            f"The run in {folder} has no genotype yet (run.json has no final genotype and no "
            "epoch logged one); only search runs record one.")
    try:
        return genotypes.get(text)
    except KeyError as e:
        raise UserError(f"{e} It is not a run folder either.") from None
    except ValueError as e:
        raise UserError(str(e)) from e


def _check_cell(genotype: Genotype, cell: str) -> tuple[list[tuple[str, int]], list[int]]:
    """The (entries, concat) of one cell, validated for drawing."""
    entries = list(getattr(genotype, cell))
    concat = [int(i) for i in getattr(genotype, f"{cell}_concat")]
    if len(entries) % 2:
        raise UserError(
            f"The {cell} cell has {len(entries)} entries; a cell genotype has two per node.")
    steps = len(entries) // 2
    for k, (op, index) in enumerate(entries):
        node = k // 2
        if not 0 <= index < node + 2:
            raise UserError(
                f"The {cell} cell entry {k} ({op!r}, {index}) feeds node {node} from state "
                f"{index}, which does not exist yet (states 0..{node + 1}).")
    bad = [i for i in concat if not 0 <= i < steps + 2]
    if bad:
        raise UserError(f"The {cell} cell concatenates states {bad} that do not exist "
                        f"(states 0..{steps + 1}).")
    return entries, concat


def genotype_graph(genotype: Genotype, cells: Sequence[str] = CELLS, title: str | None = None):
    """Builds the graphviz ``Digraph`` of a cell genotype (without rendering it).

    Each cell is a cluster with input nodes ``c_{k-2}`` and ``c_{k-1}``, intermediate nodes
    ``0..n-1`` and the output ``c_{k}``. Genotype entry ``2*i + j`` (j = 0, 1) is an edge into
    node ``i`` from state ``input_index`` (0: ``c_{k-2}``, 1: ``c_{k-1}``, s >= 2: node
    ``s - 2``), labelled with its op; every state in the cell's concat list has an unlabelled
    edge to the output. Node ids are prefixed with the cell name, so both cells fit in one
    graph.

    Args:
        genotype: A genotype of layout 'cell'.
        cells: Which cells to draw, any of ``('normal', 'reduce')``, in that drawing order.
        title: A caption above the graph; None for none.

    Returns:
        A ``graphviz.Digraph`` (engine dot).

    Raises:
        UserError: A genotype that is not of layout 'cell', an unknown cell name, or a
            malformed cell.
    """
    import graphviz

    if getattr(genotype, "layout", "cell") != "cell":
        raise UserError(
            f"Only 'cell' genotypes can be drawn as cells; this one has layout "
            f"{genotype.layout!r}.")
    cells = tuple(cells)
    unknown = [c for c in cells if c not in CELLS]
    if unknown or not cells:
        raise UserError(f"Unknown cell(s) {unknown or list(cells)}; choose from {', '.join(CELLS)}.")

    graph = graphviz.Digraph(
        name="genotype",
        engine="dot",
        graph_attr={"rankdir": "LR", "fontname": "times", "fontsize": "20", "nodesep": "0.3"},
        node_attr={"style": "filled", "shape": "rect", "align": "center", "fontsize": "20",
                   "height": "0.5", "width": "0.5", "penwidth": "2", "fontname": "times"},
        edge_attr={"fontsize": "20", "fontname": "times"},
    )
    if title:
        graph.attr(label=title, labelloc="t")
    checked = {cell: _check_cell(genotype, cell) for cell in cells}
    # With rankdir=LR, dot stacks clusters bottom-up in definition order: define them in
    # reverse so that the first cell (normal) is drawn on top.
    for cell in reversed(cells):
        entries, concat = checked[cell]
        steps = len(entries) // 2
        with graph.subgraph(name=f"cluster_{cell}") as sub:
            sub.attr(label=_CELL_TITLES[cell], labelloc="t", style="rounded", color="gray60")

            def state(s: int) -> str:
                # Plain ids: a ':' would be read as a port, and names must differ per cell.
                return f"{cell}_in{s}" if s < 2 else f"{cell}_node{s - 2}"

            sub.node(state(0), label="c_{k-2}", fillcolor=_INPUT_COLOR)
            sub.node(state(1), label="c_{k-1}", fillcolor=_INPUT_COLOR)
            for i in range(steps):
                sub.node(state(i + 2), label=str(i), fillcolor=_NODE_COLOR)
            output = f"{cell}_out"
            sub.node(output, label="c_{k}", fillcolor=_OUTPUT_COLOR)
            for k, (op, index) in enumerate(entries):
                sub.edge(state(index), state(k // 2 + 2), label=op, fillcolor="gray")
            for s in concat:
                sub.edge(state(s), output, fillcolor="gray")
    return graph


def _render(graph, fmt: str) -> bytes:
    """Runs dot on a graph, turning a missing dot into a UserError with the install hint."""
    import graphviz

    if shutil.which("dot") is None:
        raise UserError(DOT_HINT)
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise UserError(DOT_HINT) from e


def plot_genotype(
    genotype: Genotype,
    out: str | Path,
    cells: Sequence[str] = CELLS,
    separate: bool = False,
    title: str | None = None,
) -> Path | list[Path]:
    """Draws the cells of a genotype with graphviz, like the DARTS and sharpDARTS figures.

    Args:
        genotype: A 'cell' genotype (see ``genotype_for`` to resolve a name or run folder).
        out: The output file; its extension picks the format (.svg, .pdf or .png).
        cells: Which cells to draw, any of ``('normal', 'reduce')``.
        separate: False: every cell in one file (one cluster each). True: one file per cell,
            named ``<stem>_<cell><suffix>`` beside ``out`` (e.g. ``arch_normal.svg``).
        title: A caption above the graph (in every file when separate).

    Returns:
        The written path, or the list of paths (in ``cells`` order) when ``separate``.

    Raises:
        UserError: An unsupported extension, a genotype that cannot be drawn, or no ``dot``.
    """
    out, fmt = _format(out)
    cells = tuple(cells)
    if separate:
        graphs = [(out.with_name(f"{out.stem}_{c}{out.suffix}"), genotype_graph(genotype, (c,), title))
                  for c in cells]
    else:
        graphs = [(out, genotype_graph(genotype, cells, title))]
    rendered = [(path, _render(graph, fmt)) for path, graph in graphs]  # all or nothing
    for path, data in rendered:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    paths = [path for path, _ in rendered]
    return paths if separate else paths[0]


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules


def _orders(exponent_orders: float | Sequence[float]) -> list[float]:
    if isinstance(exponent_orders, int | float | np.number):
        return [exponent_orders]
    orders = list(exponent_orders)
    if not orders:
        raise UserError("Give at least one exponent order.")
    return orders


def cpa_label(exponent_order: float, warmup_epochs: float | None = None) -> str:
    """The legend label of the cosine power annealing curve of one exponent order."""
    warm = f", {warmup_epochs:g} warmup epochs" if warmup_epochs else ""
    return f"cosine power annealing, order {exponent_order:g}{warm}"


COSINE_LABEL = "cosine annealing"
EXPONENTIAL_LABEL = "exponential decay"


def lr_curves(
    epochs: int,
    max_lr: float,
    min_lr: float,
    exponent_orders: float | Sequence[float] = (10,),
    warmup_epochs: float | None = None,
) -> dict[str, np.ndarray]:
    """The learning rate per epoch (epochs 1..E) of each curve ``plot_lr`` draws.

    Args:
        epochs: The number of epochs E.
        max_lr: The largest (initial) learning rate.
        min_lr: The final learning rate (positive, for the exponential curve).
        exponent_orders: One exponent order or several (see ``cosine_power_annealing``).
        warmup_epochs: Linear warmup epochs of the cosine power curves; None for none. The
            comparison curves have no warmup, as in the original figure.

    Returns:
        ``{label: values}``: one cosine power annealing curve per order (``cpa_label``), then
        ``'cosine annealing'`` and ``'exponential decay'``, in drawing order.

    Raises:
        UserError: Bad settings (e.g. an exponent order below 1).
    """
    curves: dict[str, np.ndarray] = {}
    try:
        for order in _orders(exponent_orders):
            curves[cpa_label(order, warmup_epochs)] = cosine_power_annealing(
                epochs=epochs, max_lr=max_lr, min_lr=min_lr, exponent_order=order,
                warmup_epochs=warmup_epochs)
        curves[COSINE_LABEL] = cosine_annealing(epochs, max_lr, min_lr)
        curves[EXPONENTIAL_LABEL] = exponential_decay(epochs, max_lr, min_lr)
    except ValueError as e:
        raise UserError(str(e)) from e
    return curves


def make_lr_figure(
    epochs: int,
    max_lr: float,
    min_lr: float,
    exponent_orders: float | Sequence[float] = (10,),
    warmup_epochs: float | None = None,
    log: bool = False,
    title: str | None = None,
) -> Figure:
    """The learning-rate figure of ``plot_lr`` (one axes; each line labelled as in ``lr_curves``).

    The x data of every line is the epoch numbers 1..E and the y data the curve's values.
    """
    curves = lr_curves(epochs, max_lr, min_lr, exponent_orders, warmup_epochs)
    x = np.arange(1, int(epochs) + 1)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    styles = {COSINE_LABEL: dict(color="darkorange", linestyle="--"),
              EXPONENTIAL_LABEL: dict(color="gray", linestyle=":")}
    cpa_colors = ["royalblue", "darkmagenta", "seagreen", "firebrick", "teal", "olive"]
    n_cpa = 0
    for label, values in curves.items():
        style = styles.get(label)
        if style is None:
            style = dict(color=cpa_colors[n_cpa % len(cpa_colors)], linestyle="-")
            n_cpa += 1
        ax.plot(x, values, label=label, linewidth=1.8, **style)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"learning rate ({'log' if log else 'linear'} scale)")
    if log:
        ax.set_yscale("log")
    ax.set_xlim(1, max(int(epochs), 2))
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title or f"Cosine power annealing, {max_lr:g} to {min_lr:g} over {int(epochs)} epochs")
    ax.legend(loc="lower left" if log else "upper right", fontsize="small")
    return fig


def plot_lr(
    out: str | Path,
    epochs: int,
    max_lr: float,
    min_lr: float,
    exponent_orders: float | Sequence[float] = (10,),
    warmup_epochs: float | None = None,
    log: bool = False,
    title: str | None = None,
) -> Path:
    """Plots cosine power annealing against cosine annealing and exponential decay.

    Args:
        out: The output file (.svg, .pdf or .png).
        epochs, max_lr, min_lr, exponent_orders, warmup_epochs: See ``lr_curves``.
        log: A logarithmic learning-rate axis (exponential decay is then a straight line).
        title: The axes title; None for a default naming the settings.

    Returns:
        ``out`` as a Path.

    Raises:
        UserError: An unsupported extension or bad schedule settings.
    """
    out, fmt = _format(out)
    return _save_figure(
        make_lr_figure(epochs, max_lr, min_lr, exponent_orders, warmup_epochs, log, title), out, fmt)


# ---------------------------------------------------------------------------------------------
# Learning curves


CURVE_PANELS = (
    ("accuracy (%)", ("train_acc", "valid_acc")),
    ("loss", ("train_loss", "valid_loss")),
    ("learning rate", ("lr",)),
)


def _group_runs(run_dirs: Sequence[str | Path], group_by: str) -> dict[str, list[list[dict]]]:
    """``{group: [metrics of each run]}``, groups in first-seen order."""
    if not run_dirs:
        raise UserError("Give at least one run folder to plot.")
    groups: dict[str, list[list[dict]]] = {}
    for run_dir in run_dirs:
        info = reader.read_info(run_dir)
        key = info.get(group_by)
        key = str(key) if key is not None else reader.run_dir(run_dir).name
        groups.setdefault(key, []).append(reader.read_metrics(run_dir))
    if not any(records for runs in groups.values() for records in runs):
        raise UserError("None of the runs has logged an epoch yet; there is nothing to plot.")
    return groups


def _mean_std(runs: list[list[dict]], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(epochs, mean, std, runs with this metric) over runs, per epoch.

    The std is the sample standard deviation (ddof=1, like the tables), 0 where only one run
    logged that epoch.
    """
    values: dict[int, list[float]] = {}
    n_runs = 0
    for records in runs:
        seen = False
        for r in records:
            v = r.get(metric)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                values.setdefault(int(r["epoch"]), []).append(float(v))
                seen = True
        n_runs += seen
    epochs = np.array(sorted(values), dtype=float)
    mean = np.array([np.mean(values[int(e)]) for e in epochs])
    std = np.array([np.std(values[int(e)], ddof=1) if len(values[int(e)]) > 1 else 0.0
                    for e in epochs])
    return epochs, mean, std, n_runs


def make_curves_figure(run_dirs: Sequence[str | Path], group_by: str = "experiment",
                       title: str | None = None) -> Figure:
    """The learning-curve figure of ``plot_curves``: accuracy, loss and learning rate panels.

    One color per group; train lines dashed, validation lines solid. Each line's y data is
    the per-epoch mean over the group's runs (its label ends with ``(n=<runs>)``), with a
    ± one-std band (a ``fill_between`` collection) when the group has more than one run.
    """
    groups = _group_runs(run_dirs, group_by)
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, len(CURVE_PANELS))
    colors = [f"C{i}" for i in range(10)]
    for ax, (ylabel, metrics) in zip(axes, CURVE_PANELS):
        for g, (name, runs) in enumerate(groups.items()):
            color = colors[g % len(colors)]
            for metric in metrics:
                epochs, mean, std, n = _mean_std(runs, metric)
                if not n:
                    continue
                split = metric.split("_")[0]
                kind = {"train": "train", "valid": "valid"}.get(split, "")
                label = f"{name} {kind} (n={n})".replace("  ", " ") if kind else f"{name} (n={n})"
                ax.plot(epochs, mean, color=color, label=label,
                        linestyle="--" if kind == "train" else "-", marker="." if len(epochs) < 30 else None)
                if n > 1:
                    ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(run_dirs: Sequence[str | Path], out: str | Path, group_by: str = "experiment",
                title: str | None = None) -> Path:
    """Plots train/validation accuracy and loss and the learning rate per epoch of runs.

    Runs whose run.json has the same ``group_by`` value (the experiment, by default) are
    overlaid as one mean line with a ± one standard deviation band.

    Args:
        run_dirs: Run folders (``RESULTS/runs/<experiment>/<run_id>``) or their run.json paths.
        out: The output file (.svg, .pdf or .png).
        group_by: The run.json key that groups runs.
        title: A figure title; None for none.

    Returns:
        ``out`` as a Path.

    Raises:
        UserError: An unsupported extension, a folder that is not a run folder, or no logged
            epochs at all.
    """
    out, fmt = _format(out)
    return _save_figure(make_curves_figure(run_dirs, group_by, title), out, fmt)


# ---------------------------------------------------------------------------------------------
# Architecture weights


def alphas_primitives(info: Mapping[str, Any], n_ops: int) -> list[str]:
    """The op names of the alpha columns of a search run.

    Taken from run.json's ``primitives`` (a list of names or a ``PRIMITIVE_SETS`` name) when
    present; otherwise the one ``PRIMITIVE_SETS`` list with ``n_ops`` ops (their lengths are
    distinct: 8 DARTS_PRIMITIVES, 9 PRIMITIVES, 12 SHARPER_PRIMITIVES, 2
    MULTICHANNELNET_PRIMITIVES); otherwise generic names ``op0, op1, ...``.

    Raises:
        UserError: run.json names primitives that do not match the weights.
    """
    given = info.get("primitives")
    if given is not None:
        try:
            names = genotypes.primitives(given)
        except (KeyError, TypeError) as e:
            raise UserError(f"run.json 'primitives' is not usable: {e}") from e
        if len(names) != n_ops:
            raise UserError(
                f"run.json lists {len(names)} primitives but the logged alphas have {n_ops} ops.")
        return names
    matches = [list(ops) for ops in genotypes.PRIMITIVE_SETS.values() if len(ops) == n_ops]
    if len(matches) == 1:
        return matches[0]
    return [f"op{i}" for i in range(n_ops)]


def edge_labels(n_edges: int) -> list[str]:
    """Row labels ``'j->s'`` of a cell's alphas: input state j into state s.

    Rows are ordered node by node: intermediate node i (state s = i + 2) has the rows of its
    inputs j = 0..i+1; states 0 and 1 are the cell inputs c_{k-2} and c_{k-1}. An edge count
    that no step count gives is labelled ``e0, e1, ...``.
    """
    labels: list[str] = []
    node = 0
    while len(labels) < n_edges:
        labels.extend(f"{j}->{node + 2}" for j in range(node + 2))
        node += 1
    if len(labels) != n_edges:
        return [f"e{i}" for i in range(n_edges)]
    return labels


def _alphas_history(run_dir: str | Path) -> tuple[dict, list[int], dict[str, list[np.ndarray]]]:
    """(run.json, logged epochs with alphas, {cell: [edges x ops array per epoch]})."""
    info = reader.read_info(run_dir)
    epochs: list[int] = []
    history: dict[str, list[np.ndarray]] = {c: [] for c in CELLS}
    for record in reader.read_metrics(run_dir):
        normal, reduce = record.get("alphas_normal"), record.get("alphas_reduce")
        if normal is None or reduce is None:
            continue
        try:
            arrays = {c: np.asarray(a, dtype=float) for c, a in zip(CELLS, (normal, reduce))}
        except (TypeError, ValueError) as e:
            raise UserError(f"Epoch {record['epoch']} of {run_dir} has malformed alphas: {e}") from e
        if any(a.ndim != 2 for a in arrays.values()):
            raise UserError(f"Epoch {record['epoch']} of {run_dir} has alphas that are not "
                            "(edges x ops) tables.")
        epochs.append(int(record["epoch"]))
        for c in CELLS:
            history[c].append(arrays[c])
    if not epochs:
        raise UserError(
            f"The run in {reader.run_dir(run_dir)} has logged no architecture weights "
            "(alphas_normal / alphas_reduce); only search runs do.")
    return info, epochs, history


def _grid_indices(n: int, max_grid: int) -> list[int]:
    """Every k-th of n epoch indices, counted back from the last, at most max_grid of them."""
    k = max(1, math.ceil(n / max(1, max_grid)))
    return list(range(n - 1, -1, -k))[::-1]


def make_alphas_figure(run_dir: str | Path, max_grid: int = 10, title: str | None = None) -> Figure:
    """The architecture-weight figure of ``plot_alphas``.

    Top: one heatmap per cell (rows: edges ``j->s``; columns: ops) of the last logged epoch,
    with the values written in. Bottom: a grid with one small heatmap per selected epoch
    (columns) and cell (rows), all on one color scale. ``fig.subfigs[0]`` holds the last-epoch
    heatmaps, ``fig.subfigs[1]`` the grid; every heatmap is an ``AxesImage`` (``ax.images[0]``)
    whose array is the plotted weights.
    """
    info, epochs, history = _alphas_history(run_dir)
    last = {c: history[c][-1] for c in CELLS}
    n_edges, n_ops = last["normal"].shape
    ops = alphas_primitives(info, n_ops)
    rows = {c: edge_labels(last[c].shape[0]) for c in CELLS}
    picked = _grid_indices(len(epochs), max_grid)
    vmax = max(float(np.max(history[c][i])) for c in CELLS for i in picked)
    vmax = max(vmax, float(max(np.max(a) for a in last.values())), 1e-12)

    fig = Figure(figsize=(max(10.0, 1.25 * len(picked) + 1.5), 7.0 + 0.2 * n_edges),
                 layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.2, 1.0])
    top_axes = top.subplots(1, 2)
    for ax, cell in zip(top_axes, CELLS):
        data = last[cell]
        image = ax.imshow(data, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
        ax.set_xticks(range(data.shape[1]), ops[: data.shape[1]], rotation=60, ha="right",
                      fontsize="small")
        ax.set_yticks(range(data.shape[0]), rows[cell], fontsize="small")
        ax.set_ylabel("edge (input state -> node state)")
        ax.set_title(f"{_CELL_TITLES[cell]}, epoch {epochs[-1]}")
        if data.size <= 400:
            for (r, c), v in np.ndenumerate(data):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if v > 0.6 * vmax else "white")
    top.colorbar(image, ax=list(top_axes), shrink=0.9, label="softmax weight")
    top.suptitle(title or f"Architecture weights of {info.get('experiment', reader.run_dir(run_dir).name)}")

    grid = bottom.subplots(2, len(picked), squeeze=False)
    for col, i in enumerate(picked):
        for row, cell in enumerate(CELLS):
            ax = grid[row][col]
            ax.imshow(history[cell][i], cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"epoch {epochs[i]}", fontsize="small")
            if col == 0:
                ax.set_ylabel(cell, fontsize="small")
    if len(picked) == len(epochs):
        step = "every logged epoch"
    else:
        step = f"every {picked[1] - picked[0] if len(picked) > 1 else len(epochs)} logged epochs"
    bottom.suptitle(f"Over the search ({step}; rows: edges, columns: ops)", fontsize="medium")
    return fig


def plot_alphas(run_dir: str | Path, out: str | Path, max_grid: int = 10,
                title: str | None = None) -> Path:
    """Plots a search run's softmax architecture weights (normal and reduction cells).

    The last logged epoch is drawn as two large heatmaps (edges ``j->s`` by op names, values
    written in); below, an animation-free grid shows the weights over the search, one small
    heatmap per logged epoch, or per k-th epoch when more than ``max_grid`` were logged
    (always ending with the last). Op names come from run.json ``primitives`` or are inferred
    from the op count (see ``alphas_primitives``).

    Args:
        run_dir: A search run folder (or its run.json).
        out: The output file (.svg, .pdf or .png).
        max_grid: The most epochs in the grid.
        title: The title of the top part; None for one naming the experiment.

    Returns:
        ``out`` as a Path.

    Raises:
        UserError: An unsupported extension, not a run folder, or no logged alphas.
    """
    out, fmt = _format(out)
    return _save_figure(make_alphas_figure(run_dir, max_grid, title), out, fmt)


# ---------------------------------------------------------------------------------------------
# The hyperparameter grid (HyperCuboid)


def grid_weights_for(source: str | Path | Genotype) -> Genotype:
    """The grid's raw weights: a raw-weights genotype name, or a multi-channel search run folder.

    A run gives its final raw weights (run.json) or, while it is still running, the weights
    of its last logged epoch.
    """
    if isinstance(source, Genotype):
        return source
    path = Path(source)
    if path.is_dir() or path.name == RUN_JSON:
        info = reader.read_info(path)
        raw = (info.get("final") or {}).get("raw_weights")
        if raw is None:
            logged = [r["grid_weights"] for r in reader.read_metrics(path) if "grid_weights" in r]
            if not logged:
                raise UserError(f"{reader.run_dir(path)} is not a multi-channel search run: it has no "
                                "grid weights.")
            raw = {**logged[-1], "normal_concat": [], "reduce_concat": [], "layout": "raw_weights"}
        return genotypes.from_dict(raw)
    try:
        genotype = genotypes.get(str(source))
    except KeyError as e:
        raise UserError(str(e.args[0]) if e.args else str(e)) from None
    if genotype.layout != "raw_weights":
        raise UserError(f"{source} is a '{genotype.layout}' genotype, not grid weights.")
    return genotype


def plot_grid(source: str | Path | Genotype, out: str | Path, path: Sequence[str] | None = None,
              title: str | None = None) -> Path:
    """Draws the grid's graph: op nodes shaded by their softmax weight, the chosen path in red.

    Args:
        source: raw grid weights (see ``grid_weights_for``).
        out: the output file (.svg, .pdf or .png).
        path: the path to highlight; the weights' longest path when None.
        title: a caption above the graph.
    """
    import graphviz

    from sharpdarts.nn import multichannel
    out, fmt = _format(out)
    weights = grid_weights_for(source)
    graph = multichannel.grid_graph(weights)
    chosen = list(path) if path is not None else multichannel.longest_path(graph)
    on_path = set(zip(chosen, chosen[1:]))
    dot = graphviz.Digraph(format=fmt, graph_attr={"rankdir": "TB", "fontsize": "10"},
                           node_attr={"shape": "box", "style": "filled", "fontsize": "8"},
                           edge_attr={"arrowsize": "0.4"})
    if title:
        dot.attr(label=title, labelloc="t")
    for node, attrs in graph.nodes(data=True):
        weight = attrs.get("weight")
        shade = 1.0 - 0.8 * min(float(weight) * 8.0, 1.0) if weight is not None else 1.0
        color = "#ff9999" if node in chosen else f"0.6 {1 - shade:.2f} 1.0"
        dot.node(node, node, fillcolor=color)
    for a, b in graph.edges():
        dot.edge(a, b, color="red" if (a, b) in on_path else "gray70",
                 penwidth="2.5" if (a, b) in on_path else "0.5")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_render(dot, fmt))
    return out
