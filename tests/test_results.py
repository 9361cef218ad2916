"""The results store as a DataFrame, and the paper tables built from it."""

import io
import json
import math
import statistics
import warnings

import pandas as pd
import pytest

from sharpdarts.errors import UserError
from sharpdarts.store import keys, provenance, table_defs
from sharpdarts.store import store as run_store
from sharpdarts.store.results import load_metrics, load_runs
from sharpdarts.store.table_defs import table_names
from sharpdarts.store.tables import build_table, format_table

SSC = "cifar10/sharpsepconv_darts"
_counter = iter(range(100000))


def write_run(
    root,
    experiment,
    seed,
    final=None,
    *,
    status="completed",
    wall=3600.0,
    device_count=1,
    config_hash="c0ffee000000",
    metrics=None,
    **extra,
):
    """A run folder written by hand, in the format store.start_run wrote before record format 2
    (no ``record_format``: a training run's ``valid_*`` figures are test-set figures)."""
    n = next(_counter)
    run_id = f"20250101T0000{n % 60:02d}{n:03d}Z-{n:06x}"
    folder = root / "runs" / experiment / run_id
    folder.mkdir(parents=True)
    info = {
        "experiment": experiment,
        "run_id": run_id,
        "seed": seed,
        "kind": "train",
        "command": ["sharpdarts", "run", experiment],
        "config_hash": config_hash,
        "git": {"commit": "a" * 40, "branch": "main", "dirty": False},
        "status": status,
        "started": "2025-01-01T00:00:00+00:00",
        "ended": f"2025-01-02T00:00:{n % 60:02d}+00:00",
        "wall_seconds": wall,
        "device": "NVIDIA H200" if device_count else "cpu",
        "device_count": device_count,
        "packages": {},
        "final": final,
        **extra,
    }
    (folder / "run.json").write_text(json.dumps(info))
    if metrics:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return folder


@pytest.fixture
def store(tmp_path):
    """Three seeds of SharpSepConvDARTS, one of sharpDARTS, plus runs that must not count."""
    errors = {1: 1.90, 2: 2.00, 3: 2.20}
    for seed, err in errors.items():
        write_run(
            tmp_path,
            SSC,
            seed,
            {
                "test_error_top1": err,
                "cifar10_1_error": 5.0 + seed,
                "params_m": 3.56,
                "multiply_adds_b": 0.579,
            },
            wall=43200.0 * seed,
            device_count=1,
        )
    write_run(tmp_path, "cifar10/sharpdarts", 1, {"test_error_top1": 2.4, "params_m": 1.98})
    # Not completed: excluded from every aggregate.
    write_run(tmp_path, SSC, 4, {"test_error_top1": 50.0}, status="failed", reason="NaN")
    write_run(tmp_path, SSC, 5, None, status="running")
    write_run(tmp_path, SSC, 6, {"test_error_top1": 60.0}, status="interrupted")
    return tmp_path


def _row(table, experiment):
    rows = table[table["experiment"] == experiment]
    assert len(rows) == 1
    return rows.iloc[0]


# ---------------------------------------------------------------------------- loading


def test_load_runs_one_row_per_folder_with_flattened_final_and_gpu_days(store):
    df = load_runs(store)
    assert len(df) == 7
    for column in (
        "experiment",
        "run_id",
        "path",
        "seed",
        "kind",
        "status",
        "started",
        "ended",
        "wall_seconds",
        "device",
        "device_count",
        "git_commit",
        "dirty",
        "config_hash",
        "gpu_days",
        "test_error_top1",
        "params_m",
    ):
        assert column in df.columns
    ssc = df[(df["experiment"] == SSC) & (df["seed"] == 2)].iloc[0]
    assert ssc["test_error_top1"] == 2.0 and ssc["git_commit"] == "a" * 40
    assert ssc["gpu_days"] == pytest.approx(1.0)  # 86400 s on one GPU
    assert str(ssc["started"].tz) == "UTC"


def test_gpu_days_are_device_days(tmp_path):
    write_run(tmp_path, "search/a", 1, {}, wall=43200.0, device_count=4)
    write_run(tmp_path, "search/b", 1, {}, wall=43200.0, device_count=0)  # CPU: one device
    df = load_runs(tmp_path).set_index("experiment")
    assert df.loc["search/a", "gpu_days"] == pytest.approx(2.0)
    assert df.loc["search/b", "gpu_days"] == pytest.approx(0.5)


