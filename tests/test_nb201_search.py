"""NAS-Bench-201 searches (experiments/nb201/search_*): each runs in smoke mode and records the
benchmark's arch strings; given a benchmark file (a small one written in the real on-disk
format, tests/nb201_files.py) a search records its current cell's benchmark accuracies each
epoch and its final cell's in run.json ``final``, and `sharpdarts table nb201` puts the run
beside the paper's row; GDAS's temperature follows its schedule on the NAS-Bench-201 supernet,
and a killed GDAS search resumes to the same alphas as an uninterrupted one."""

from __future__ import annotations

import contextlib
import io
import json
import math
import statistics
from pathlib import Path

import gin
import pytest
from nb201_files import ARCHS, EPOCHS_200, accuracy, write_nats_archive
from test_engine import (  # the search job's test helpers (tests/test_engine.py)
    killed_search_resumes_exactly,
)

from sharpdarts.core.nb201_arch import parse_arch
from sharpdarts.engine import search_job
from sharpdarts.errors import UserError
from sharpdarts.face import cli, nb201_args, runner
from sharpdarts.nn.nb201 import NB201SearchNetwork
from sharpdarts.nn.relaxation import linear_tau
from sharpdarts.store.nb201_benchmark import TABLE_METRICS, nb201_benchmark_scores

EXPERIMENTS = [
    "nb201/search_darts_first_order",
    "nb201/search_darts_second_order",
    "nb201/search_gdas",
    "nb201/search_drnas",
    "nb201/search_snas",
    "nb201/search_pc_darts",
]
# What `--smoke` makes of an experiment (gin/smoke.gin and the runner's synthetic CIFAR-10),
# written out as bindings, so that a run without --smoke, which the table counts, searches
# exactly as the smoke run did.
AS_SMOKE = [
    "build_datasets.name = 'synthetic'",
    "build_datasets.synthetic_shape = (3, 32, 32)",
    "build_datasets.synthetic_classes = 10",
    "build_datasets.synthetic_size = (16, 8)",
    "EPOCHS = 2",
    "BATCH_SIZE = 8",
    "NB201SearchNetwork.C = 4",
    "NB201SearchNetwork.N = 1",
    "search.show_progress = False",
]
# The test file's figures (nb201_files' formulas), as the table's six metrics read them: the
# 200-epoch trainings' last epoch, averaged over their three trials.
SPLITS = {
    "nb201_cifar10_valid_acc": ("cifar10-valid", "x-valid"),
    "nb201_cifar10_test_acc": ("cifar10", "ori-test"),
    "nb201_cifar100_valid_acc": ("cifar100", "x-valid"),
    "nb201_cifar100_test_acc": ("cifar100", "x-test"),
    "nb201_imagenet16_valid_acc": ("ImageNet16-120", "x-valid"),
    "nb201_imagenet16_test_acc": ("ImageNet16-120", "x-test"),
}


