"""Every run folder of a results store -> one pandas DataFrame (and one of epochs).

``load_runs`` reads every ``run.json`` under ``RESULTS/runs`` into one DataFrame (one row per
run folder); ``load_metrics`` reads every ``metrics.jsonl`` into one row per logged epoch.
Both read through :mod:`sharpdarts.store.reader`, so old folders show today's field names
(a training run's test-set figures are ``test_*``, never ``valid_*``).

The tables are built from the DataFrame in :mod:`sharpdarts.store.tables`; its public names
are re-exported here (``results.build_table``, ``results.format_table``, ...), where the
command line and the tests have always found them.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from sharpdarts.core import run_folder
from sharpdarts.errors import UserError
from sharpdarts.store import reader
from sharpdarts.store.store import iter_run_dirs

__all__ = ["RUN_COLUMNS", "as_number", "load_metrics", "load_runs"]

RUN_COLUMNS = [
    "experiment",
    "run_id",
    "path",
    "seed",
    "kind",
    "status",
    "reason",
    "started",
    "ended",
    "wall_seconds",
    "device",
    "device_count",
    "host",
    "git_commit",
    "git_branch",
    "dirty",
    "config_hash",
    "resumes",
    "last_epoch",
    "genotype_name",
    "lineage_run_id",
    "smoke",
    "gin_params",
    "gpu_days",
    "search_gpu_days",
    "run_ref",
]


def _read_infos(results_dir: Path) -> list[tuple[Path, dict]]:
    """(folder, run.json in today's names) of every readable run folder; one warning counts
    the unreadable ones."""
    out, skipped = [], 0
    for folder in iter_run_dirs(results_dir):
        try:
            out.append((folder, reader.read_info(folder)))
        except UserError:
            skipped += 1
    if skipped:
        warnings.warn(
            f"skipped {skipped} unreadable run folder{'s' if skipped != 1 else ''} "
            f"under {run_folder.runs_root(results_dir)} (missing or corrupt run.json)",
            stacklevel=3,
        )
    return out


def _lineage(info: dict) -> tuple[str | None, str | None]:
    """(genotype name, lineage run id) of a training run, however the caller recorded them."""
    name, run_id = info.get("genotype_name"), None
    genotype = info.get("genotype")
    lineage = info.get("genotype_lineage") or info.get("lineage")
    if isinstance(genotype, str):
        name = name or genotype
    elif isinstance(genotype, dict):
        name = name or genotype.get("name")
        lineage = lineage or genotype.get("lineage")
    if isinstance(lineage, dict):
        run_id = lineage.get("run_id") or lineage.get("run")
        name = name or lineage.get("name")
    elif isinstance(lineage, str):
        run_id = lineage
    if run_id is None and isinstance(name, str) and name.startswith("run:"):
        run_id = name[4:]
    if isinstance(run_id, str) and run_id.startswith("run:"):
        run_id = run_id[4:]
    return (name if isinstance(name, str) else None), run_id


def as_number(value: Any) -> float:
    """``value`` as a float; NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _run_row(results_dir: Path, folder: Path, info: dict) -> dict:
    """One load_runs row: the RUN_COLUMNS, then the keys of ``final``."""
    git = info.get("git") if isinstance(info.get("git"), dict) else {}
    name, lineage_id = _lineage(info)
    wall = as_number(info.get("wall_seconds"))
    count = as_number(info.get("device_count"))
    devices = max(count, 1.0) if not math.isnan(count) else 1.0
    run_id = info.get("run_id") or folder.name
    row = {
        "experiment": info.get("experiment")
        or run_folder.relative_name(results_dir, folder.parent),
        "run_id": run_id,
        "path": str(folder),
        "seed": info.get("seed"),
        "kind": info.get("kind"),
        "status": info.get("status"),
        "reason": info.get("reason"),
        "started": info.get("started"),
        "ended": info.get("ended"),
        "wall_seconds": wall,
        "device": info.get("device"),
        "device_count": count,
        "host": info.get("host"),
        "git_commit": git.get("commit"),
        "git_branch": git.get("branch"),
        "dirty": git.get("dirty"),
        "config_hash": info.get("config_hash"),
        "resumes": info.get("resumes"),
        "last_epoch": info.get("last_epoch"),
        "genotype_name": name,
        "lineage_run_id": lineage_id,
        "smoke": bool(info.get("smoke")),
        "gin_params": info.get("gin_params"),
        "gpu_days": wall * devices / 86400.0,
        "search_gpu_days": math.nan,
        "run_ref": f"run:{run_id}",
    }
    if isinstance(info.get("random_search"), dict):
        row["search_gpu_days"] = _sampling_seconds(folder, info) * devices / 86400.0
    final = info.get("final")
    if isinstance(final, dict):
        for key, value in final.items():
            row[f"final_{key}" if key in RUN_COLUMNS else key] = value
    return row


def _sampling_seconds(folder: Path, info: dict) -> float:
    """A random search's own search cost: the seconds of its sampled cells' training epochs
    (phases ``sample_NN``); the winner's training is the row's evaluation, as a searched
    cell's training is a search row's."""
    seconds = [
        as_number(r.get("seconds"))
        for r in reader.read_metrics(folder, info)
        if str(r.get("phase", "")).startswith("sample_")
    ]
    return math.fsum(v for v in seconds if not math.isnan(v))


def load_runs(results_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per run folder under ``results_dir/runs``.

    Columns: ``RUN_COLUMNS`` (experiment, run_id, path, seed, kind, status, started, ended,
    wall_seconds, device, device_count, git_commit, dirty, config_hash, genotype_name,
    lineage_run_id, ...), then every key of run.json ``final`` in today's names (prefixed
    ``final_`` if it clashes with one of those). An old training run's best epoch, chosen on
    test data, shows as ``best_test_acc_legacy`` / ``best_test_epoch_legacy``.

    ``gpu_days`` is device-days: ``wall_seconds * max(device_count, 1) / 86400``, so a CPU run
    (device_count 0) counts as one device. ``device_count`` is what the run recorded (the
    visible CUDA devices, unless the caller recorded the number it used).
    ``search_gpu_days`` of a training run is the ``gpu_days`` of the search run named by its
    genotype lineage, when that run is in the same store; a random search's is the
    device-days of its sampled cells' training epochs. ``run_ref`` is ``run:<run_id>``.

    Folders whose run.json is missing or not valid JSON are skipped with one warning that
    counts them.
    """
    results_dir = Path(results_dir)
    df = pd.DataFrame(
        [_run_row(results_dir, folder, info) for folder, info in _read_infos(results_dir)]
    )
    for column in RUN_COLUMNS:
        if column not in df:
            df[column] = pd.Series(dtype=object)
    if len(df):
        cost = dict(zip(df["run_id"], df["gpu_days"]))
        # A training's search cost is its lineage's; a random search carries its own.
        df["search_gpu_days"] = [
            cost.get(rid, own) if isinstance(rid, str) else own
            for rid, own in zip(df["lineage_run_id"], df["search_gpu_days"])
        ]
        df["search_gpu_days"] = df["search_gpu_days"].astype(float)
    for column in ("started", "ended"):
        df[column] = pd.to_datetime(df[column], utc=True, errors="coerce", format="ISO8601")
    for column in ("wall_seconds", "device_count", "gpu_days", "search_gpu_days"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    extra = [c for c in df.columns if c not in RUN_COLUMNS]
    return df[RUN_COLUMNS + extra].reset_index(drop=True)


def load_metrics(results_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per logged epoch per run: run_id, experiment, seed, kind, then the record's
    fields in today's names (epoch, lr, train_loss, ...; ``test_*`` for a training run's
    test-set figures). Torn or corrupt lines are left out; unreadable run folders are
    skipped with one warning."""
    rows = []
    for folder, info in _read_infos(Path(results_dir)):
        base = {
            "run_id": info.get("run_id") or folder.name,
            "experiment": info.get("experiment"),
            "seed": info.get("seed"),
            "kind": info.get("kind"),
        }
        for record in reader.read_metrics(folder, info):
            rows.append({**base, **{k: v for k, v in record.items() if k not in base}})
    df = pd.DataFrame(rows)
    for column in ("run_id", "experiment", "seed", "kind", "epoch"):
        if column not in df:
            df[column] = pd.Series(dtype=object)
    return df
