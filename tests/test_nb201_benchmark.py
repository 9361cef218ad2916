"""NAS-Bench-201's ground truth: small benchmark files in the real formats, read through the
official packages (nats_bench, nas_201_api); the query command; random search and REA against
the file, equal to the authors' code; and the NAS-Bench-201 table."""

from __future__ import annotations

import json
import random
import statistics
import sys

import pytest
from nb201_files import (
    ARCHS,
    DATASETS,
    EPOCHS_200,
    accuracy,
    epoch_seconds,
    flops_m,
    params_mb,
    write_nas201_file,
    write_nats_archive,
)

from sharpdarts.core import nb201_search
from sharpdarts.core.nb201_arch import OPS, arch_string, parse_arch
from sharpdarts.face import cli
from sharpdarts.store import store
from sharpdarts.store.nb201_benchmark import TABLE_METRICS, open_benchmark
from sharpdarts.store.results import load_runs
from sharpdarts.store.tables import build_table, format_table

ALL_CONV = arch_string(["nor_conv_3x3"] * 6)
NOT_LISTED = (
    "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A NATS-Bench archive of 64 cells and a NAS-Bench-201 .pth of its first six."""
    folder = tmp_path_factory.mktemp("nb201")
    return {"nats": write_nats_archive(folder), "pth": write_nas201_file(folder, ARCHS[:6])}


def cli_json(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out[out.out.index("{") :])


def expected(arch, hp, dataset, setname):
    """What the test file's trials average to (nb201_files' formulas)."""
    seeds = {"12": {"cifar10-valid": [111, 777]}, "200": {}}[hp].get(
        dataset, [111] if hp == "12" else [777, 888, 999]
    )
    last = (12 if hp == "12" else EPOCHS_200) - 1
    return statistics.fmean(accuracy(arch, hp, dataset, setname, s, last) for s in seeds)


@pytest.mark.parametrize("kind", ["nats", "pth"])
def test_each_file_kind_answers_its_records_through_the_official_package(files, kind):
    bench = open_benchmark(files[kind])
    assert bench.package == ("nats_bench" if kind == "nats" else "nas_201_api")
    arch = ARCHS[5]
    found = bench.query(arch)
    assert found["index"] == 5 and found["hp"] == "200"
    c100 = found["datasets"]["cifar100"]
    assert c100["valid"] == pytest.approx(expected(arch, "200", "cifar100", "x-valid"))
    assert c100["test"] == pytest.approx(expected(arch, "200", "cifar100", "x-test"))
    assert c100["train"] == pytest.approx(expected(arch, "200", "cifar100", "train"))
    assert c100["params_m"] == pytest.approx(params_mb(arch, 100))
    assert c100["multiply_adds_m"] == pytest.approx(flops_m(arch, 100))
    assert c100["train_seconds"] == pytest.approx(EPOCHS_200 * epoch_seconds(arch, "cifar100"))
    # CIFAR-10 trained on train + valid has a test split only; on the train half, both.
    assert set(found["datasets"]["cifar10"]) >= {"train", "test"}
    assert "valid" not in found["datasets"]["cifar10"]
    assert found["datasets"]["cifar10-valid"]["valid"] == pytest.approx(
        expected(arch, "200", "cifar10-valid", "x-valid")
    )
    short = bench.query(arch, hp="12")["datasets"]["cifar10-valid"]
    assert short["valid"] == pytest.approx(expected(arch, "12", "cifar10-valid", "x-valid"))
    figures = bench.table_figures(arch)
    assert list(figures) == list(TABLE_METRICS)
    assert figures["nb201_cifar10_test_acc"] == pytest.approx(
        expected(arch, "200", "cifar10", "ori-test")
    )
    assert figures["nb201_imagenet16_valid_acc"] == pytest.approx(
        expected(arch, "200", "ImageNet16-120", "x-valid")
    )
    assert set(DATASETS) == set(found["datasets"])


def test_the_first_release_has_12_epoch_figures_on_cifar10_valid_only(tmp_path):
    name = "NAS-Bench-201-v1_0-e61699.pth"
    bench = open_benchmark(write_nas201_file(tmp_path, ARCHS[:2], name, ("cifar10-valid",)))
    assert list(bench.query(ARCHS[1], hp="12")["datasets"]) == ["cifar10-valid"]
    assert list(bench.query(ARCHS[1])["datasets"]) == list(DATASETS)


def test_both_packages_agree_on_the_same_records(files):
    nats, pth = open_benchmark(files["nats"]), open_benchmark(files["pth"])
    for arch in ARCHS[:6]:
        assert nats.query(arch) == {**pth.query(arch), "benchmark": nats.path.name}


def test_query_command_takes_an_arch_string_or_a_search_run(files, tmp_path, capsys):
    found = cli_json(capsys, "nb201", "query", ARCHS[3], "--benchmark", files["pth"])
    assert found["arch"] == ARCHS[3] and found["index"] == 3
    results = tmp_path / "results"
    run = cli_json(
        capsys, "nb201", "rea", "--benchmark", files["nats"], "--seed", 1, "--results", results
    )
    run_id = next((results / "runs" / "nb201" / "search_rea").iterdir()).name
    again = cli_json(
        capsys, "nb201", "query", run_id, "--benchmark", files["nats"], "--results", results
    )
    assert again["arch"] == run["genotype"] == ALL_CONV
    assert again["datasets"]["cifar10"]["test"] == pytest.approx(run["nb201_cifar10_test_acc"])


def _error(capsys, monkeypatch, *argv):
    monkeypatch.delenv("SHARPDARTS_NB201_BENCHMARK", raising=False)
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    return " ".join(err.split())


def test_without_the_file_or_the_package_the_command_says_how_to_get_them(
    files, tmp_path, capsys, monkeypatch
):
    for argv in (
        ("nb201", "query", ARCHS[0]),
        ("nb201", "query", ARCHS[0], "--benchmark", tmp_path / "missing.pth"),
        ("nb201", "random", "--benchmark", tmp_path),
    ):
        err = _error(capsys, monkeypatch, *argv)
        assert "NAS-Bench-201-v1_1-096897.pth" in err and "NATS-tss-v1_0-3ffb9-simple" in err
        assert "pip install nats_bench" in err and "pip install nas-bench-201" in err
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # as if it were not installed
    err = _error(capsys, monkeypatch, "nb201", "query", ARCHS[0], "--benchmark", files["nats"])
    assert "needs the nats_bench package" in err and "pip install nats_bench" in err
    garbage = tmp_path / "NAS-Bench-201-v1_0-e61699.pth"
    garbage.write_bytes(b"not a benchmark")
    err = _error(capsys, monkeypatch, "nb201", "query", ARCHS[0], "--benchmark", garbage)
    assert "could not be read as a NAS-Bench-201 file" in err


def test_bad_cells_and_runs_without_one_are_user_errors(files, tmp_path, capsys, monkeypatch):
    err = _error(capsys, monkeypatch, "nb201", "query", "|bad~0|", "--benchmark", files["pth"])
    assert "is not a NAS-Bench-201 arch string" in err
    err = _error(capsys, monkeypatch, "nb201", "query", NOT_LISTED, "--benchmark", files["nats"])
    assert "does not list the cell" in err
    err = _error(capsys, monkeypatch, "nb201", "query", ARCHS[40], "--benchmark", files["pth"])
    assert "does not list the cell" in err
    run, _ = store.start_run(tmp_path, "nb201/search_darts", 0, "x\n", command=["t"], kind="search")
    run.finish({"genotype": {"normal": []}})
    err = _error(
        capsys, monkeypatch, "nb201", "query", run.run_id, "--benchmark", files["nats"],
        "--results", tmp_path,
    )  # fmt: skip
    assert "has no NAS-Bench-201 cell" in err
    err = _error(capsys, monkeypatch, "nb201", "rea", "--benchmark", files["nats"],
                 "--population", 0, "--results", tmp_path)  # fmt: skip
    assert "at least 1" in err


# The authors' NAS-Bench-201 baselines (D-X-Y/AutoDL-Projects, commit f46486e:
# exps/NAS-Bench-201-algos/RANDOM.py's search loop and R_EA.py's regularized_evolution,
# train_and_eval, random_architecture_func and mutate_arch_func, with op_names = the two ops of
# the test file, a CellStructure stand-in with its `nodes` and `tostr()`, their wall-clock time
# read as 0) run on the archive that write_nats_archive writes, through nats_bench 1.8, after
# random.seed(seed): what they visited and found.
AUTHORS = {
    ("random", 1, "cifar10-valid"): (57, 1, 88.19, 11844.0),
    ("rea", 1, "cifar10-valid"): (52, 0, 89.8, 11834.0),
    ("random", 2, "cifar10-valid"): (56, 0, 89.8, 11872.0),
    ("rea", 2, "cifar100"): (49, 0, 65.1, 11798.0),
}
# their best cells
BEST = (
    ALL_CONV,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
)
AUTHORS_REA_FIRST = [
    "|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|skip_connect~0|skip_connect~1|+|nor_conv_3x3~0|skip_connect~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|nor_conv_3x3~2|",
]


@pytest.mark.parametrize("method,seed,dataset", list(AUTHORS))
def test_random_search_and_rea_equal_the_authors_code(files, method, seed, dataset):
    bench = open_benchmark(files["nats"])
    rng = random.Random(seed)

    def simulate(arch):
        index = bench.index(arch)
        return bench.simulate(
            index, dataset, "12", rng.choice(bench.trial_seeds(index, dataset, "12"))
        )

    ops = bench.ops()
    assert ops == ("skip_connect", "nor_conv_3x3")
    if method == "random":
        history = nb201_search.random_search(simulate, ops, rng, 12000)
    else:
        history = nb201_search.regularized_evolution(simulate, ops, rng, 12000, 10, 3)
    count, best, acc, total = AUTHORS[(method, seed, dataset)]
    found = nb201_search.best(history)
    assert (len(history), found.arch, found.valid_acc) == (count, BEST[best], acc)
    assert history[-1].total_seconds == total
    if (method, seed) == ("rea", 1):
        assert [e.arch for e in history[:3]] == AUTHORS_REA_FIRST


def test_a_mutation_changes_one_edge_to_another_op():
    rng = random.Random(0)
    for _ in range(50):
        parent = nb201_search.random_cell(OPS, rng)
        child = nb201_search.mutate(parent, OPS, rng)
        changed = [(a, b) for a, b in zip(parse_arch(parent), parse_arch(child)) if a != b]
        assert len(changed) == 1


def test_a_search_is_a_run_folder_and_is_skipped_when_repeated(files, tmp_path, capsys):
    argv = ["nb201", "random", "--benchmark", files["nats"], "--seed", 2, "--results", tmp_path]
    final = cli_json(capsys, *argv)
    (folder,) = (tmp_path / "runs" / "nb201" / "search_random").iterdir()
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "completed" and info["kind"] == "search" and info["seed"] == 2
    assert info["final"] == final and final["genotype"] == ALL_CONV
    assert final["archs_evaluated"] == 56 and final["search_seconds"] == 11872.0
    assert info["benchmark"] == {"file": "NATS-tss-v1_0-3ffb9-simple", "package": "nats_bench"}
    epochs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 56 and epochs[-1]["simulated_seconds"] == 11872.0
    assert epochs[final["best_epoch"] - 1]["arch"] == ALL_CONV
    assert cli.main([str(a) for a in argv]) == 0
    assert "already completed" in capsys.readouterr().out


def test_the_nb201_table_shows_the_papers_rows_as_printed_and_ours(files, tmp_path, capsys):
    for seed in (1, 2):
        cli_json(capsys, "nb201", "rea", "--benchmark", files["nats"], "--seed", seed,
                 "--results", tmp_path)  # fmt: skip
    bench = open_benchmark(files["nats"])
    # A search run written through the store: recorded figures join, a run without them not.
    for seed, arch in ((1, ARCHS[5]), (2, ARCHS[6]), (3, None)):
        run, _ = store.start_run(tmp_path, "nb201/search_gdas", seed, "g\n", command=["t"],
                                 kind="search")  # fmt: skip
        run.finish({"genotype": arch, **(bench.table_figures(arch) if arch else {})})
    table = build_table("nb201", load_runs(tmp_path))
    text = format_table(table, "markdown")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:] if "|" in line}
    assert "54.30 ± 0.00" in rows["DARTS-V1"] and "10889.87" in rows["DARTS-V1"]
    assert "93.61 ± 0.09" in rows["GDAS"] and "80.42 ± 3.58" in rows["RSPS"]
    gdas = table[table["experiment"] == "nb201/search_gdas"].iloc[0]
    assert gdas["seeds"] == 2
    tests = [bench.table_figures(a)["nb201_cifar10_test_acc"] for a in ARCHS[5:7]]
    assert gdas["c10_test_mean"] == pytest.approx(statistics.fmean(tests))
    assert gdas["c10_test_std"] == pytest.approx(statistics.stdev(tests))
    rea = table[table["experiment"] == "nb201/search_rea"].iloc[0]
    assert rea["seeds"] == 2 and rea["in16_test_mean"] == pytest.approx(
        bench.table_figures(ALL_CONV)["nb201_imagenet16_test_acc"]
    )
    assert f"{rea['c10_valid_mean']:.2f} ± 0.00" in rows["nb201/search_rea"]


def test_every_table_and_figure_is_made_with_nb201_search_runs(files, tmp_path, capsys):
    # `sharpdarts tables` draws a search's cell: an NB201 arch string has none to draw.
    cli_json(capsys, "nb201", "random", "--benchmark", files["nats"], "--results", tmp_path)
    assert cli.main(["tables", "--results", str(tmp_path), "--out", str(tmp_path / "t")]) == 0
    assert "nb201/search_random" in (tmp_path / "t" / "nb201.md").read_text()
