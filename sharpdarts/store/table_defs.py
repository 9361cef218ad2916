"""Where tables come from: their definitions and the paper's reported values.

Definitions are data, in ``experiments/tables.json``, found through :mod:`sharpdarts.resources`
(the user's project root first, then the shipped copy), so a new table is a new entry there.
The paper's numbers are package data (``sharpdarts/reference/paper_tables.csv``), read with
:mod:`importlib.resources` so that any install finds them.

Table definitions, one object per table name:

- ``title``: a caption.
- ``rows``: where the rows come from, one of
  ``{"paper_table": T, "extra_experiments": PREFIX}`` (the rows of the package's
  ``reference/paper_tables.csv`` whose ``table`` is T, in the file's order; rows
  with an ``experiment`` are matched to the runs of that experiment, the others are reference
  rows with no reproduced values; then, optionally, one row for every other experiment starting
  with PREFIX that has completed runs and is no paper row's experiment in any table, so that
  e.g. cifar10/pc_darts stays in darts_family), ``{"experiment_prefix": PREFIX}`` (one row per
  experiment in the store starting with PREFIX) or ``{"experiments": [...]}`` (these rows);
  with ``"require": [METRIC, ...]``, only runs that recorded every METRIC count.
- ``labels``: the columns that describe a row: ``name`` (DataFrame column), ``label`` (header),
  ``paper`` (the paper_tables.csv column it is read from, for paper rows).
- ``columns``: the measured columns: ``name`` (DataFrame stem), ``label``, ``metric`` (a
  ``load_runs`` column: every key of run.json ``final``, see docs/CONVENTIONS.md, plus
  ``gpu_days``, ``search_gpu_days``, ``wall_seconds``, ``run_ref``...), ``agg`` (``mean_std``:
  shown as mean ± std; ``mean``: shown as the mean; ``best_run``: the value of the run with the
  largest ``by``), ``digits``, and optionally ``paper``/``paper_std`` (paper_tables.csv columns
  shown beside ours), ``display: false`` (kept in the DataFrame, not printed), ``ours: false``
  (only the paper's value is printed: a figure we do not measure) and ``runs_of`` (a paper-CSV
  column naming another experiment, e.g. ``search_experiment``: the column aggregates that
  experiment's completed runs, such as a search's ``gpu_days`` beside its cell's training;
  with ``require: true``, only those runs that recorded the metric count, as with ``rows``).
- ``paper_match`` (optional): experiment -> ``{"table", "architecture"}``, the paper row whose
  values sit beside an experiment's row in tables not built from paper rows.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sharpdarts import resources
from sharpdarts.errors import UserError
from sharpdarts.registry import unknown_name

if TYPE_CHECKING:  # pandas loads only where a table is built: `sharpdarts list` needs none
    import pandas as pd

__all__ = [
    "computed_costs",
    "definition",
    "load_table_defs",
    "paper_rows",
    "paper_tables",
    "table_names",
    "tables_json_path",
]

TABLES_JSON = "experiments/tables.json"  # relative to a resources root
PAPER_TABLES = "reference/paper_tables.csv"  # package data, relative to the package
COMPUTED_COSTS = "reference/computed_costs.json"  # package data: see face/costs.py
# The DARTS paper's four tables as printed (Liu et al. 2019), with the experiment of each row
# we reproduce; read with the sharpDARTS tables as one frame (the ``table`` column tells them
# apart).
DARTS_TABLES = "reference/darts_tables.csv"
# The DARTS family's published figures (PC-DARTS, P-DARTS, GDAS, ...), each row with its source
# and ``figures``: 'own' (the method's own paper or repository), 'other' (read in a later
# paper's comparison table) or 'mixed'; ``search_experiment`` names the search whose runs give
# the row's search cost (see the ``runs_of`` column key), ``nb201_experiment`` the NAS-Bench-201
# search whose cells' benchmark accuracies stand beside the method's published one
# (``nb201_source`` says where that one is printed).
FAMILY_TABLE = "reference/darts_family.csv"
# The NAS-Bench-201 table's published rows (Dong & Yang 2020, and later papers' rows on its
# space), each with its source; docs/nb201_benchmark.md.
NB201_TABLES = "reference/nb201_tables.csv"
# Every table's rows, read as one frame in this order (row i of paper_rows() is row i there).
# The family's rows come before the DARTS paper's so that an experiment in both (darts_v1,
# darts_v2) is listed with the DARTS paper's row, where it first stood.
PAPER_SOURCES = (PAPER_TABLES, FAMILY_TABLE, DARTS_TABLES, NB201_TABLES)
# The sources whose costs and sizes are kept as printed text ('1e4 CPU days', '~5').
_TEXT_SOURCES = (FAMILY_TABLE, DARTS_TABLES)


def tables_json_path() -> Path:
    """``experiments/tables.json`` of the first resources root that has one.

    Raises:
        UserError: no root has one (neither a project root nor the installed package).
    """
    path = resources.find(TABLES_JSON)
    if path is None:
        roots = ", ".join(str(r) for r in resources.roots()) or "(none)"
        raise UserError(
            f"no {TABLES_JSON} found: looked in {roots}. Set "
            f"${resources.PROJECT_ENV_VAR} to a project folder that has one."
        )
    return path


def load_table_defs(path: str | os.PathLike | None = None) -> dict:
    """The table definitions (``experiments/tables.json`` by default), without ``_`` keys."""
    path = Path(path) if path is not None else tables_json_path()
    return _load_defs_cached(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load_defs_cached(path: str, _mtime: int) -> dict:
    defs = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {}
    for name, spec in defs.items():
        if name.startswith("_"):
            continue
        for key in ("rows", "columns"):
            if key not in spec:
                raise ValueError(f"table {name!r} in {path} has no {key!r}")
        out[name] = spec
    return out


def table_names(path: str | os.PathLike | None = None) -> list[str]:
    """The names of the defined tables, in file order."""
    return list(load_table_defs(path))


def paper_rows() -> list[dict[str, str]]:
    """The rows of ``reference/paper_tables.csv`` as the paper printed them: every cell is the
    file's text ('24.0', '0.570'; '' when empty), in file order (row i is the DataFrame's
    index i in :func:`paper_tables`)."""
    return [dict(row) for row in _paper_rows_cached()]


@lru_cache(maxsize=1)
def _paper_rows_cached() -> tuple[dict[str, str], ...]:
    rows: list[dict[str, str]] = []
    for name in PAPER_SOURCES:  # the order of paper_tables()'s rows
        with (
            importlib.resources.files("sharpdarts")
            .joinpath(name)
            .open("r", encoding="utf-8", newline="") as f
        ):
            rows += list(csv.DictReader(f))
    return tuple(rows)


def computed_costs() -> dict[str, dict]:
    """``{experiment: {"params_m", "multiply_adds_b", ...}}``: the sizes of each experiment's
    network computed from its architecture (``reference/computed_costs.json``, written by
    ``python -m sharpdarts.face.costs``); empty when the file is absent."""
    source = importlib.resources.files("sharpdarts").joinpath(COMPUTED_COSTS)
    if not source.is_file():
        return {}
    return json.loads(source.read_text(encoding="utf-8")).get("experiments", {})


def paper_tables() -> pd.DataFrame:
    """The paper's reported numbers (the package data ``reference/paper_tables.csv``)."""
    return _paper_tables_cached().copy()


