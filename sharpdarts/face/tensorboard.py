"""TensorBoard event files in every run folder, written through ``torch.utils.tensorboard``.

Each logged epoch becomes, at that epoch as the step: every number of the record as a scalar
(learning rate, losses, accuracies, seconds, ...), the perplexity ``exp(loss)`` of every loss,
a search's architecture weights (``alphas_normal`` / ``alphas_reduce``) as a histogram and as
an image (edges down, ops across; mid-grey is the uniform weight 1/number of ops), and its
genotype as text. The events lie beside run.json, so ``tensorboard --logdir results/runs``
lists every run as ``EXPERIMENT/RUN_ID``, grouped by experiment.

A run records them through :class:`Recording`, which wraps the store's ``Run`` for the engine's
loop: its ``log_epoch`` (the loop's duck-typed hook) writes the metrics line, then the events.
``export`` writes the events of folders recorded before this existed, from metrics.jsonl.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sharpdarts.core import run_folder
from sharpdarts.errors import UserError
from sharpdarts.store import reader

ALPHAS = ("alphas_normal", "alphas_reduce")


def _writer(folder: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), flush_secs=30)


def write_record(writer, record: dict) -> None:
    """Writes one epoch record (a metrics.jsonl line) at step ``record['epoch']``."""
    import numpy as np

    step = int(record["epoch"])
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            continue
        writer.add_scalar(key, value, step)
        if key.endswith("_loss") and value < 50:  # exp overflows beyond; such a loss is noise
            writer.add_scalar(key[: -len("_loss")] + "_perplexity", math.exp(value), step)
    for key in ALPHAS:
        if record.get(key) is None:
            continue
        weights = np.asarray(record[key], dtype=np.float64)
        if weights.ndim != 2 or weights.size == 0:
            continue
        writer.add_histogram(key, weights.ravel(), step)
        # Mid-grey is 1/number of ops, black 0, white twice the uniform weight or more.
        uniform = 1.0 / weights.shape[1]
        image = np.clip(weights / (2 * uniform), 0.0, 1.0)
        writer.add_image(key, image, step, dataformats="HW")
    if record.get("genotype") is not None:
        text = json.dumps(record["genotype"], indent=1)
        writer.add_text("genotype", "    " + text.replace("\n", "\n    "), step)


class Recording:
    """A ``Run`` that also writes TensorBoard events when the loop logs an epoch.

    Everything else is the wrapped run's (``update``, ``write_text``, ``checkpoint_path``...).
    Use it as a context manager, so that the event file is closed.
    """

    def __init__(self, run):
        self._run = run
        self._writer = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def log_epoch(self, record: dict) -> None:
        self._run.log_epoch(record)
        if self._writer is None:
            self._writer = _writer(Path(self._run.path))
        write_record(self._writer, record)
        self._writer.flush()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            self._writer.close()


def has_events(folder: Path) -> bool:
    return bool(run_folder.event_files(folder))


def export(folder: str | Path, replace: bool = False) -> int:
    """Writes the events of a run folder from its metrics.jsonl; returns the epochs written.

    A folder that already has event files is left alone (0), unless ``replace``.

    Raises:
        UserError: not a run folder.
    """
    folder = run_folder.run_dir(folder)
    if not run_folder.has_run_json(folder):
        raise UserError(f"{folder} is not a run folder (it has no {run_folder.RUN_JSON}).")
    if has_events(folder):
        if not replace:
            return 0
        for old in run_folder.event_files(folder):
            old.unlink()
    records = reader.read_metrics(folder)
    if not records:
        return 0
    writer = _writer(folder)
    try:
        for record in records:
            write_record(writer, record)
    finally:
        writer.close()
    return len(records)


def cmd_export(args) -> int:
    """``sharpdarts export tensorboard [RUN...]``: events for older run folders."""
    from sharpdarts.store import store

    if args.runs:
        folders = [store.find_run(args.results, r).path for r in args.runs]
    else:
        folders = [f for f in store.iter_run_dirs(args.results) if run_folder.has_run_json(f)]
        if not folders:
            raise UserError(f"No run folders under {run_folder.runs_root(args.results)}.")
    for folder in folders:
        n = export(folder, replace=args.replace)
        print(
            f"{folder}: {n} epochs written"
            if n
            else f"{folder}: nothing to write (events already there, or no epoch logged)"
        )
    return 0
