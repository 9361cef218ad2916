"""The DARTS family's published cells and the darts_family table.

Each published cell, trained as the papers count it (NetworkCIFAR, 36 channels, 20 cells, no
auxiliary head unless the source counts it), has the parameter count that its authors' own
code gives, pinned here as an exact integer with the repository and commit that produced it
(each authors' ``model.py`` NetworkCIFAR built with their ``genotypes.py`` cell, on a CPU), and
the count the paper prints, to the printed precision. The table prints the published figures
as the sources print them, with our runs' figures beside them.
"""

import csv
import importlib.resources
import json
import math
import statistics

import pytest
from test_results import write_run

from sharpdarts.core import genotype_types, genotypes
from sharpdarts.core.metrics import count_parameters
from sharpdarts.face import cli, experiments
from sharpdarts.nn.models import NetworkCIFAR
from sharpdarts.store.results import load_runs
from sharpdarts.store.tables import build_table, format_table

# name: (the authors' count, their repository @ commit, the printed figure in M, whether the
# source counts the auxiliary head)
AUTHORS = {
    # yuhuixu1993/PC-DARTS @ b74702f86c70e330ce0db35762cfade9df026bb7, PC_DARTS_cifar
    "PC_DARTS": (3_634_678, 3.6, False),
    # chenxin061/pdarts @ b880e8733010403307fe6a9bf7f02612fbc424ca, PDARTS
    "PDARTS": (3_433_798, 3.4, False),
    # D-X-Y/AutoDL-Projects @ f46486e21b71ae6459a700be720d7648b5429569, GDAS_V1 in
    # xautodl/nas_infer_model/DXYs CifarNet(C=36, N=6)
    "GDAS_V1": (3_368_782, 3.4, False),
    # xiaomi-automl/FairDARTS @ 270cfc94ef4bf851f359ab5caf741f23316ea7c9, FairDARTS_d
    # (parse_method='threshold'); its README's 3.84M counts the auxiliary head
    "FAIRDARTS_D": (3_841_968, 3.84, True),
    # xiangning-chen/DrNAS @ f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0, DrNAS_cifar10
    "DRNAS": (4_099_294, 4.1, False),
    # xiangning-chen/SmoothDARTS @ d3dbfed06643d5fd4056edd90891ec9109634ada, c10_s5_pgd
    "SDARTS_ADV": (3_344_806, 3.3, False),
    # Meituan-AutoML/DARTS- @ adb81a8313b17d1a87593a53b0e802fc4199e9b1, cifar10_s0_0
    "DARTS_MINUS": (3_454_318, 3.5, False),
}
# Published cells whose count is not the printed one: SmoothDARTS' c10_s5_random (same commit
# as above) has 3.61M where the tables print 3.4M for SDARTS-RS; SNAS' SNAS_mild has 2.66M
# where the SNAS paper prints 2.9M for its mild-constraint cell.
NOT_AS_PRINTED = {"SDARTS_RS": (3_606_166, 3.4), "SNAS_MILD": (2_661_382, 2.9)}
# SNAS-Series/SNAS-Series @ 9a43adbdf90d4969b19e448c0d094091bc5efb4f: SNAS's training ops
# (SNAS/operations.py) put an affine BatchNorm after every pooling op, DARTS's do not; its
# model.py gives these counts (printed: 2.8M for moderate).
SNAS_AUTHORS = {"SNAS_MODERATE": 2_848_222, "SNAS_MILD": 2_663_542}
FAMILY = sorted([*AUTHORS, *NOT_AS_PRINTED, "SNAS_MODERATE"])


def _network(name: str, auxiliary: bool = False) -> NetworkCIFAR:
    return NetworkCIFAR(36, 10, 20, auxiliary, name, op_dict="DARTS_OPS")


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_published_cells_have_the_authors_and_the_printed_parameter_count(name):
    count, printed, with_head = AUTHORS[name]
    ours = count_parameters(_network(name, with_head), auxiliary=with_head)
    assert ours == count
    assert round(ours / 1e6, len(str(printed).split(".")[1])) == printed