@lru_cache(maxsize=1)
def _paper_tables_cached() -> pd.DataFrame:
    import pandas as pd

    # Package data, read through importlib.resources so that any install (a wheel, a zip)
    # finds it.
    dtypes = {"experiment": object, "autoaugment": object, "ssc": object, "grad_order": object}
    # The DARTS tables print some costs and sizes as text ('1e4 CPU days', '~5'): kept as
    # printed there; the sharpDARTS tables' columns stay numeric.
    text = {"search_gpu_days": object, "params_m": object}
    frames = []
    for name in PAPER_SOURCES:
        extra = text if name in _TEXT_SOURCES else {}
        with (
            importlib.resources.files("sharpdarts").joinpath(name).open("r", encoding="utf-8") as f
        ):
            frames.append(pd.read_csv(f, dtype={**dtypes, **extra}))
    return pd.concat(frames, ignore_index=True)


def definition(name: str, defs_path: str | os.PathLike | None = None) -> dict:
    """The definition of table ``name``.

    Raises:
        UserError: no such table (the message suggests the closest names).
    """
    defs = load_table_defs(defs_path)
    if name not in defs:
        where = f"in {defs_path}" if defs_path is not None else f"in {tables_json_path()}"
        raise UserError(str(unknown_name("table", name, defs, where=where)))
    return defs[name]
