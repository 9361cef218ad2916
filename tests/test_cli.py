"""The command line and the experiment registry, end to end (a detectron2-style instant test).

Every named experiment runs with --smoke offline; its run folder holds every field that
docs/runs.md lists; user errors exit 2 with one paragraph and leave no run folder; completed runs
are skipped; promoted and run:ID genotypes carry their lineage into training runs.
"""

import ast
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from test_data import write_cifar10, write_cifar10_1

from sharpdarts.core import genotypes
from sharpdarts.core.nb201_arch import parse_arch
from sharpdarts.core.random_genotypes import sample_cell_genotype as random_genotype
from sharpdarts.face import cli, experiments
from sharpdarts.store import genotype_store

EXPERIMENTS = experiments.experiment_names()
PAPER_NAMES = [
    "cifar10/sharpsepconv_darts",
    "cifar10/darts_ssc_no_search",
    "cifar10/sharpdarts",
    "cifar10/sharpsepconv_darts_no_autoaugment",
    "cifar10/darts_ssc_no_search_no_autoaugment",
    "cifar10/sharpdarts_no_autoaugment",
    "cifar10/sharpsepconv_darts_max_w",
    "cifar10/multi_channel_max_w_path",
    "search/sharpsepconv_darts_scalar",
    "search/sharpsepconv_darts_max_w",
    "search/sharpdarts_scalar",
    "search/sharper_scalar",
    "search/sharper_max_w",
    "search/multi_channel_scalar",
    "search/multi_channel_max_w",
    "imagenet/sharpsepconv_darts",
    "imagenet/sharper_darts_max_w",
    "imagenet/sharpdarts_cmid96",
    "imagenet/sharpdarts_cmid32",
    "demo/search",
    "demo/train",
    "demo/train_random",
]


def run_cli(*args, capsys=None):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr() if capsys is not None else None
    return code, out


def run_folders(results: Path) -> list[Path]:
    return sorted(p.parent for p in (results / "runs").rglob("run.json"))


def test_every_issue_experiment_is_listed_with_table_and_row(capsys):
    code, out = run_cli("list", capsys=capsys)
    assert code == 0
    lines = {line.split()[0]: line for line in out.out.splitlines()}
    for name in PAPER_NAMES:
        assert name in lines
    assert "SharpSepConvDARTS" in lines["cifar10/sharpsepconv_darts"]
    assert "without AutoAugment" in lines["cifar10/sharpdarts_no_autoaugment"]
    assert lines["imagenet/sharpdarts_cmid96"].split()[1] == "imagenet"
    assert lines["search/sharper_max_w"].split()[1] == "search"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_binds_epochs_and_batch_size(name):
    text = experiments.experiment_path(name).read_text()
    assert text.startswith("#"), "each experiment opens with a comment naming its source"
    assert "EPOCHS = " in text and "BATCH_SIZE = " in text