def test_corrupt_run_folders_are_skipped_and_counted_in_one_warning(store):
    bad = store / "runs" / SSC / "20250101T000000000Z-bad000"
    bad.mkdir()
    (bad / "run.json").write_text('{"experiment": "cifar10/sharp')  # torn
    missing = store / "runs" / SSC / "20250101T000000000Z-bad001"
    missing.mkdir()
    (missing / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (store / "runs" / SSC / "20250101T000000000Z-bad002").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_runs(store)
    assert len(df) == 7
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "skipped 3 unreadable run folders" in messages[0]
    table = build_table("cifar10", df)  # and tables still build
    assert _row(table, SSC)["seeds"] == 3


def test_load_metrics_one_row_per_epoch(tmp_path):
    folder = write_run(
        tmp_path,
        "demo/search",
        1,
        {},
        kind="search",
        metrics=[
            {"epoch": 1, "lr": 0.1, "valid_acc": 10.0},
            {"epoch": 2, "lr": 0.05, "valid_acc": 20.0},
        ],
    )
    with open(folder / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "lr"')  # torn: left out
    write_run(tmp_path, "demo/train", 4, {}, metrics=[{"epoch": 1, "valid_acc": 30.0}])
    df = load_metrics(tmp_path)
    assert len(df) == 3
    search = df[df["experiment"] == "demo/search"].sort_values("epoch")
    assert list(search["epoch"]) == [1, 2] and list(search["valid_acc"]) == [10.0, 20.0]
    # An old training run logged its test-set accuracy as valid_acc: it reads as test_acc.
    train = df[df["experiment"] == "demo/train"]
    assert list(train["test_acc"]) == [30.0] and train["valid_acc"].isna().all()
    assert set(df["seed"]) == {1, 4} and df["run_id"].nunique() == 2


def test_runs_written_by_start_run_load(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_device_info", lambda: ("cpu", 0))
    norepo = tmp_path / "norepo"
    norepo.mkdir()
    run, _ = run_store.start_run(
        tmp_path / "res", SSC, 1, "EPOCHS = 1\n", command=["x"], kind="train", repo_dir=norepo
    )
    run.log_epoch({"epoch": 1, "valid_acc": 90.0})
    run.finish({"test_error_top1": 2.5, "params_m": 3.56, "multiply_adds_b": 0.579})
    df = load_runs(tmp_path / "res")
    assert list(df["run_id"]) == [run.run_id] and df.loc[0, "status"] == "completed"
    assert df.loc[0, "config_hash"] == keys.config_hash("EPOCHS = 1\n")
    assert _row(build_table("cifar10", df), SSC)["test_error_mean"] == 2.5
    # A run of today's record format keeps its names: valid_acc is validation data.
    assert list(load_metrics(tmp_path / "res")["valid_acc"]) == [90.0]


# ---------------------------------------------------------------------------- tables


def test_cifar10_table_aggregates_completed_runs_beside_the_paper(store):
    table = build_table("cifar10", load_runs(store))
    paper = table_defs.paper_tables()
    paper = paper[paper["table"] == "cifar10"]
    assert list(table["architecture"]) == list(paper["architecture"])  # paper order

    ssc = _row(table, SSC)
    errors = [1.90, 2.00, 2.20]
    assert ssc["seeds"] == 3 and not ssc["reference"]
    assert ssc["test_error_mean"] == pytest.approx(statistics.mean(errors))
    assert ssc["test_error_std"] == pytest.approx(statistics.stdev(errors))  # ddof=1
    assert ssc["cifar10_1_error_mean"] == pytest.approx(7.0)
    assert ssc["params_mean"] == pytest.approx(3.56)
    assert ssc["multiply_adds_mean"] == pytest.approx(0.579)
    assert ssc["train_gpu_days_mean"] == pytest.approx(1.0)  # 0.5, 1.0, 1.5 device-days
    assert (ssc["paper_test_error"], ssc["paper_test_error_std"]) == (1.98, 0.07)
    assert (ssc["paper_cifar10_1_error"], ssc["paper_params"]) == (5.9, 3.6)
    assert ssc["paper_search_gpu_days"] == 0.8

    one = _row(table, "cifar10/sharpdarts")
    assert one["seeds"] == 1 and one["test_error_mean"] == 2.4
    assert math.isnan(one["test_error_std"])  # one seed: no std
    assert one["paper_test_error"] == 2.29

    reference = table[table["architecture"] == "ENAS"].iloc[0]
    assert reference["reference"] and reference["seeds"] == 0
    assert math.isnan(reference["test_error_mean"]) and reference["paper_test_error"] == 2.89
    assert table["reference"].sum() == 12  # the two DARTS rows are cifar10/darts_v1 and _v2


def test_single_seed_rows_are_printed_without_std(store):
    text = format_table(build_table("cifar10", load_runs(store)), "markdown")
    line = next(l for l in text.splitlines() if "| cifar10/sharpdarts " in l)
    assert "| 2.40 " in line and "2.40 ±" not in line and "2.29 ± 0.06" in line


def test_markdown_latex_and_csv(store):
    table = build_table("cifar10", load_runs(store))
    md = format_table(table, "markdown")
    ssc_lines = [l for l in md.splitlines() if f"| {SSC} " in l]
    assert len(ssc_lines) == 1
    for expected in (
        "SharpSepConvDARTS",
        "2.03 ± 0.15",
        "1.98 ± 0.07",
        "7.0 ± 1.0",
        "5.9 ± 0.5",
        "3.56",
        "0.579",
        "| 3 ",
    ):
        assert expected in ssc_lines[0], expected
    assert "Test error % (ours)" in md and "Test error % (paper)" in md
    assert "Train GPU-days" not in md  # display: false

    tex = format_table(table, "latex")
    for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}", "\\end{tabular}"):
        assert tex.count(rule) == 1
    assert "2.03 $\\pm$ 0.15 & 1.98 $\\pm$ 0.07" in tex
    assert "cifar10/sharpsepconv\\_darts" in tex and "Test error \\% (ours)" in tex
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("SharpSepConvDARTS")

    back = pd.read_csv(io.StringIO(format_table(table, "csv")))
    row = back[back["experiment"] == SSC].iloc[0]
    assert row["test_error_mean"] == pytest.approx(2.0333333)
    assert row["paper_test_error"] == 1.98 and row["paper_test_error_std"] == 0.07


def test_imagenet_table_has_top1_and_top5_beside_the_paper(tmp_path):
    write_run(
        tmp_path,
        "imagenet/sharpsepconv_darts",
        1,
        {
            "test_error_top1": 25.0,
            "test_error_top5": 7.9,
            "params_m": 4.9,
            "multiply_adds_b": 0.573,
        },
    )
    table = build_table("imagenet", load_runs(tmp_path))
    row = _row(table, "imagenet/sharpsepconv_darts")
    assert (row["top1_error_mean"], row["paper_top1_error"]) == (25.0, 25.1)
    assert (row["top5_error_mean"], row["paper_top5_error"]) == (7.9, 7.8)
    assert len(table) == 12 and table["reference"].sum() == 8
    line = next(
        l
        for l in format_table(table, "markdown").splitlines()
        if "imagenet/sharpsepconv_darts" in l
    )
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3:7] == ["25.00", "25.1", "7.90", "7.8"]


def test_search_table_and_lineage_search_cost(tmp_path):
    acc = {1: 80.0, 2: 84.0}
    ids = {}
    for seed, a in acc.items():
        folder = write_run(
            tmp_path,
            "search/sharpsepconv_darts_scalar",
            seed,
            {"best_valid_acc": a, "genotype": {"normal": [["sep_conv_3x3", 0]]}},
            wall=86400.0 * seed,
            device_count=1,
            kind="search",
        )
        ids[seed] = folder.name
    write_run(tmp_path, "search/other", 1, {"best_valid_acc": 70.0}, wall=8640.0, kind="search")
    write_run(
        tmp_path,
        SSC,
        1,
        {"test_error_top1": 2.0},
        genotype_name="mine",
        genotype_lineage={"run_id": ids[2], "epoch": 50},
    )
    df = load_runs(tmp_path)
    table = build_table("search", df)
    assert list(table["experiment"]) == ["search/other", "search/sharpsepconv_darts_scalar"]
    row = _row(table, "search/sharpsepconv_darts_scalar")
    assert row["seeds"] == 2 and row["genotype"] == f"run:{ids[2]}"  # the best seed's
    assert row["valid_acc_mean"] == pytest.approx(82.0)
    assert row["valid_acc_std"] == pytest.approx(statistics.stdev([80.0, 84.0]))
    assert row["gpu_days_mean"] == pytest.approx(1.5)
    assert row["paper_gpu_days"] == 0.8
    md = format_table(table, "markdown")
    assert "82.00 ± 2.83" in md and f"run:{ids[2]}" in md and "| 0.10 " in md

    cifar = _row(build_table("cifar10", df), SSC)
    assert cifar["search_gpu_days_mean"] == pytest.approx(2.0)  # from the lineage's search run


def test_demo_table_rows_in_order(tmp_path):
    for seed, acc in ((1, 40.0), (2, 44.0)):
        write_run(tmp_path, "demo/search", seed, {"best_valid_acc": acc}, kind="search")
    # Old training runs chose their "best valid" epoch on test data: not shown as validation.
    write_run(
        tmp_path,
        "demo/train",
        1,
        {"best_valid_acc": 40.0, "params_m": 0.05, "test_error_top1": 61.0},
        wall=30.0,
        device_count=0,
    )
    write_run(
        tmp_path,
        "demo/train",
        2,
        {"best_valid_acc": 44.0, "params_m": 0.05, "test_error_top1": 57.0},
        wall=40.0,
        device_count=0,
    )
    # The random cell trained on the same budget: the demo's baseline row.
    write_run(
        tmp_path,
        "demo/train_random",
        1,
        {"params_m": 0.04, "test_error_top1": 65.0},
        wall=20.0,
        device_count=0,
    )
    table = build_table("demo", load_runs(tmp_path))
    assert list(table["experiment"]) == ["demo/search", "demo/train", "demo/train_random"]
    baseline = _row(table, "demo/train_random")
    assert baseline["seeds"] == 1 and baseline["test_error_mean"] == 65.0
    search = _row(table, "demo/search")
    assert search["seeds"] == 2 and search["valid_acc_mean"] == 42.0
    train = _row(table, "demo/train")
    assert train["seeds"] == 2 and math.isnan(train["valid_acc_mean"])
    assert train["test_error_mean"] == 59.0
    assert train["wall_seconds_mean"] == 35.0 and train["params_mean"] == 0.05
    md = format_table(table, "markdown")
    assert "42.00 ± 2.83" in md and "35.0 ± 7.1" in md and "59.00 ± 2.83" in md


def test_smoke_runs_and_other_configs_are_left_out(tmp_path):
    write_run(tmp_path, SSC, 1, {"test_error_top1": 2.0})
    write_run(tmp_path, SSC, 2, {"test_error_top1": 2.2})
    write_run(tmp_path, SSC, 3, {"test_error_top1": 90.0}, smoke=True)
    write_run(
        tmp_path,
        SSC,
        1,
        {"test_error_top1": 30.0},
        config_hash="feed00000000",
        gin_params=["EPOCHS=5"],
    )
    write_run(
        tmp_path,
        SSC,
        2,
        {"test_error_top1": 30.0},
        config_hash="feed00000000",
        gin_params=["EPOCHS=5"],
    )
    write_run(
        tmp_path,
        SSC,
        3,
        {"test_error_top1": 30.0},
        config_hash="feed00000000",
        gin_params=["EPOCHS=5"],
    )
    with pytest.warns(UserWarning, match="leaves 3 runs out"):
        row = _row(build_table("cifar10", load_runs(tmp_path)), SSC)
    assert row["seeds"] == 2 and row["test_error_mean"] == pytest.approx(2.1)
    assert row["config_hash"] == "c0ffee000000" and row["runs_left_out"] == 3


def test_extra_experiments_get_their_own_rows(tmp_path):
    write_run(tmp_path, "cifar10/my_new_ops", 1, {"test_error_top1": 3.0}, genotype_name="MY_CELL")
    table = build_table("cifar10", load_runs(tmp_path))
    assert len(table) == 21
    row = table.iloc[-1]
    assert row["experiment"] == "cifar10/my_new_ops" and row["architecture"] == "MY_CELL"
    assert math.isnan(row["paper_test_error"]) and row["test_error_mean"] == 3.0


def test_empty_store_builds_every_table(tmp_path):
    df = load_runs(tmp_path)
    assert df.empty and "experiment" in df.columns
    for name in table_names():
        table = build_table(name, df)
        for fmt in ("markdown", "latex", "csv"):
            assert format_table(table, fmt)


def test_unknown_table_and_format_are_user_errors(store):
    assert table_names() == [
        "cifar10",
        "imagenet",
        "search",
        "demo",
        "hyperparameter",
        "ablation",
        "darts_cifar10",
        "darts_ptb",
        "darts_imagenet",
        "darts_wt2",
        "darts_family",
        "demo_family",
        "demo_lm",
        "nb201",
    ]
    with pytest.raises(UserError, match="Unknown table 'cifar100'.*Did you mean: cifar10"):
        build_table("cifar100", load_runs(store))
    with pytest.raises(UserError, match="markdown"):
        format_table(build_table("demo", load_runs(store)), "html")
