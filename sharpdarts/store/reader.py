"""The one reader of run folders, shared by the run itself, the results tables and the plots.

It reads what a run wrote (``run.json``, ``metrics.jsonl``) without taking any lock and
never writes: a table or a plot can look at a run that is still going.

Two views of a run:

- *as recorded* (:func:`read_recorded_info`, :func:`scan_metrics`): the files exactly as
  written, for the writer (:class:`sharpdarts.store.run.Run`), which must never rewrite a
  record under new names;
- *in today's names* (:func:`read_info`, :func:`read_metrics`): what tables and plots read.

Today's names differ from the recorded ones for one kind of folder only. Before record format
2, training runs logged their test-set figures per epoch as ``valid_loss``, ``valid_acc`` and
``valid_acc_top5`` and chose ``best_epoch`` / ``best_valid_acc`` on that test data. Such a
folder reads with the per-epoch names ``test_*`` and the final ``best_test_epoch_legacy`` /
``best_test_acc_legacy``, so no table or plot calls a test-set figure a validation one. Search
runs keep ``valid_*``: their held-out half really is validation data. This mapping lives here
only, so results and plots agree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sharpdarts.core import io, run_folder
from sharpdarts.errors import UserError

__all__ = [
    "RECORD_FORMAT",
    "current_epoch_names",
    "current_names",
    "is_legacy_training",
    "read_info",
    "read_metrics",
    "read_recorded_info",
    "scan_metrics",
]

# The record format that start_run writes into run.json (``record_format``). A run.json
# without it was written before format 2, when training logged test figures as ``valid_*``.
RECORD_FORMAT = 2
LEGACY_TRAIN_EPOCH_NAMES = {
    "valid_loss": "test_loss",
    "valid_acc": "test_acc",
    "valid_acc_top5": "test_acc_top5",
}
LEGACY_TRAIN_FINAL_NAMES = {
    "best_valid_acc": "best_test_acc_legacy",
    "best_epoch": "best_test_epoch_legacy",
}


# --------------------------------------------------------------------------------------------
# run.json


def read_recorded_info(path: str | os.PathLike) -> dict:
    """``run.json`` of a run folder exactly as written (``path``: the folder or the file).

    Raises:
        UserError: The folder has no readable run.json, or it does not hold a JSON object.
    """
    folder = run_folder.run_dir(path)
    file = run_folder.run_json_path(folder)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{str(folder)!r} is not a run folder: it has no {file.name}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"Cannot read {file}: {e}.") from e
    if not isinstance(data, dict):
        raise UserError(f"{file} does not hold a JSON object.")
    return data


def read_info(path: str | os.PathLike) -> dict:
    """``run.json`` of a run folder in today's field names (see the module docstring).

    Raises:
        UserError: The folder has no readable run.json.
    """
    return current_names(read_recorded_info(path))


def is_legacy_training(info: dict) -> bool:
    """Whether ``info`` is a training run written before record format 2."""
    try:
        record_format = int(info.get("record_format") or 1)
    except (TypeError, ValueError):
        record_format = 1
    return info.get("kind") == "train" and record_format < RECORD_FORMAT


def _renamed(record: dict, names: dict[str, str]) -> dict:
    out = dict(record)
    for old, new in names.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)  # a name already in today's form wins
    return out


def current_names(info: dict) -> dict:
    """A copy of ``info`` whose ``final`` uses today's names (legacy training runs only)."""
    if not is_legacy_training(info) or not isinstance(info.get("final"), dict):
        return dict(info)
    return {**info, "final": _renamed(info["final"], LEGACY_TRAIN_FINAL_NAMES)}


def current_epoch_names(record: dict, info: dict | None) -> dict:
    """One epoch record in today's names, given its run's (recorded or current) ``info``."""
    if info is not None and is_legacy_training(info):
        return _renamed(record, LEGACY_TRAIN_EPOCH_NAMES)
    return record


# --------------------------------------------------------------------------------------------
# metrics.jsonl


def _ends_with_newline(file: Path) -> bool:
    """Whether a non-empty file's last byte is a newline (a missing file counts as ended)."""
    try:
        with open(file, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except FileNotFoundError:
        return True


def _has_epoch(record: dict) -> bool:
    epoch = record.get("epoch")
    return isinstance(epoch, int) and not isinstance(epoch, bool)


def scan_metrics(path: str | os.PathLike) -> tuple[list[dict], bool]:
    """The epoch records of ``metrics.jsonl`` as written, in file order, and whether the file
    is intact.

    A file is not intact when its last line is torn (a crash mid-append: no final newline)
    or a line is not a JSON object with an integer ``epoch``; such lines are left out. The
    writer rewrites a file that is not intact before it appends, since a line appended after
    a torn one would be glued to it. A missing file is intact and empty.
    """
    file = run_folder.metrics_path(run_folder.run_dir(path))
    intact = _ends_with_newline(file)
    try:
        records = io.read_jsonl(file, strict=True)
    except ValueError:  # an undecodable line: read what can be read
        records, intact = io.read_jsonl(file), False
    kept = [r for r in records if _has_epoch(r)]
    return kept, intact and len(kept) == len(records)


def read_metrics(path: str | os.PathLike, info: dict | None = None) -> list[dict]:
    """The per-epoch records of a run folder in today's names, sorted by epoch.

    Args:
        path: the run folder (or its run.json).
        info: the run's run.json, when the caller has read it already (saves a read).

    A missing file is no epochs. Lines that are not JSON objects with an integer ``epoch``
    (e.g. a last line torn by a crash mid-append) are skipped; if an epoch appears twice the
    later record wins. A folder without a readable run.json is read without renaming.
    """
    if info is None:
        try:
            info = read_recorded_info(path)
        except UserError:
            info = None
    by_epoch = {record["epoch"]: record for record in scan_metrics(path)[0]}
    return [current_epoch_names(by_epoch[e], info) for e in sorted(by_epoch)]