def gin_tuple(operative: str, name: str) -> tuple | None:
    """A tuple binding's value in an operative config, or None when it is not bound."""
    found = re.search(rf"^{re.escape(name)} = (\([^)]*\))", operative, flags=re.M)
    return ast.literal_eval(found.group(1)) if found else None


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_with_smoke(name, tmp_path, capsys):
    if name == "demo/train":  # demo/train trains the demo's promoted genotype
        genotype_store.promote("DEMO", genotypes.get("DARTS_V2"), {"run_id": "test"})
    if name == "demo/lm_train":  # and demo/lm_train the language-model demo's
        genotype_store.promote("DEMO_RNN", genotypes.get("DARTS_V2_RNN"), {"run_id": "test"})
    if name == "demo/train_random":  # and its baseline, a random cell `make demo` adds
        genotype_store.promote("DEMO_RANDOM", random_genotype(1), {"random": True, "seed": 1})
    bindings = []
    if name == "nb201/search_rsps":  # RSPS scores 4 random cells an epoch, not its 100: the
        bindings = ["--gin_param", "random_selection.num=4"]  # same path, a 25th of the cost
    results = tmp_path / "results"
    code, out = run_cli(
        "run", name, "--smoke", "--seed", 3, *bindings, "--results", results, capsys=capsys
    )
    assert code == 0, out.err
    (folder,) = run_folders(results)
    assert str(folder) in out.out
    info = json.loads((folder / "run.json").read_text())
    for key in (
        "experiment",
        "seed",
        "command",
        "git",
        "config_hash",
        "started",
        "ended",
        "wall_seconds",
        "device",
        "device_count",
        "packages",
        "status",
        "final",
    ):
        assert key in info, key
    assert info["experiment"] == name and info["seed"] == 3 and info["status"] == "completed"
    assert set(info["git"]) >= {"commit", "branch", "dirty"}
    if info["git"]["dirty"]:
        assert (folder / "git.diff").is_file()
    for file in ("config.gin", "operative_config.gin", "metrics.jsonl", "checkpoint.pt"):
        assert (folder / file).is_file(), file
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["epoch"] for r in records]
    # Every epoch trained on at least one batch: smoke sizes under which the weights' loader
    # gives no full batch (e.g. 4 training images a half, batch 8, drop_last) record a loss
    # of 0.0 and would otherwise pass.
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses and all(loss > 0 for loss in losses), losses
    if "random_search" in info:  # the samples' trainings first, then the winner's, the run's
        assert epochs == list(range(1, len(epochs) + 1))
        epochs = [r["phase_epoch"] for r in records if r["phase"] == "final"]
    operative = (folder / "operative_config.gin").read_text()
    # A staged search (P-DARTS, DrNAS) runs its EPOCHS in each stage, one after the other.
    staged = gin_tuple(operative, "progressive_stages.layers") or gin_tuple(
        operative, "drnas_stages.partial_channels"
    )
    stages = len(staged or (0,))
    assert epochs == list(range(1, 2 * stages + 1))
    assert "EPOCHS = 2" in operative
    every = re.search(r"^collapse_metrics\.every = (\d+)$", operative, flags=re.M)
    if every and "hessian_eigenvalue" in records[0]:
        # smoke.gin's collapse_metrics.last_epoch = False: the eigenvalue is measured by the
        # `every` rule alone (epoch 1 of 2 with every = 2), and its value is a number there.
        every = int(every.group(1))
        measured = [r["epoch"] for r in records if r["hessian_eigenvalue"] is not None]
        assert measured == [e for e in epochs if every and (e - 1) % every == 0]
        assert all(isinstance(r["hessian_eigenvalue"], float) for r in records[:1] if every)
    final = info["final"]
    if info["kind"] == "search" and isinstance(final["genotype"], str):  # NAS-Bench-201's
        assert parse_arch(final["genotype"]) and parse_arch(final["best_genotype"])
    elif info["kind"] == "search":
        genotype = genotypes.from_dict(final["genotype"])
        assert genotype.layout in ("cell", "edges", "path", "recurrent") and final["best_genotype"]
    elif "test_ppl" in final:  # a language model: test perplexity
        assert final["test_ppl"] > 1.0 and final["params_m"] > 0
    else:
        assert 0.0 <= final["test_error_top1"] <= 100.0 and final["params_m"] > 0
        if "random_search" not in info:  # a random search names no cell: it draws them
            assert info["genotype"]["name"] and info["genotype"]["genotype"]
    if "random_search" in info:
        assert final["genotype"] == final["samples"][final["winner_sample"]]["genotype"]


def test_smoke_measures_the_eigenvalue_once_and_a_search_also_in_its_last_epoch():
    """collapse_metrics.last_epoch: True (the default, R-DARTS) adds the last epoch to the
    ``every`` rule's; smoke.gin's False leaves epoch 1 alone of a smoke run's 2."""
    from sharpdarts.engine.collapse import CollapseSettings, CollapseTracker

    def due(epochs, **settings):
        tracker = CollapseTracker([], [], 1, 0, CollapseSettings(**settings))
        return [e for e in range(1, epochs + 1) if tracker.due(e, epochs)]

    assert due(2) == [1, 2] and due(6, every=4) == [1, 5, 6]
    assert due(2, last_epoch=False) == [1] and due(6, every=4, last_epoch=False) == [1, 5]
    assert "collapse_metrics.last_epoch = False" in experiments.smoke_gin().read_text()