def expected_figures(arch: str) -> dict[str, float]:
    return {
        key: statistics.fmean(
            accuracy(arch, "200", dataset, setname, seed, EPOCHS_200 - 1)
            for seed in (777, 888, 999)
        )
        for key, (dataset, setname) in SPLITS.items()
    }


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def run(*argv) -> dict:
    """Runs ``sharpdarts run ...`` in-process; returns the run's run.json and metrics.jsonl."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["run", *map(str, argv)])
    assert code == 0, err.getvalue()
    folder = Path(out.getvalue().strip().splitlines()[-1])
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {"info": json.loads((folder / "run.json").read_text()), "records": records}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """One smoke run of each NAS-Bench-201 search (seed 0), without a benchmark file."""
    results = tmp_path_factory.mktemp("smoke")
    runs = {name: run(name, "--smoke", "--results", results) for name in EXPERIMENTS}
    gin.clear_config()
    return runs


def test_each_search_records_the_benchmarks_arch_strings(smoke_runs):
    for name, found in smoke_runs.items():
        info, records = found["info"], found["records"]
        assert info["status"] == "completed" and info["experiment"] == name
        # DrNAS's two stages of EPOCHS each.
        assert [r["epoch"] for r in records] == [1, 2, 3, 4][: 4 if "drnas" in name else 2]
        for record in records:
            assert parse_arch(record["genotype"])  # each epoch's cell, 'none' allowed
            assert len(record["alphas"]) == 6 and all(len(row) == 5 for row in record["alphas"])
            assert not any(key in record for key in TABLE_METRICS)  # no file: no figures
        final = info["final"]
        assert final["genotype"] == records[-1]["genotype"]
        assert parse_arch(final["best_genotype"])
        assert not any(key in final for key in TABLE_METRICS)


def test_with_the_benchmark_a_search_records_its_cells_figures_and_joins_the_table(
    smoke_runs, tmp_path, capsys
):
    smoke = smoke_runs["nb201/search_gdas"]
    cells = [r["genotype"] for r in smoke["records"]]
    # The test file lists the 64 cells of nb201_files and the cells this search visits.
    archive = write_nats_archive(
        tmp_path, ARCHS + [c for c in dict.fromkeys(cells) if c not in ARCHS]
    )
    results = tmp_path / "results"
    params = [a for binding in AS_SMOKE for a in ("--gin_param", binding)]
    argv = ["nb201/search_gdas", *params, "--benchmark", archive, "--allow-dirty"]
    found = run(*argv, "--results", results)
    # --benchmark stands for the scorer's two bindings, recorded as the run's own.
    assert found["info"]["gin_params"][-2:] == nb201_args.scorer_bindings(archive)
    assert cli.main(["run", *map(str, argv), "--results", str(results)]) == 0
    assert "already completed" in capsys.readouterr().out
    info, records = found["info"], found["records"]
    assert not info["smoke"] and [r["genotype"] for r in records] == cells  # the same search
    for record in records:  # the curve: each epoch's cell's benchmark accuracies
        want = expected_figures(record["genotype"])
        assert {k: record[k] for k in TABLE_METRICS} == pytest.approx(want)
    final = info["final"]
    assert {k: final[k] for k in TABLE_METRICS} == pytest.approx(expected_figures(cells[-1]))
    gin.clear_config()
    assert cli.main(["table", "nb201", "--results", str(results)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    (gdas,) = [line for line in lines if line.split("|")[1].strip() == "GDAS"]
    assert "93.61 ± 0.09" in gdas  # the paper's figure, beside ours
    assert f"{final['nb201_cifar10_test_acc']:.2f}" in gdas
    (darts,) = [line for line in lines if line.split("|")[1].strip() == "DARTS-V1"]
    assert "54.30 ± 0.00" in darts


def test_the_scorer_needs_a_file_and_an_arch_string(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        nb201_benchmark_scores(path=tmp_path / "nothing")
    scorer = nb201_benchmark_scores(path=write_nats_archive(tmp_path, ARCHS[:2]))
    assert scorer(ARCHS[1]) == pytest.approx(expected_figures(ARCHS[1]))
    with pytest.raises(UserError, match="not one"):
        scorer({"normal": [], "reduce": []})  # a DARTS-space genotype
    with pytest.raises(UserError, match="does not list"):
        scorer(ARCHS[5])


def test_gdas_tau_follows_its_schedule_on_the_nb201_supernet(tmp_path):
    runner.configure("nb201/search_gdas", ["EPOCHS = 3"], smoke=True, results=str(tmp_path))
    job = search_job.search(seed=0, build_only=True)
    assert isinstance(job.model, NB201SearchNetwork) and job.model.method == "gdas"
    assert job.params.arch_after_weights and job.params.skip_primitive is None
    taus = []
    for epoch in (1, 2, 3):  # the loop counts epochs from 1; xautodl's GDAS.py from 0
        job.start_epoch(epoch)
        taus.append(job.model.tau)
    assert taus == [linear_tau(e, 3, 10.0, 0.1) for e in range(3)]
    assert taus == pytest.approx([10.0, 5.05, 0.1])


def test_a_killed_gdas_nb201_search_resumes_with_the_same_alphas(tmp_path, monkeypatch):
    runner.configure("nb201/search_gdas", [], smoke=True, results=str(tmp_path))
    a, b = killed_search_resumes_exactly(tmp_path, monkeypatch)
    assert a["tau"] == b["tau"] == pytest.approx(0.1)


# The authors' settings of each search (docs/nb201.md "Searching the space"), read from
# D-X-Y/AutoDL-Projects at commit f46486e21b71ae6459a700be720d7648b5429569
# (scripts-search/NAS-Bench-201-algos/*.sh, exps/NAS-Bench-201-algos/*.py,
# configs/nas-benchmark/algos/DARTS.config, GDAS.config) and xiangning-chen/DrNAS at commit
# f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0 (201-space/train_search.py defaults):
# epochs, batch, (method, order, weights first), (SGD lr, momentum, nesterov, weight decay),
# (Adam lr, betas, weight decay).
SETTINGS = {
    "nb201/search_darts_first_order": (
        50, 64, ("darts", 1, True), (0.025, 0.9, True, 5e-4), (3e-4, (0.5, 0.999), 1e-3)
    ),
    "nb201/search_darts_second_order": (
        50, 64, ("darts", 2, False), (0.025, 0.9, True, 5e-4), (3e-4, (0.5, 0.999), 1e-3)
    ),
    "nb201/search_gdas": (
        250, 64, ("gdas", 1, True), (0.025, 0.9, True, 5e-4), (3e-4, (0.5, 0.999), 1e-3)
    ),
    "nb201/search_drnas": (
        50, 64, ("drnas", 1, False), (0.025, 0.9, False, 3e-4), (3e-4, (0.5, 0.999), 1e-3)
    ),
}  # fmt: skip
# xautodl's searches take the benchmark's halves (get_nas_search_loaders: cifar-split.txt);
# DrNAS's code the training set's first and second half (its train_portion 0.5).
SPLIT = {name: ("nb201", None) for name in SETTINGS} | {"nb201/search_drnas": (None, 0.5)}


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
def test_each_search_has_its_authors_settings(name, tmp_path):
    epochs, batch, (method, order, weights_first), sgd, adam = SETTINGS[name]
    # Its own epochs and batch (smoke shrinks the network and the data, not the optimizers).
    runner.configure(name, [], smoke=True, results=str(tmp_path))
    job = search_job.search(seed=0, build_only=True, epochs=epochs)
    assert gin.query_parameter("%BATCH_SIZE") == 2 * 4  # smoke's; the experiment's below
    assert (job.model.method, job.architect.order) == (method, order)
    assert job.params.arch_after_weights == weights_first and job.params.skip_primitive is None
    split, portion = SPLIT[name]
    bound = gin.get_bindings("build_datasets").get("split")
    assert bound == split
    assert job.params.train_portion == portion and job.params.grad_clip == 5.0
    group = job.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == sgd
    arch = job.architect.optimizer.param_groups[0]
    assert (arch["lr"], arch["betas"], arch["weight_decay"]) == adam
    # Per-epoch cosine from 0.025 (epoch 0) to 0.001, as xautodl's and DrNAS's schedulers.
    # DrNAS's one schedule spans its two stages of 50 (the restart between them:
    # test_nb201_drnas_stages).
    span = epochs * (job.params.stages.count if job.params.stages else 1)
    assert span == (100 if "drnas" in name else epochs)
    lrs = []
    for _ in range(span):
        lrs.append(job.optimizer.param_groups[0]["lr"])
        job.scheduler.step()
    assert lrs[0] == 0.025 and lrs[span // 2] == pytest.approx(0.013)
    assert lrs[-1] == pytest.approx(0.001 + 0.024 * (1 + math.cos(math.pi * (span - 1) / span)) / 2)
    gin.clear_config()
    runner.configure(name, [], smoke=False, results=str(tmp_path))
    assert gin.query_parameter("%EPOCHS") == epochs and gin.query_parameter("%BATCH_SIZE") == batch