@pytest.mark.parametrize("name", sorted(NOT_AS_PRINTED))
def test_cells_whose_published_count_differs_from_the_printed_one(name):
    count, printed = NOT_AS_PRINTED[name]
    ours = count_parameters(_network(name))
    assert ours == count and round(ours / 1e6, 1) != printed


@pytest.mark.parametrize("name", sorted(SNAS_AUTHORS))
def test_snas_cells_lack_only_snas_batchnorm_after_pooling(name):
    net = _network(name)
    genotype = genotypes.get(name)
    # 20 cells, reduction cells at 6 and 13 (36 -> 72 -> 144 channels), the normal cells at
    # the width of the reduction before them: 2 BatchNorm parameters per channel per pool op.
    missing = 0
    for i, cell_width in enumerate([36] * 6 + [72] * 7 + [144] * 7):
        reduction = i in (6, 13)
        ops = genotype.reduce if reduction else genotype.normal
        pools = sum(op in ("max_pool_3x3", "avg_pool_3x3") for op, _ in ops)
        missing += 2 * cell_width * pools
    assert count_parameters(net) + missing == SNAS_AUTHORS[name]
    if name == "SNAS_MODERATE":
        assert round(count_parameters(net) / 1e6, 1) == round(SNAS_AUTHORS[name] / 1e6, 1) == 2.8


@pytest.mark.parametrize("name", FAMILY)
def test_every_family_cell_has_its_source_and_darts_ops(name):
    reference = genotype_types.reference_data()
    source = reference["sources"][name]
    assert set(source) == {"repo", "path", "commit", "name"} and len(source["commit"]) == 40
    genotype = genotypes.get(name)
    ops = {op for op, _ in genotype.normal + genotype.reduce}
    assert ops <= set(genotypes.DARTS_PRIMITIVES) - {"none"}
    assert len(genotype.normal) == len(genotype.reduce) == 8


def test_gdas_names_the_published_gdas_cell():
    assert genotypes.aliases()["GDAS"] == "GDAS_V1"
    assert genotypes.get("GDAS") == genotypes.get("GDAS_V1")


def _family_csv() -> list[dict[str, str]]:
    source = importlib.resources.files("sharpdarts").joinpath("reference/darts_family.csv")
    with source.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_training_row_trains_its_published_cell():
    for row in _family_csv():
        if row["experiment"].startswith("cifar10/") and "darts_v" not in row["experiment"]:
            text = experiments.experiment_path(row["experiment"]).read_text()
            assert "Deviations:" in text and f'row "{row["architecture"]}"' in text
            name = text.split("GENOTYPE = '")[1].split("'")[0]
            assert name in FAMILY


def test_the_table_prints_the_published_figures_as_printed():
    markdown = format_table(build_table("darts_family", load_runs("/nonexistent")), "markdown")
    lines = {line.split("|")[1].strip(): line for line in markdown.splitlines()[2:] if "|" in line}
    rows = _family_csv()
    assert list(lines) == [r["architecture"] for r in rows]
    for row in rows:
        cells = [c.strip() for c in lines[row["architecture"]].split("|")[1:-1]]
        error = row["error_top1"] + (f" ± {row['error_top1_std']}" if row["error_top1_std"] else "")
        assert error in cells, row["architecture"]
        for key in ("params_m", "search_gpu_days", "imagenet_error_top1", "imagenet_params_m"):
            assert not row[key] or row[key] in cells, (row["architecture"], key)
        nb201 = row["nb201_c10_test"] + (
            " ± " + row["nb201_c10_test_std"] if row["nb201_c10_test"] else ""
        )
        assert nb201 in cells and row["nb201_experiment"] in cells, row["architecture"]
    assert "| 2.57 ± 0.07 " in lines["PC-DARTS"] and "| 0.1 " in lines["PC-DARTS"]
    assert "| 2.85 ± 0.02 " in lines["SNAS (moderate constraint)"]
    assert "| other " in lines["SDARTS-RS"] and "| own " in lines["DrNAS"]
    header = markdown.splitlines()[0]
    assert "ImageNet top-1 % (paper)" in header and "ImageNet top-1 % (ours)" not in header