def test_completed_run_is_skipped(tmp_path, capsys):
    # One epoch each: skipping depends on the request, not on how long the run was.
    args = (
        "run",
        "cifar10/sharpdarts",
        "--smoke",
        "--gin_param",
        "EPOCHS=1",
        "--results",
        tmp_path,
    )
    assert run_cli(*args, capsys=capsys)[0] == 0
    code, out = run_cli(*args, capsys=capsys)
    assert code == 0 and "already completed" in out.out
    assert len(run_folders(tmp_path)) == 1
    # Another seed or binding is another run.
    assert run_cli(*args, "--seed", 1, capsys=capsys)[0] == 0
    assert run_cli(*args, "--gin_param", "NetworkCIFAR.C=4", capsys=capsys)[0] == 0
    assert len(run_folders(tmp_path)) == 3


@pytest.fixture
def bad_gin(tmp_path):
    path = tmp_path / "bad.gin"
    path.write_text("include 'gin/protocols/train_cifar10.gin'\nEPOCHS = 2\nNetworkCIFAR.C = = 3\n")
    return path


@pytest.mark.parametrize(
    "case",
    [
        "experiment",
        "binding",
        "gin_file",
        "genotype",
        "run_genotype",
        "dataset",
        "table",
        "promote_builtin",
        "bad_network",
        "continuation",
    ],
)
def test_user_errors_exit_2_without_traceback_or_run_folder(case, tmp_path, capsys, bad_gin):
    results = tmp_path / "results"
    smoke = ("--smoke", "--results", results)
    args = {
        "experiment": ("run", "cifar10/sharpdart", *smoke),
        "binding": ("run", "cifar10/sharpdarts", "--gin_param", "NetworkCIFAR.widht=3", *smoke),
        "gin_file": ("run", bad_gin, *smoke),
        "genotype": ("run", "cifar10/sharpdarts", "--gin_param", "GENOTYPE='SHARP_DART'", *smoke),
        "run_genotype": ("run", "cifar10/sharpdarts", "--gin_param", "GENOTYPE='run:nope'", *smoke),
        "dataset": (
            "run",
            "cifar10/sharpdarts",
            "--data",
            tmp_path / "empty",
            "--results",
            results,
        ),
        "table": ("table", "cifar100", "--results", results),
        "promote_builtin": ("genotype", "promote", "DARTS", "MINE", "--results", results),
        "bad_network": (
            "run",
            "cifar10/sharpdarts",
            "--gin_param",
            "NetworkCIFAR.layers=-1",
            *smoke,
        ),
        "continuation": ("run", "imagenet/sharpsepconv_darts_continue", "--results", results),
    }[case]
    code, out = run_cli(*args, capsys=capsys)
    assert code == 2
    assert "Traceback" not in out.err and out.err.startswith("sharpdarts: error:")
    assert "\n\n" not in out.err.strip()
    assert not (results / "runs").exists() or not run_folders(results)
    hints = {
        "experiment": "cifar10/sharpdarts",
        "gin_file": "line 3",
        "genotype": "SHARP_DARTS",
        "dataset": "--data",
        "table": "cifar10",
        "binding": "widht",
        "continuation": "INIT_FROM",
    }
    if case in hints:
        assert hints[case] in " ".join(out.err.split())


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """A results root holding one finished smoke search, made once for the tests below that
    read a search (promotion and lineage, the tables); each copies it into its own tmp_path."""
    results = tmp_path_factory.mktemp("searched") / "results"
    code = cli.main(
        ["run", "search/sharpsepconv_darts_scalar", "--smoke", "--results", str(results)]
    )
    assert code == 0
    return results


