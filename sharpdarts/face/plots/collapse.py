"""Collapse of searches, overlaid: the Hessian's dominant eigenvalue, the skip connections of
the cell and the mean entropy of the edges' op weights per epoch (engine/collapse.py records
them; docs/collapse.md says how).

One color per run. Skip connections: the normal cell solid, the reduction cell dashed. A run
that DARTS-ES stopped gets a dotted vertical line at the epoch whose genotype it kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from sharpdarts.core import run_folder
from sharpdarts.errors import UserError
from sharpdarts.face.plots.common import output_format, save_figure
from sharpdarts.store import reader

PANELS = (
    ("dominant Hessian eigenvalue", (("hessian_eigenvalue", "-"),)),
    ("skip connections", (("skip_connections_normal", "-"), ("skip_connections_reduce", "--"))),
    ("mean op-weight entropy (nats)", (("op_entropy_mean", "-"),)),
)
METRICS = tuple(metric for _, metrics in PANELS for metric, _ in metrics)


def _series(records: list[dict], metric: str) -> tuple[list[int], list[float]]:
    """The epochs that recorded ``metric`` as a finite number, and its values."""
    epochs, values = [], []
    for r in records:
        v = r.get(metric)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            epochs.append(int(r["epoch"]))
            values.append(float(v))
    return epochs, values


def _label(info: dict, run_dir: str | Path) -> str:
    name = info.get("experiment") or run_folder.run_dir(run_dir).name
    return f"{name} seed {info['seed']}" if info.get("seed") is not None else str(name)


def make_collapse_figure(run_dirs: Sequence[str | Path], title: str | None = None) -> Figure:
    """The figure of :func:`plot_collapse`: three panels, one line per run and metric.

    Raises:
        UserError: No runs, a folder that is not a run folder, or no run with collapse metrics.
    """
    if not run_dirs:
        raise UserError("Give at least one run folder to plot.")
    runs = []
    for run_dir in run_dirs:
        info = reader.read_info(run_dir)
        runs.append((_label(info, run_dir), info, reader.read_metrics(run_dir, info)))
    if not any(_series(records, m)[0] for _, _, records in runs for m in METRICS):
        raise UserError(
            "None of the runs recorded collapse metrics (the eigenvalue, skip connections, "
            "op entropies): search runs of cell supernets record them per epoch."
        )
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    for r, (label, info, records) in enumerate(runs):
        color = f"C{r % 10}"
        for ax, (_, metrics) in zip(axes, PANELS):
            for metric, style in metrics:
                epochs, values = _series(records, metric)
                if not epochs:
                    continue
                cell = metric.rsplit("_", 1)[-1]
                text = f"{label} ({cell})" if cell in ("normal", "reduce") else label
                ax.plot(epochs, values, style, color=color, marker=".", label=text)
        kept = (info.get("final") or {}).get("early_stop_epoch")
        if kept is not None:
            for ax in axes:
                ax.axvline(info["final"]["genotype_epoch"], color=color, linestyle=":")
    for ax, (ylabel, _) in zip(axes, PANELS):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_collapse(
    run_dirs: Sequence[str | Path], out: str | Path, title: str | None = None
) -> Path:
    """Overlays the collapse metrics of search runs per epoch.

    Args:
        run_dirs: Run folders (``RESULTS/runs/<experiment>/<run_id>``) or their run.json paths.
        out: The output file (.svg, .pdf or .png).
        title: A figure title; None for none.

    Returns:
        ``out`` as a Path.

    Raises:
        UserError: An unsupported extension, a folder that is not a run folder, or no run
            with collapse metrics.
    """
    out, fmt = output_format(out)
    return save_figure(make_collapse_figure(run_dirs, title), out, fmt)