def test_our_runs_and_search_cost_stand_beside_the_published_figures(tmp_path, capsys):
    # One real run, in-process: a smoke training of the PC-DARTS row (smoke runs never count
    # in a table, so its run.json is marked as a full run's), then two hand-written seeds more
    # and a search of 0.1 GPU-days.
    results = tmp_path / "results"
    argv = ["run", "cifar10/pc_darts", "--smoke", "--seed", "1", "--results", str(results)]
    code = cli.main(argv)
    assert code == 0
    (info_path,) = (results / "runs" / "cifar10" / "pc_darts").glob("*/run.json")
    info = json.loads(info_path.read_text())
    assert info["status"] == "completed" and info["final"]["params_m"] > 0
    info["smoke"] = False
    info_path.write_text(json.dumps(info))
    for seed, error in ((2, 2.6), (3, 2.5)):
        final = {"test_error_top1": error, "params_m": 3.634678}
        write_run(results, "cifar10/pc_darts", seed, final, config_hash=info["config_hash"])
    write_run(results, "search/pc_darts", 1, {}, wall=8640.0, kind="search")
    write_run(results, "cifar10/fairdarts", 1, {"test_error_top1": 2.7}, wall=86400.0)
    capsys.readouterr()

    df = build_table("darts_family", load_runs(results))
    row = df[df["experiment"] == "cifar10/pc_darts"].iloc[0]
    assert row["seeds"] == 3 and not row["reference"]
    assert row["search_gpu_days_mean"] == pytest.approx(0.1)  # the search's, not the trainings'
    assert row["paper_test_error"] == 2.57 and row["paper_test_error_std"] == 0.07
    smoke_error = info["final"]["test_error_top1"]
    assert row["test_error_mean"] == pytest.approx((smoke_error + 2.6 + 2.5) / 3)
    fair = df[df["experiment"] == "cifar10/fairdarts"].iloc[0]
    # A row without a search experiment shows no search cost, never its training's GPU-days.
    assert fair["seeds"] == 1 and math.isnan(fair["search_gpu_days_mean"])
    other = df[df["experiment"] == "cifar10/drnas"].iloc[0]
    assert other["seeds"] == 0 and math.isnan(other["search_gpu_days_mean"])

    assert cli.main(["table", "darts_family", "--results", str(results)]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("| PC-DARTS "))
    assert "| 0.10 " in line and "| 0.1 " in line and "| 2.57 ± 0.07 " in line
    # Trained on the family's rows, a run is no extra row of the sharpDARTS cifar10 table.
    assert "cifar10/pc_darts" not in set(build_table("cifar10", load_runs(results))["experiment"])


def test_list_attaches_the_family_experiments_to_their_rows(capsys):
    assert cli.main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for row in _family_csv():
        pairs = ("experiment", ""), ("search_experiment", " (search)")
        for key, suffix in (*pairs, ("nb201_experiment", " (NAS-Bench-201)")):
            name = row[key]
            if name in experiments.experiment_names() and row["table"] in lines[name]:
                assert f"{row['architecture']}{suffix}" in lines[name]
    assert lines["cifar10/pc_darts"].split()[1] == "darts_family"
    assert lines["search/pc_darts"].split()[1] == "darts_family"
    assert "PC-DARTS (search)" in lines["search/pc_darts"]
    assert lines["search/darts_es"].split()[1:] == ["darts_family", "DARTS-ES", "(search)"]
    # A NAS-Bench-201 search is its nb201 row first, then the family row it joins.
    assert lines["nb201/search_gdas"].split()[1] == "nb201"
    assert lines["nb201/search_gdas"].endswith("GDAS; darts_family: GDAS (NAS-Bench-201)")
    assert lines["nb201/search_pc_darts"].split()[1] == "darts_family"