def copy_results(searched: Path, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(searched, results)
    return results


def test_search_genotype_promotion_and_lineage(tmp_path, capsys, searched):
    # The shared search (SearchNetwork, scalar weighting): promotion and lineage read only
    # its run folder, the same for any cell-layout search.
    results = copy_results(searched, tmp_path)
    (search_dir,) = run_folders(results)
    search_info = json.loads((search_dir / "run.json").read_text())
    run_id = search_info["run_id"]
    code, out = run_cli(
        "genotype", "promote", run_id, "MY_CELL", "--results", results, capsys=capsys
    )
    assert code == 0 and "MY_CELL" in out.out
    assert genotypes.get("MY_CELL") == genotypes.from_dict(search_info["final"]["genotype"])
    assert genotypes.lineage("MY_CELL")["run_id"] == run_id
    assert genotypes.lineage("MY_CELL")["commit"] == search_info["git"]["commit"]
    code, out = run_cli("genotype", "show", "MY_CELL", capsys=capsys)
    assert code == 0 and json.loads(out.out)["lineage"]["run_id"] == run_id
    # Train with it by name, and straight from the run.
    for binding in ("GENOTYPE='MY_CELL'", f"GENOTYPE='run:{run_id}'"):
        assert (
            run_cli(
                "run",
                "cifar10/sharpsepconv_darts",
                "--smoke",
                "--results",
                results,
                "--gin_param",
                binding,
                "--gin_param",
                "EPOCHS=1",  # the lineage is recorded before the first epoch
                capsys=capsys,
            )[0]
            == 0
        )
    trains = [
        json.loads((d / "run.json").read_text())
        for d in run_folders(results)
        if d.parent.name == "sharpsepconv_darts" and d.parent.parent.name == "cifar10"
    ]
    sources = sorted(t["genotype"]["source"] for t in trains)
    assert sources == ["promoted", "run"]
    for t in trains:
        lineage = t["genotype"].get("lineage") or t["genotype"]
        assert lineage["run_id"] == run_id
    # A second promotion under the same name is refused; --replace allows it.
    assert (
        run_cli("genotype", "promote", run_id, "MY_CELL", "--results", results, capsys=capsys)[0]
        == 2
    )
    assert (
        run_cli(
            "genotype",
            "promote",
            run_id,
            "MY_CELL",
            "--best",
            "--replace",
            "--results",
            results,
            capsys=capsys,
        )[0]
        == 0
    )


def test_info_reports_the_papers_size(capsys):
    code, out = run_cli("info", "SHARPSEPCONV_DARTS", capsys=capsys)
    assert code == 0
    report = json.loads(out.out)
    assert report["parameters"] == 3_555_622 and report["parameters_with_auxiliary"] == 4_032_048
    assert round(report["multiply_adds"] / 1e6, 1) == 578.6


def test_train_on_real_cifar10_files_and_evaluate_the_checkpoint(tmp_path, capsys):
    data = tmp_path / "data"
    write_cifar10(data, per_batch=4)
    write_cifar10_1(data, n=6)
    results = tmp_path / "results"
    small = ["--gin_param", "NetworkCIFAR.C=8", "--gin_param", "NetworkCIFAR.layers=3"]
    code, out = run_cli(
        "run",
        "cifar10/sharpsepconv_darts",
        "--allow-dirty",
        "--data",
        data,
        "--results",
        results,
        "--gin_param",
        "EPOCHS=1",
        "--gin_param",
        "BATCH_SIZE=4",
        *small,
        capsys=capsys,
    )
    assert code == 0, out.err
    (train_dir,) = run_folders(results)
    final = json.loads((train_dir / "run.json").read_text())["final"]
    assert "cifar10_1_error" in final  # CIFAR-10 runs are also tested on CIFAR-10.1
    code, out = run_cli(
        "evaluate",
        train_dir,
        "--arch",
        "SHARPSEPCONV_DARTS",
        "--data",
        data,
        "--results",
        results,
        *small,
        capsys=capsys,
    )
    assert code == 0, out.err
    evaluation = [d for d in run_folders(results) if "evaluate" in str(d)]
    assert len(evaluation) == 1
    info = json.loads((evaluation[0] / "run.json").read_text())
    assert info["kind"] == "evaluate"
    assert info["final"]["test_error_top1"] == pytest.approx(final["test_error_top1"])
    assert info["final"]["cifar10_1_error"] == pytest.approx(final["cifar10_1_error"])


def test_plot_commands(tmp_path, capsys):
    out = tmp_path / "cells.svg"
    assert run_cli("plot", "genotype", "SHARPSEPCONV_DARTS", "--out", out, capsys=capsys)[0] == 0
    assert "sep_conv_3x3" in out.read_text()
    lr = tmp_path / "lr.png"
    assert (
        run_cli(
            "plot",
            "lr",
            "--epochs",
            20,
            "--max_lr",
            0.1,
            "--min_lr",
            1e-4,
            "--exponent_order",
            2,
            10,
            "--warmup_epochs",
            2,
            "--out",
            lr,
            capsys=capsys,
        )[0]
        == 0
    )
    assert lr.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_cli("plot", "genotype", "NOT_A_CELL", "--out", out, capsys=capsys)[0] == 2
    assert (
        run_cli(
            "plot",
            "lr",
            "--epochs",
            5,
            "--max_lr",
            0.1,
            "--min_lr",
            1e-4,
            "--out",
            tmp_path / "lr.bmp",
            capsys=capsys,
        )[0]
        == 2
    )


def test_ten_concurrent_runs_get_ten_complete_folders(tmp_path):
    """Ten runs (forked processes, released together, so they meet in the store at once)."""
    from spawning import forked_output, race_forked

    results = tmp_path / "results"
    logs = tmp_path / "logs"
    logs.mkdir()

    def one_run(seed: int):
        return lambda: cli.main(
            [
                "run",
                "cifar10/sharpdarts",
                "--smoke",
                "--seed",
                str(seed),
                "--gin_param",
                "EPOCHS=1",
                "--results",
                str(results),
            ]
        )

    codes = race_forked([one_run(seed) for seed in range(10)], logs)
    assert codes == [0] * 10, [forked_output(logs, i)[-500:] for i in range(10) if codes[i]]
    folders = run_folders(results)
    assert len(folders) == 10 and len({f.name for f in folders}) == 10
    infos = [json.loads((f / "run.json").read_text()) for f in folders]
    assert sorted(i["seed"] for i in infos) == list(range(10))
    assert all(i["status"] == "completed" for i in infos)
    assert all(torch.load(f / "checkpoint.pt", weights_only=True)["epoch"] == 1 for f in folders)


def test_tables_command_writes_every_table_and_the_figures(tmp_path, capsys, searched):
    results = copy_results(searched, tmp_path)
    (results / "runs" / "cifar10" / "broken" / "20260101T000000000Z-abcdef").mkdir(parents=True)
    code, out = run_cli("tables", "--results", results, capsys=capsys)
    assert code == 0
    tables = results / "tables"
    for name in ("cifar10", "imagenet", "search", "hyperparameter", "demo"):
        assert (tables / f"{name}.md").read_text().startswith("|")
    assert "SharpSepConvDARTS" in (tables / "cifar10.md").read_text()
    figures = {p.name for p in (tables / "figures").iterdir()}
    stem = "search-sharpsepconv_darts_scalar"
    assert {f"{stem}-curves.svg", f"{stem}-genotype.svg", f"{stem}-alphas.svg"} <= figures
    assert "skipped 1 unreadable run folder" in out.err


def test_continuation_starts_from_another_runs_weights(tmp_path, capsys):
    results = tmp_path / "results"
    one_epoch = ("--gin_param", "EPOCHS=1")  # a checkpoint to start from is all it needs
    assert (
        run_cli(
            "run",
            "imagenet/sharpsepconv_darts",
            "--smoke",
            *one_epoch,
            "--results",
            results,
            capsys=capsys,
        )[0]
        == 0
    )
    (first,) = run_folders(results)
    code, out = run_cli(
        "run",
        "imagenet/sharpsepconv_darts_continue",
        "--smoke",
        *one_epoch,
        "--results",
        results,
        "--gin_param",
        f"INIT_FROM='run:{first.name}'",
        capsys=capsys,
    )
    assert code == 0, out.err
    (second,) = [d for d in run_folders(results) if d != first]
    assert json.loads((second / "run.json").read_text())["init_from"] == str(first)
    operative = " ".join((second / "operative_config.gin").read_text().replace("\\\n", "").split())
    assert f"INIT_FROM = '{first}'" in operative
