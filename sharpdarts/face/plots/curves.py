"""Curves over epochs: learning-rate schedules and the learning curves of runs.

- ``plot_lr``: cosine power annealing for one or more exponent orders against plain cosine
  annealing and exponential decay (``lr_curves`` gives the values, ``make_lr_figure`` the
  matplotlib Figure).
- ``plot_curves``: accuracy, loss and learning rate per epoch of one or more runs; runs of
  the same experiment are drawn as their mean with a ± one standard deviation band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sharpdarts.core import run_folder
from sharpdarts.core.schedules import cosine_annealing, cosine_power_annealing, exponential_decay
from sharpdarts.errors import UserError
from sharpdarts.face.plots.common import output_format, save_figure
from sharpdarts.store import reader


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
                epochs=epochs,
                max_lr=max_lr,
                min_lr=min_lr,
                exponent_order=order,
                warmup_epochs=warmup_epochs,
            )
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
    styles = {
        COSINE_LABEL: dict(color="darkorange", linestyle="--"),
        EXPONENTIAL_LABEL: dict(color="gray", linestyle=":"),
    }
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
    ax.set_title(
        title or f"Cosine power annealing, {max_lr:g} to {min_lr:g} over {int(epochs)} epochs"
    )
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
    out, fmt = output_format(out)
    return save_figure(
        make_lr_figure(epochs, max_lr, min_lr, exponent_orders, warmup_epochs, log, title), out, fmt
    )


# ---------------------------------------------------------------------------------------------
# Learning curves


CURVE_PANELS = (
    ("accuracy (%)", ("train_acc", "valid_acc", "test_acc")),
    ("loss", ("train_loss", "valid_loss", "test_loss")),
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
        key = str(key) if key is not None else run_folder.run_dir(run_dir).name
        groups.setdefault(key, []).append(reader.read_metrics(run_dir))
    if not any(records for runs in groups.values() for records in runs):
        raise UserError("None of the runs has logged an epoch yet; there is nothing to plot.")
    return groups


def _mean_std(
    runs: list[list[dict]], metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
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
    std = np.array(
        [np.std(values[int(e)], ddof=1) if len(values[int(e)]) > 1 else 0.0 for e in epochs]
    )
    return epochs, mean, std, n_runs


def make_curves_figure(
    run_dirs: Sequence[str | Path], group_by: str = "experiment", title: str | None = None
) -> Figure:
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
                kind = {"train": "train", "valid": "valid", "test": "test"}.get(split, "")
                label = f"{name} {kind} (n={n})".replace("  ", " ") if kind else f"{name} (n={n})"
                ax.plot(
                    epochs,
                    mean,
                    color=color,
                    label=label,
                    linestyle="--" if kind == "train" else "-",
                    marker="." if len(epochs) < 30 else None,
                )
                if n > 1:
                    ax.fill_between(
                        epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0
                    )
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    group_by: str = "experiment",
    title: str | None = None,
) -> Path:
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
    out, fmt = output_format(out)
    return save_figure(make_curves_figure(run_dirs, group_by, title), out, fmt)