def test_the_nb201_column_puts_our_searches_cells_beside_the_published_figure(tmp_path, capsys):
    results = tmp_path / "results"
    acc = "nb201_cifar10_test_acc"
    # Two GDAS searches that looked up their cell in the benchmark; seed 2 was run again later
    # without the benchmark: that run has no figure, so seed 2's earlier run is the one counted.
    write_run(results, "nb201/search_gdas", 1, {acc: 93.0}, kind="search")
    write_run(results, "nb201/search_gdas", 2, {acc: 93.4}, kind="search")
    write_run(results, "nb201/search_gdas", 2, {"genotype": "x"}, kind="search")
    write_run(results, "nb201/search_drnas", 1, {acc: 94.0}, kind="search")
    write_run(results, "cifar10/gdas", 1, {"test_error_top1": 2.9})
    write_run(results, "search/darts_es", 1, {}, wall=43200.0, kind="search")
    runs = load_runs(results)

    df = build_table("darts_family", runs).set_index("architecture")
    gdas = df.loc["GDAS"]
    assert gdas["nb201_experiment"] == "nb201/search_gdas"
    assert gdas["nb201_c10_test_mean"] == pytest.approx(93.2)
    assert gdas["nb201_c10_test_std"] == pytest.approx(statistics.stdev([93.0, 93.4]))
    assert gdas["nb201_c10_test_n"] == 2 and gdas["seeds"] == 1  # seeds: its CIFAR-10 trainings
    assert gdas["paper_nb201_c10_test"] == 93.61 and gdas["paper_nb201_c10_test_std"] == 0.09
    # The nb201 table counts the same runs for its GDAS row.
    nb201 = build_table("nb201", runs).set_index("experiment").loc["nb201/search_gdas"]
    assert nb201["c10_test_mean"] == gdas["nb201_c10_test_mean"] and nb201["seeds"] == 2
    assert df.loc["DrNAS", "nb201_c10_test_mean"] == 94.0
    # No NAS-Bench-201 search of their own: the published figure alone, or nothing.
    assert math.isnan(df.loc["DARTS-", "nb201_c10_test_mean"])
    assert df.loc["DARTS-", "paper_nb201_c10_test"] == 93.8
    assert math.isnan(df.loc["PC-DARTS", "nb201_c10_test_mean"])
    assert math.isnan(df.loc["PC-DARTS", "paper_nb201_c10_test"])
    # DARTS-ES's row takes its search cost from search/darts_es.
    assert df.loc["DARTS-ES", "search_gpu_days_mean"] == pytest.approx(0.5)

    assert cli.main(["table", "darts_family", "--results", str(results)]) == 0
    printed = capsys.readouterr().out.splitlines()[2:]
    lines = {line.split("|")[1].strip(): line for line in printed if "|" in line}
    assert "| nb201/search_gdas " in lines["GDAS"]
    assert "| 93.20 ± 0.28 " in lines["GDAS"] and "| 93.61 ± 0.09 " in lines["GDAS"]
    assert "| 94.00 " in lines["DrNAS"] and "| 94.36 ± 0.00 " in lines["DrNAS"]
    assert "| 54.30 ± 0.00 " in lines["DARTS (first order)"]


def test_each_published_nb201_figure_is_the_nb201_tables_row_and_has_its_source():
    source = importlib.resources.files("sharpdarts").joinpath("reference/nb201_tables.csv")
    with source.open(encoding="utf-8") as f:
        nb201 = list(csv.DictReader(f))
    by_experiment = {r["experiment"]: r for r in nb201 if r["experiment"]}
    names = experiments.experiment_names()
    checked = 0
    for row in _family_csv():
        name = row["nb201_experiment"]
        assert not name or (name.startswith("nb201/search_") and name in names)
        assert bool(row["nb201_c10_test"]) <= bool(row["nb201_source"]), row["architecture"]
        same = by_experiment.get(name) or next(
            (r for r in nb201 if r["architecture"] == row["architecture"]), None
        )
        if row["nb201_c10_test"] and same:
            assert (row["nb201_c10_test"], row["nb201_c10_test_std"]) == (
                same["c10_test"],
                same["c10_test_std"],
            )
            checked += 1
    assert checked == 5  # DARTS first and second order, GDAS, DrNAS, DARTS-
