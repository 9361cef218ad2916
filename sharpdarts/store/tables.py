"""The paper's tables, built from the DataFrame of :func:`sharpdarts.store.results.load_runs`.

``build_table`` aggregates the runs into a table defined as data in ``experiments/tables.json``
(see :mod:`sharpdarts.store.table_defs` for the format), with the paper's values beside ours;
``format_table`` prints it as markdown, LaTeX (booktabs) or CSV.

The DataFrame of a table keeps numbers numeric: for a column named ``X`` it has ``X_mean``,
``X_std`` (sample std, ddof=1; NaN with one seed), ``paper_X`` and ``paper_X_std``; ``seeds``
(distinct seeds aggregated), ``reference`` (True for rows of other methods), ``config_hash``,
``runs_left_out`` and ``running`` (runs still running: not aggregated; markdown and LaTeX
name them under the table). ``format_table`` turns them into "1.98 ± 0.07".

Which runs a row aggregates: completed runs of the row's experiment, except smoke runs
(run.json ``smoke`` true). When those runs have more than one config hash (e.g. a try with
``--gin_param EPOCHS=5``), the row uses one config: runs without ``gin_params`` overrides
first, then the config with the most seeds, then the most recently ended; the others are
counted in ``runs_left_out`` and named in a warning. With several completed runs of one seed
and config, the latest counts.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import pandas as pd

from sharpdarts.core import io
from sharpdarts.errors import UserError
from sharpdarts.store.results import RUN_COLUMNS, as_number
from sharpdarts.store.table_defs import computed_costs, definition, paper_rows, paper_tables

__all__ = ["FORMATS", "build_table", "format_table"]

FORMATS = ("markdown", "latex", "csv")
PM = " ± "


# --------------------------------------------------------------------------------------------
# Aggregation


def _select(runs: pd.DataFrame, experiment: str) -> tuple[pd.DataFrame, int]:
    """The completed runs that a row of ``experiment`` aggregates, and how many were left out."""
    done = runs[(runs["experiment"] == experiment) & (runs["status"] == "completed")]
    done = done[~done["smoke"].fillna(False).astype(bool)]
    if done.empty:
        return done, 0
    hashes = done["config_hash"].fillna("")
    if hashes.nunique() > 1:

        def score(group: pd.DataFrame) -> tuple:
            plain = all(_no_overrides(p) for p in group["gin_params"])
            ended = pd.to_datetime(group["ended"], utc=True, errors="coerce").max()
            return (
                plain,
                group["seed"].nunique(),
                ended.timestamp() if pd.notna(ended) else -math.inf,
            )

        groups = {h: done[hashes == h] for h in hashes.unique()}
        best = max(groups, key=lambda h: score(groups[h]))
        chosen = groups[best]
        left_out = len(done) - len(chosen)
        warnings.warn(
            f"{experiment}: {len(groups)} configs have completed runs; the table uses config "
            f"{best or '(none)'} ({len(chosen)} runs) and leaves {left_out} runs out",
            stacklevel=3,
        )
        done = chosen
    else:
        left_out = 0
    # One run per seed: the latest (key duplicates only arise from merged stores).
    done = done.sort_values("ended", na_position="first").drop_duplicates("seed", keep="last")
    return done, left_out


def _no_overrides(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return True
    return not value


def _aggregate(spec: dict, runs: pd.DataFrame) -> dict:
    out: dict[str, Any] = {}
    for col in spec["columns"]:
        name, metric, agg = col["name"], col.get("metric", col["name"]), col.get("agg", "mean_std")
        if agg == "best_run":
            value = None
            by = col.get("by")
            if not runs.empty and metric in runs:
                pick = runs
                if by and by in runs:
                    scores = pd.to_numeric(runs[by], errors="coerce")
                    if scores.notna().any():
                        pick = runs.loc[[scores.idxmax()]]
                value = pick.iloc[-1][metric]
            out[name] = value
            continue
        values = (
            pd.to_numeric(runs[metric], errors="coerce").dropna()
            if metric in runs
            else pd.Series(dtype=float)
        )
        out[f"{name}_mean"] = float(values.mean()) if len(values) else math.nan
        out[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        out[f"{name}_n"] = int(len(values))
    out["seeds"] = int(runs["seed"].nunique()) if not runs.empty else 0
    return out


def _empty_aggregate(spec: dict) -> dict:
    return _aggregate(spec, pd.DataFrame(columns=["seed"]))


def _paper_values(
    spec: dict, paper_row: pd.Series | None, paper_text: dict[str, str] | None = None
) -> dict:
    """``paper_X`` / ``paper_X_std`` as numbers, and ``paper_X_text`` as the paper printed it
    (the CSV's own text, e.g. '24.0' or '0.570 ± 0.05'; '' when the paper gives none)."""
    out = {}
    for col in spec["columns"]:
        if "paper" not in col:
            continue
        name = col["name"]
        value = paper_row.get(col["paper"]) if paper_row is not None else math.nan
        out[f"paper_{name}"] = as_number(value)
        text = (paper_text or {}).get(col["paper"], "").strip()
        if "paper_std" in col:
            std = paper_row.get(col["paper_std"]) if paper_row is not None else math.nan
            out[f"paper_{name}_std"] = as_number(std)
            std_text = (paper_text or {}).get(col["paper_std"], "").strip()
            if text and std_text:
                text += PM + std_text
        out[f"paper_{name}_text"] = text
    return out


def _computed_values(spec: dict, experiment: str | None, row: dict) -> dict:
    """``X_computed``: for a column with no run behind it, the figure computed from the
    experiment's architecture (``reference/computed_costs.json``), e.g. params and
    multiply-adds; NaN otherwise."""
    costs = computed_costs().get(experiment or "", {})
    out = {}
    for col in spec["columns"]:
        if col.get("agg", "mean_std") == "best_run":
            continue
        name, metric = col["name"], col.get("metric", col["name"])
        value = costs.get(metric) if not row.get(f"{name}_n") else None
        out[f"{name}_computed"] = as_number(value)
    return out


def _label_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def build_table(
    name: str, runs_df: pd.DataFrame, *, defs_path: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Aggregate the completed runs of ``runs_df`` (from ``load_runs``) into table ``name``.

    Returns a DataFrame with the label columns, ``reference``, ``seeds``, ``X_mean``/``X_std``
    (and ``X_n``, the runs that reported X) for every measured column ``X``, ``paper_X``/
    ``paper_X_std`` where the paper has a value, ``config_hash`` and ``runs_left_out``.
    ``format_table`` prints it; its definition travels in ``df.attrs['table']``.

    Raises:
        UserError: ``name`` is not a defined table (the message lists the available ones).
    """
    spec = definition(name, defs_path)
    runs = runs_df if runs_df is not None else pd.DataFrame()
    for column in RUN_COLUMNS:
        if column not in runs:
            runs = runs.assign(**{column: pd.Series(dtype=object)})
    rows_spec = spec["rows"]
    # A run without the table's figure has no place in it (e.g. a NAS-Bench-201 search run that
    # looked up no benchmark accuracy).
    runs = _recorded(runs, rows_spec.get("require") or [])
    labels = spec.get("labels") or [{"name": "experiment", "label": "Experiment"}]
    rows: list[dict] = []

    texts = paper_rows()  # the paper's values as printed; row i is paper's index i

    def add_row(
        experiment: str | None, paper_row: pd.Series | None, label_values: dict, reference: bool
    ) -> None:
        row = {lab["name"]: _label_value(label_values.get(lab["name"])) for lab in labels}
        row["experiment"] = experiment
        row["reference"] = reference
        if experiment:
            chosen, left_out = _select(runs, experiment)
            row.update(_aggregate(spec, chosen))
            hashes = chosen["config_hash"].dropna().unique()
            row["config_hash"] = hashes[0] if len(hashes) == 1 else None
            row["runs_left_out"] = left_out
            row["running"] = _running(runs, experiment)
        else:
            row.update(_empty_aggregate(spec))
            row["config_hash"] = None
            row["runs_left_out"] = 0
            row["running"] = 0
        for col in (c for c in spec["columns"] if "runs_of" in c):
            # e.g. the row's search experiment: its runs, never the row's own, give the figure
            other = paper_row.get(col["runs_of"]) if paper_row is not None else None
            pool = _recorded(runs, [col["metric"]]) if col.get("require") else runs
            chosen = _select(pool, other)[0] if isinstance(other, str) and other else runs[:0]
            figures = _aggregate({"columns": [col]}, chosen)
            row.update({k: v for k, v in figures.items() if k != "seeds"})
        row.update(_computed_values(spec, experiment, row))
        row.update(
            _paper_values(spec, paper_row, texts[paper_row.name] if paper_row is not None else None)
        )
        rows.append(row)

    paper = paper_tables()
    # An experiment that is a row of some table is no extra row of another.
    named = set(paper["experiment"].dropna())
    if "paper_table" in rows_spec:
        part = paper[paper["table"] == rows_spec["paper_table"]]
        for _, prow in part.iterrows():
            experiment = prow.get("experiment")
            experiment = experiment if isinstance(experiment, str) and experiment else None
            values = {lab["name"]: prow.get(lab.get("paper", lab["name"])) for lab in labels}
            add_row(experiment, prow, values, reference=experiment is None)
    experiments: list[str] = []
    completed = runs[runs["status"] == "completed"]
    if rows_spec.get("extra_experiments"):
        prefix = rows_spec["extra_experiments"]
        experiments += sorted(
            e
            for e in completed["experiment"].dropna().unique()
            if str(e).startswith(prefix) and e not in named
        )
    if rows_spec.get("experiment_prefix"):
        prefix = rows_spec["experiment_prefix"]
        experiments += sorted(
            e for e in runs["experiment"].dropna().unique() if str(e).startswith(prefix)
        )
    experiments += list(rows_spec.get("experiments") or [])
    match = spec.get("paper_match") or {}
    for experiment in dict.fromkeys(experiments):
        prow = None
        if experiment in match:
            m = match[experiment]
            hit = paper[
                (paper["table"] == m.get("table"))
                & (paper["architecture"] == m.get("architecture"))
            ]
            prow = hit.iloc[0] if len(hit) else None
        values = {"experiment": experiment, "architecture": _genotype_label(runs, experiment)}
        add_row(experiment, prow, values, reference=False)

    columns = list(
        dict.fromkeys(
            [lab["name"] for lab in labels]
            + ["experiment", "reference"]
            + list(_empty_aggregate(spec))
            + ["config_hash", "runs_left_out", "running"]
            + list(_computed_values(spec, None, {}))
            + list(_paper_values(spec, None))
        )
    )
    df = pd.DataFrame(rows, columns=columns)
    df["seeds"] = df["seeds"].astype(int)
    df["reference"] = df["reference"].astype(bool)
    df.attrs["table"] = name
    df.attrs["title"] = spec.get("title", name)
    df.attrs["definition"] = spec
    return df


def _recorded(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The runs that recorded a number for every one of ``metrics``."""
    for metric in metrics:
        numbers = pd.to_numeric(runs[metric], errors="coerce") if metric in runs else None
        runs = runs[numbers.notna()] if numbers is not None else runs[:0]
    return runs


def _running(runs: pd.DataFrame, experiment: str) -> int:
    """How many (non-smoke) runs of ``experiment`` are still running: not in the row yet."""
    mine = runs[(runs["experiment"] == experiment) & (runs["status"] == "running")]
    return int((~mine["smoke"].fillna(False).astype(bool)).sum())


def _running_note(df: pd.DataFrame) -> str:
    """A line under the table naming the rows with runs still running (not counted)."""
    if "running" not in df:
        return ""
    busy = df[pd.to_numeric(df["running"], errors="coerce").fillna(0) > 0]
    if busy.empty:
        return ""
    parts = [f"{e}: {int(n)}" for e, n in zip(busy["experiment"], busy["running"])]
    return (
        "\nStill running (not counted; seeds are completed runs only): " + ", ".join(parts) + "\n"
    )


def _genotype_label(runs: pd.DataFrame, experiment: str) -> str:
    names = runs.loc[runs["experiment"] == experiment, "genotype_name"].dropna().unique()
    return str(names[0]) if len(names) == 1 else experiment


# --------------------------------------------------------------------------------------------
# Formatting


def _fmt_ours(mean: Any, std: Any, digits: int, with_std: bool) -> str:
    mean, std = as_number(mean), as_number(std)
    if math.isnan(mean):
        return ""
    text = f"{mean:.{digits}f}"
    if with_std and not math.isnan(std):
        text += f"{PM}{std:.{digits}f}"
    return text


COMPUTED_MARK = "†"
COMPUTED_NOTE = f"{COMPUTED_MARK} computed from the architecture (no completed run yet)."


def _fmt_computed(value: Any, digits: int) -> str:
    value = as_number(value)
    return "" if math.isnan(value) else f"{value:.{digits}f}{COMPUTED_MARK}"


def _fmt_paper(value: Any, std: Any, text: Any = None) -> str:
    if isinstance(text, str) and text:
        return text  # as the paper printed it
    value, std = as_number(value), as_number(std)
    if math.isnan(value):
        return ""
    text = f"{value:g}"
    if not math.isnan(std):
        text += f"{PM}{std:g}"
    return text


def _display_frame(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The printed table: labels, seeds, then each measured column (ours, then the paper's)."""
    labels = spec.get("labels") or [{"name": "experiment", "label": "Experiment"}]
    has_paper = any("paper" in c for c in spec["columns"])
    out: dict[str, list[str]] = {}
    for lab in labels:
        out[lab["label"]] = [
            "" if _label_value(v) is None else str(v) for v in df.get(lab["name"], [None] * len(df))
        ]
    reference = df.get("reference", pd.Series([False] * len(df))).fillna(False).astype(bool)
    out["Seeds"] = ["" if ref else str(int(n)) for ref, n in zip(reference, df["seeds"])]
    for col in spec["columns"]:
        if col.get("display", True) is False:
            continue
        name, digits, agg = col["name"], int(col.get("digits", 2)), col.get("agg", "mean_std")
        ours_label = f"{col['label']} (ours)" if has_paper and agg != "best_run" else col["label"]
        if col.get("ours", True) is False:
            pass  # a figure only the paper gives
        elif agg == "best_run":
            out[ours_label] = [
                "" if _label_value(v) is None else str(v) for v in df.get(name, [None] * len(df))
            ]
        else:
            computed = df.get(f"{name}_computed", pd.Series([math.nan] * len(df)))
            out[ours_label] = [
                _fmt_ours(m, s, digits, agg == "mean_std") or _fmt_computed(c, digits)
                for m, s, c in zip(df[f"{name}_mean"], df[f"{name}_std"], computed)
            ]
        if "paper" in col:
            std = df.get(f"paper_{name}_std", pd.Series([math.nan] * len(df)))
            text = df.get(f"paper_{name}_text", pd.Series([None] * len(df)))
            out[f"{col['label']} (paper)"] = [
                _fmt_paper(v, s, t) for v, s, t in zip(df[f"paper_{name}"], std, text)
            ]
    return pd.DataFrame(out)


_LATEX_ESCAPES = {
    **{ch: "\\" + ch for ch in "&%$#_{}"},
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    COMPUTED_MARK: r"$^\dagger$",
}


def _latex_escape(text: str) -> str:
    text = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    return text.replace("±", r"$\pm$")


def _to_latex(
    display: pd.DataFrame, n_labels: int, caption: str | None, note: str | None = None
) -> str:
    """A booktabs tabular (our own writer: pandas' to_latex needs jinja2)."""
    align = "l" * n_labels + "r" * (display.shape[1] - n_labels)
    lines = []
    if caption:
        lines.append(f"% {caption}")
    lines += [
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(_latex_escape(c) for c in display.columns) + r" \\",
        "\\midrule",
    ]
    for _, row in display.iterrows():
        lines.append(" & ".join(_latex_escape(v) for v in row) + r" \\")
    lines.append("\\bottomrule")
    if note:  # below the rule, across the table, as booktabs tables carry their notes
        lines.append(
            f"\\multicolumn{{{display.shape[1]}}}{{l}}{{\\footnotesize {_latex_escape(note)}}} \\\\"
        )
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return io.dumps(value)
    return value


def format_table(df: pd.DataFrame, fmt: str = "markdown", *, name: str | None = None) -> str:
    """Print a table from ``build_table``.

    ``markdown`` and ``latex`` (a booktabs ``tabular``) show the labelled columns with
    "mean ± std" and the paper's value beside ours; ``csv`` writes the DataFrame's raw,
    numeric columns (one column per mean, std and paper value) for further processing.

    Args:
        df: the table.
        fmt: 'markdown', 'latex' or 'csv'.
        name: the table's name, when ``df.attrs`` lost its definition.

    Raises:
        UserError: an unknown format.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}.")
    if fmt == "csv":
        return df.map(_csv_cell).to_csv(index=False)
    spec = df.attrs.get("definition")
    if spec is None:
        key = name or df.attrs.get("table")
        spec = definition(key) if key else None
    if spec is None:
        display, n_labels = df.astype(object).where(df.notna(), ""), 1
    else:
        display = _display_frame(df, spec)
        n_labels = len(spec.get("labels") or [1])
    computed = any(str(v).endswith(COMPUTED_MARK) for v in display.to_numpy().ravel())
    note = COMPUTED_NOTE if computed else None
    running = _running_note(df)
    if fmt == "markdown":
        text = display.to_markdown(index=False, disable_numparse=True) + "\n"
        return text + (f"\n{note}\n" if note else "") + running
    return _to_latex(display, n_labels, df.attrs.get("title"), note) + running.replace(
        "\n", "\n% ", 1
    )
