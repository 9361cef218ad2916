"""Tables as printed: the paper's values as its text, computed params and multiply-adds for
rows without runs, and a LaTeX table with booktabs structure."""

import re

import pytest
from test_results import write_run

from sharpdarts.store import table_defs
from sharpdarts.store.results import load_runs
from sharpdarts.store.tables import COMPUTED_MARK, build_table, format_table


def _cells(markdown: str, needle: str) -> dict[str, str]:
    lines = [l for l in markdown.splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    line = next(l for l in lines if needle in l)
    return dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))


def test_paper_values_are_printed_as_the_paper_printed_them(tmp_path):
    md = format_table(build_table("imagenet", load_runs(tmp_path)), "markdown")
    maxw = _cells(md, "imagenet/sharper_darts_max_w")
    assert maxw["Top-1 error % (paper)"] == "24.0"  # not 24
    assert maxw["Multiply-adds B (paper)"] == "0.950"  # not 0.95
    gpipe = _cells(md, "GPipe AmoebaNet-B")
    assert gpipe["Top-5 error % (paper)"] == "3.0"  # not 3
    amoeba_c = _cells(md, "AmoebaNet-C")
    assert amoeba_c["Multiply-adds B (paper)"] == "0.570"  # not 0.57
    cifar = format_table(build_table("cifar10", load_runs(tmp_path)), "markdown")
    assert _cells(cifar, "| cifar10/sharpsepconv_darts ")["Test error % (paper)"] == "1.98 ± 0.07"


def test_every_paper_cell_is_the_csv_text(tmp_path):
    # Whatever the column, the printed paper value is the CSV's text, unchanged.
    rows = [r for r in table_defs.paper_rows() if r["table"] == "imagenet"]
    table = build_table("imagenet", load_runs(tmp_path))
    spec = table.attrs["definition"]
    md = format_table(table, "markdown")
    for row in rows:
        cells = _cells(md, f"| {row['architecture']} ")
        for col in spec["columns"]:
            if "paper" in col:
                assert cells[f"{col['label']} (paper)"] == row[col["paper"]], (row, col)


def test_rows_without_runs_show_computed_params_and_multiply_adds(tmp_path):
    costs = table_defs.computed_costs()
    table = build_table("imagenet", load_runs(tmp_path))
    md = format_table(table, "markdown")
    for name in ("imagenet/sharpdarts_cmid32", "imagenet/sharpsepconv_darts"):
        cells = _cells(md, name)
        assert cells["Params M (ours)"] == f"{costs[name]['params_m']:.2f}{COMPUTED_MARK}"
        assert (
            cells["Multiply-adds B (ours)"]
            == f"{costs[name]['multiply_adds_b']:.3f}{COMPUTED_MARK}"
        )
        assert cells["Top-1 error % (ours)"] == ""  # only what follows from the architecture
    assert md.rstrip().endswith("computed from the architecture (no completed run yet).")
    reference = _cells(md, "| DARTS ")
    assert reference["Params M (ours)"] == ""  # no architecture of ours behind it

    # A completed run's own figures replace the computed ones, unmarked.
    write_run(
        tmp_path,
        "imagenet/sharpdarts_cmid32",
        1,
        {"test_error_top1": 31.0, "params_m": 3.2, "multiply_adds_b": 0.371},
    )
    cells = _cells(
        format_table(build_table("imagenet", load_runs(tmp_path)), "markdown"),
        "imagenet/sharpdarts_cmid32",
    )
    assert cells["Params M (ours)"] == "3.20" and cells["Multiply-adds B (ours)"] == "0.371"


def test_computed_figures_match_the_paper_for_its_own_rows():
    # A sanity check of the shipped file: the paper's own sizes, within 2% (rounding, and
    # counting conventions).
    costs = table_defs.computed_costs()
    for row in table_defs.paper_rows():
        name = row["experiment"]
        if name and name in costs and row["note"].startswith("this paper"):
            assert costs[name]["params_m"] == pytest.approx(float(row["params_m"]), rel=0.02), name


def _latex_rows(tex: str) -> list[str]:
    body = tex.split("\\begin{tabular}", 1)[1].split("\\end{tabular}", 1)[0]
    return [l for l in body.splitlines()[1:] if l.endswith("\\\\")]


def test_latex_has_booktabs_structure(tmp_path):
    tex = format_table(build_table("imagenet", load_runs(tmp_path)), "latex")
    lines = tex.splitlines()
    spec = re.match(
        r"\\begin\{tabular\}\{([lrc]+)\}$",
        lines[[i for i, l in enumerate(lines) if l.startswith("\\begin")][0]],
    )
    assert spec, tex
    ncols = len(spec[1])
    order = [l for l in lines if l in ("\\toprule", "\\midrule", "\\bottomrule")]
    assert order == ["\\toprule", "\\midrule", "\\bottomrule"]
    assert lines[-1] == "\\end{tabular}"
    body = _latex_rows(tex)
    top, mid, bottom = (lines.index(r) for r in ("\\toprule", "\\midrule", "\\bottomrule"))
    header, rows = lines[top + 1], lines[mid + 1 : bottom]
    # Every row has the columns the spec declares; no unescaped specials in the cells.
    for row in [header, *rows]:
        assert row.endswith("\\\\")
        assert len(re.split(r"(?<!\\)&", row[:-2])) == ncols, row
        assert not re.search(r"(?<!\\)[%#_]", row), row
    assert len(rows) == 12
    # The computed mark is explained below the rule, across all columns.
    note = lines[bottom + 1]
    assert note.startswith(f"\\multicolumn{{{ncols}}}{{l}}") and "$^\\dagger$" in note
    assert sum("$^\\dagger$" in r for r in rows) == 4  # the four rows of ours
    assert len(body) == 1 + 12 + 1
    # Braces balance, so the file compiles as far as TeX grouping goes.
    stripped = re.sub(r"\\[{}]", "", tex)
    assert stripped.count("{") == stripped.count("}")
