"""A search run's architecture weights (alphas) as heatmaps.

``plot_alphas`` draws the softmax weights (edges x ops) of the normal and reduction cells at
the last logged epoch, above a grid of small heatmaps over the logged epochs (every k-th
epoch when there are many, always ending with the last).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sharpdarts.core import genotype_types, run_folder
from sharpdarts.errors import UserError
from sharpdarts.face.plots.common import CELL_TITLES, CELLS, output_format, save_figure
from sharpdarts.store import reader


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
            names = genotype_types.primitives(given)
        except (KeyError, TypeError) as e:
            raise UserError(f"run.json 'primitives' is not usable: {e}") from e
        if len(names) != n_ops:
            raise UserError(
                f"run.json lists {len(names)} primitives but the logged alphas have {n_ops} ops."
            )
        return names
    matches = [list(ops) for ops in genotype_types.PRIMITIVE_SETS.values() if len(ops) == n_ops]
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
            raise UserError(
                f"Epoch {record['epoch']} of {run_dir} has malformed alphas: {e}"
            ) from e
        if any(a.ndim != 2 for a in arrays.values()):
            raise UserError(
                f"Epoch {record['epoch']} of {run_dir} has alphas that are not "
                "(edges x ops) tables."
            )
        epochs.append(int(record["epoch"]))
        for c in CELLS:
            history[c].append(arrays[c])
    if not epochs:
        raise UserError(
            f"The run in {run_folder.run_dir(run_dir)} has logged no architecture weights "
            "(alphas_normal / alphas_reduce); only search runs do."
        )
    return info, epochs, history


def _grid_indices(n: int, max_grid: int) -> list[int]:
    """Every k-th of n epoch indices, counted back from the last, at most max_grid of them."""
    k = max(1, math.ceil(n / max(1, max_grid)))
    return list(range(n - 1, -1, -k))[::-1]


# A diverging map: white is the uniform weight, red above it, blue below.
ALPHAS_CMAP = "RdBu_r"


def alphas_norm(arrays, n_ops: int):
    """A colour scale centred on the uniform weight 1/n_ops, symmetric about it.

    Searches move the softmax weights only a little away from uniform early on; a scale from 0
    to the maximum shows those departures as one colour. Centred and symmetric (the largest
    departure either way sets both ends), equal departures look equally strong. The low end
    stops at 0, as no softmax weight is below it: once one weight passes 2/n_ops, the
    symmetric scale would spend much of its blue half on impossible negative weights.
    """
    from matplotlib.colors import TwoSlopeNorm

    centre = 1.0 / n_ops
    spread = max(float(np.max(np.abs(np.asarray(a) - centre))) for a in arrays)
    spread = max(spread, 1e-6)
    return TwoSlopeNorm(vcenter=centre, vmin=max(0.0, centre - spread), vmax=centre + spread)


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
    norm = alphas_norm([history[c][i] for c in CELLS for i in picked] + list(last.values()), n_ops)

    fig = Figure(
        figsize=(max(10.0, 1.25 * len(picked) + 1.5), 7.0 + 0.2 * n_edges), layout="constrained"
    )
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.2, 1.0])
    top_axes = top.subplots(1, 2)
    for ax, cell in zip(top_axes, CELLS):
        data = last[cell]
        image = ax.imshow(data, cmap=ALPHAS_CMAP, norm=norm, aspect="auto")
        ax.set_xticks(
            range(data.shape[1]), ops[: data.shape[1]], rotation=60, ha="right", fontsize="small"
        )
        ax.set_yticks(range(data.shape[0]), rows[cell], fontsize="small")
        ax.set_ylabel("edge (input state -> node state)")
        ax.set_title(f"{CELL_TITLES[cell]}, epoch {epochs[-1]}")
        if data.size <= 400:
            for (r, c), v in np.ndenumerate(data):
                ax.text(
                    c,
                    r,
                    f"{v:.3f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    # Dark text on the pale middle of the map, white on its ends.
                    color="black" if abs(norm(v) - 0.5) < 0.3 else "white",
                )
    bar = top.colorbar(
        image,
        ax=list(top_axes),
        shrink=0.9,
        label=f"softmax weight (centre: uniform 1/{n_ops} = {1 / n_ops:.3f})",
    )
    bar.ax.axhline(1.0 / n_ops, color="black", linewidth=0.8)
    name = info.get("experiment", run_folder.run_dir(run_dir).name)
    top.suptitle(title or f"Architecture weights of {name}")

    grid = bottom.subplots(2, len(picked), squeeze=False)
    for col, i in enumerate(picked):
        for row, cell in enumerate(CELLS):
            ax = grid[row][col]
            ax.imshow(history[cell][i], cmap=ALPHAS_CMAP, norm=norm, aspect="auto")
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


def plot_alphas(
    run_dir: str | Path, out: str | Path, max_grid: int = 10, title: str | None = None
) -> Path:
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
    out, fmt = output_format(out)
    return save_figure(make_alphas_figure(run_dir, max_grid, title), out, fmt)
