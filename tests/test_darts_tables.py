"""The DARTS paper's four tables: its values as printed beside our runs' figures."""

import csv
import importlib.resources
import math

import pytest
from test_results import write_run

from sharpdarts.store.results import load_runs
from sharpdarts.store.table_defs import paper_tables
from sharpdarts.store.tables import build_table, format_table


def test_the_darts_tables_are_shipped_as_printed():
    with importlib.resources.files("sharpdarts").joinpath("reference/darts_tables.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["table"] for r in rows} == {
        "darts_cifar10",
        "darts_ptb",
        "darts_imagenet",
        "darts_wt2",
    }
    second = next(r for r in rows if r["architecture"] == "DARTS (second order) + cutout")
    assert (second["error_top1"], second["error_top1_std"]) == ("2.76", "0.09")
    assert second["experiment"] == "cifar10/darts_v2"
    nas = next(r for r in rows if r["architecture"] == "NAS (Zoph & Le, 2017)")
    assert nas["search_gpu_days"] == "1e4 CPU days"  # kept verbatim
    paper = paper_tables()
    assert len(paper[paper["table"] == "darts_ptb"]) == 10


@pytest.mark.parametrize(
    "table,experiment,final,paper",
    [
        (
            "darts_ptb",
            "ptb/darts_v2",
            {"valid_ppl": 58.9, "test_ppl": 56.3, "params_m": 22.96},
            {"paper_valid_ppl": 58.1, "paper_test_ppl": 55.7, "paper_params": 23.0},
        ),
        (
            "darts_wt2",
            "wt2/darts_v2",
            {"valid_ppl": 72.0, "test_ppl": 70.1, "params_m": 33.13},
            {"paper_valid_ppl": 71.2, "paper_test_ppl": 69.6, "paper_params": 33.0},
        ),
        (
            "darts_cifar10",
            "cifar10/darts_v2",
            {"test_error_top1": 2.8, "params_m": 3.35},
            {"paper_test_error": 2.76, "paper_test_error_std": 0.09, "paper_params": 3.3},
        ),
        (
            "darts_imagenet",
            "imagenet/darts_v2",
            {"test_error_top1": 27.0, "test_error_top5": 8.9, "params_m": 4.72},
            {"paper_top1_error": 26.7, "paper_top5_error": 8.7, "paper_params": 4.7},
        ),
    ],
)
def test_darts_tables_put_the_paper_beside_our_runs(tmp_path, table, experiment, final, paper):
    write_run(tmp_path, experiment, 1, final)
    df = build_table(table, load_runs(tmp_path))
    row = df[df["experiment"] == experiment].iloc[0]
    assert row["seeds"] == 1 and not row["reference"]
    for key, value in paper.items():
        assert row[key] == pytest.approx(value), key
    ours = next(iter(final.values()))
    first = next(c for c in df.attrs["definition"]["columns"])
    assert row[f"{first['name']}_mean"] == pytest.approx(ours)
    # The other rows with an experiment: ptb/enas, ptb/darts_v1, ptb/random_search;
    # cifar10/darts_v1, cifar10/darts_random_search.
    assert (
        df["reference"].sum()
        == len(df) - 1 - (table == "darts_ptb") * 3 - (table == "darts_cifar10") * 2
    )
    assert experiment in format_table(df, "markdown")


def test_the_sharpdarts_table_darts_rows_are_our_darts_experiments(tmp_path):
    write_run(tmp_path, "cifar10/darts_v1", 1, {"test_error_top1": 3.1})
    df = build_table("cifar10", load_runs(tmp_path))
    row = df[df["architecture"] == "DARTS first order (measured by the authors)"].iloc[0]
    assert row["experiment"] == "cifar10/darts_v1" and row["test_error_mean"] == 3.1
    assert row["paper_test_error"] == 2.94
    assert math.isnan(df[df["experiment"] == "cifar10/darts_v2"].iloc[0]["test_error_mean"])
