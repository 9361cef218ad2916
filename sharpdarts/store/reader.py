"""The one reader of run folders, shared by the results tables, plots and the command line.

It reads what a run wrote (``run.json``, ``metrics.jsonl``) without taking any lock and
never writes: a table or a plot can look at a run that is still going.
"""
from __future__ import annotations

import json
from pathlib import Path

from sharpdarts.core import io
from sharpdarts.errors import UserError

RUN_JSON = "run.json"
METRICS = "metrics.jsonl"


def run_dir(path: str | Path) -> Path:
    """A run folder from a folder path or the path of its run.json."""
    path = Path(path)
    if path.name == RUN_JSON and path.is_file():
        return path.parent
    return path


def read_info(path: str | Path) -> dict:
    """Reads ``run.json`` of a run folder (``path`` is the folder or the file itself).

    Raises:
        UserError: The folder has no readable run.json.
    """
    folder = run_dir(path)
    file = folder / RUN_JSON
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{str(folder)!r} is not a run folder: it has no {RUN_JSON}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"Cannot read {file}: {e}.") from e
    if not isinstance(data, dict):
        raise UserError(f"{file} does not hold a JSON object.")
    return data


def read_metrics(path: str | Path) -> list[dict]:
    """The per-epoch records of ``metrics.jsonl`` in a run folder, sorted by epoch.

    A missing file is no epochs. Lines that are not JSON objects with an integer ``epoch``
    (e.g. a last line torn by a crash mid-append) are skipped; if an epoch appears twice the
    later record wins.
    """
    by_epoch: dict[int, dict] = {}
    for record in io.read_jsonl(run_dir(path) / METRICS):
        epoch = record.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            continue
        by_epoch[epoch] = record
    return [by_epoch[e] for e in sorted(by_epoch)]
