"""The DARTS random-search baselines: cells drawn uniformly from DARTS's spaces, and the job
that trains each briefly, keeps the best by validation and trains the winner (smoke runs through
the command line, their table rows, and kill-and-resume that never redoes a finished sample)."""

import collections
from itertools import combinations

import gin
import numpy as np
import pytest
from killing import kill_after_epoch  # tests/killing.py

from sharpdarts.core import genotypes, recurrent_genotypes
from sharpdarts.core.random_genotypes import (
    sample_cell_genotype,
    sample_genotypes,
    sample_recurrent_genotype,
)
from sharpdarts.face import cli
from sharpdarts.store import reader
from sharpdarts.store.results import load_runs
from sharpdarts.store.tables import build_table

CELL_OPS = [op for op in genotypes.DARTS_PRIMITIVES if op != "none"]
RNN_OPS = [op for op in genotypes.RNN_PRIMITIVES if op != "none"]


# ---- the samplers ---------------------------------------------------------------------------
def _check_cell(gene):
    assert len(gene) == 8
    for node in range(4):
        (op_a, a), (op_b, b) = gene[2 * node], gene[2 * node + 1]
        assert a != b and 0 <= a < node + 2 and 0 <= b < node + 2
        assert op_a in CELL_OPS and op_b in CELL_OPS


def test_sampled_cells_are_valid_genotypes_of_the_darts_space():
    for seed in range(50):
        g = sample_cell_genotype(seed)
        assert isinstance(g, genotypes.Genotype) and g.layout == "cell"
        _check_cell(g.normal)
        _check_cell(g.reduce)
        assert g.normal_concat == g.reduce_concat == [2, 3, 4, 5]
        assert genotypes.from_dict(genotypes.to_dict(g)) == g  # the project's validation


def test_a_sampled_cell_builds_a_network_in_darts_ops():
    import torch

    from sharpdarts.nn.models import NetworkCIFAR

    net = NetworkCIFAR(4, 10, 3, False, sample_cell_genotype(3), op_dict="DARTS_OPS")
    logits, _ = net(torch.zeros(2, 3, 8, 8))
    assert logits.shape == (2, 10)


def test_sampled_recurrent_cells_are_valid_genotypes_of_the_darts_space():
    for seed in range(50):
        g = sample_recurrent_genotype(seed)
        assert isinstance(g, recurrent_genotypes.RecurrentGenotype)
        assert len(g.recurrent) == 8 and g.concat == list(range(1, 9))
        for i, (op, pred) in enumerate(g.recurrent):
            assert op in RNN_OPS and 0 <= pred <= i
        assert (
            recurrent_genotypes.recurrent_from_dict(recurrent_genotypes.recurrent_to_dict(g)) == g
        )


def test_samples_are_reproducible_per_seed():
    assert sample_genotypes(sample_cell_genotype, 5, 7) == sample_genotypes(
        sample_cell_genotype, 5, 7
    )
    assert sample_genotypes(sample_cell_genotype, 5, 7) != sample_genotypes(
        sample_cell_genotype, 5, 8
    )
    assert sample_genotypes(sample_recurrent_genotype, 5, 7) == sample_genotypes(
        sample_recurrent_genotype, 5, 7
    )
    drawn = sample_genotypes(sample_cell_genotype, 5, 7)
    assert len({genotypes.to_json(g) for g in drawn}) == 5


def _near_uniform(counts: collections.Counter, choices: list, n: int) -> None:
    assert set(counts) == set(choices)  # every choice occurs, nothing else does
    expected = n / len(choices)
    for choice in choices:  # 20 % is more than 5 standard deviations at these counts
        assert abs(counts[choice] - expected) < 0.2 * expected, (choice, counts)


def test_every_op_and_every_input_pair_is_drawn_uniformly():
    n = 2000
    drawn = sample_genotypes(sample_cell_genotype, n, 0)
    for cell in ("normal", "reduce"):
        for node in range(4):
            pairs = collections.Counter(
                (getattr(g, cell)[2 * node][1], getattr(g, cell)[2 * node + 1][1]) for g in drawn
            )
            _near_uniform(pairs, list(combinations(range(node + 2), 2)), n)
            for slot in (0, 1):
                ops = collections.Counter(getattr(g, cell)[2 * node + slot][0] for g in drawn)
                _near_uniform(ops, CELL_OPS, n)
    cells = sample_genotypes(sample_recurrent_genotype, n, 0)
    for i in range(8):
        _near_uniform(collections.Counter(g.recurrent[i][0] for g in cells), RNN_OPS, n)
        _near_uniform(collections.Counter(g.recurrent[i][1] for g in cells), list(range(i + 1)), n)


def test_a_space_without_ops_or_a_bad_concat_is_refused():
    with pytest.raises(ValueError, match="no op"):
        sample_cell_genotype(0, primitives=["none"])
    with pytest.raises(ValueError, match="multiplier"):
        sample_cell_genotype(0, multiplier=5)
    with pytest.raises(ValueError, match="concat"):
        sample_recurrent_genotype(0, concat=9)


# ---- the job, through the command line --------------------------------------------------------
def _run(results, experiment, *bindings):
    args = ["run", experiment, "--smoke", "--results", str(results), "--allow-dirty"]
    for binding in bindings:
        args += ["--gin_param", binding]
    assert cli.main(args) == 0
    [folder] = (results / "runs" / experiment).glob("*")
    return folder, reader.read_info(folder), reader.read_metrics(folder)


def _check_record(info, metrics, samples, sample_epochs, epochs, metric):
    """One line per run epoch, each sample's stretch then the winner's; the winner is the
    sample with the lowest validation figure; finished samples keep no checkpoint."""
    final = info["final"]
    assert [r["epoch"] for r in metrics] == list(range(1, samples * sample_epochs + epochs + 1))
    assert [r["phase"] for r in metrics] == (
        [f"sample_{i:02d}" for i in range(samples) for _ in range(sample_epochs)]
        + ["final"] * epochs
    )
    results = final["samples"]
    assert [r["sample"] for r in results] == list(range(samples))
    figures = [r[metric] for r in results]
    assert final["winner_sample"] == int(np.argmin(figures))
    assert final[f"winner_{metric}"] == min(figures)
    assert final["genotype"] == results[final["winner_sample"]]["genotype"]
    assert [r["genotype"] for r in results] == info["random_search"]["genotypes"]
    return final


# Two samples (smoke mode's count): the kill below lands in the second, past a finished one.
PTB = ["SAMPLES = 2", "SAMPLE_EPOCHS = 2", "make_context.threads = 1"]


@pytest.fixture(scope="module")
def ptb_run(tmp_path_factory):
    """One uninterrupted smoke run of ptb/random_search (also the kill test's reference)."""
    return _run(tmp_path_factory.mktemp("ptb"), "ptb/random_search", *PTB)


def test_ptb_random_search_smoke_run_keeps_the_best_cell_by_validation_perplexity(ptb_run):
    folder, info, metrics = ptb_run
    final = _check_record(info, metrics, 2, 2, 2, "valid_ppl")
    # Each sample's figure is its best logged validation perplexity (its best weights').
    for result in final["samples"]:
        logged = [r["valid_ppl"] for r in metrics if r.get("sample") == result["sample"]]
        assert result["valid_ppl"] == pytest.approx(min(logged))
    # The final training trained the winner's cell: its first epoch repeats the winner's.
    winner = next(r for r in metrics if r.get("sample") == final["winner_sample"])
    first = next(r for r in metrics if r["phase"] == "final")
    assert first["train_loss"] == winner["train_loss"]
    assert {"test_ppl", "valid_ppl", "params_m"} <= set(final)
    assert not list((folder / "phases").glob("sample_*/checkpoint*.pt"))
    assert (folder / "checkpoint.pt").exists() and not (folder / "phases" / "final").exists()
    gin.parse_config_file(str(folder / "operative_config.gin"))  # the run's: the winner's
    assert gin.query_parameter("%GENOTYPE") == final["genotype"]
    assert "GENOTYPE" in (folder / "phases" / "sample_00" / "operative_config.gin").read_text()
    _check_table(folder.parents[3], "darts_ptb", "ptb/random_search", "test_ppl", final["test_ppl"])


def test_cifar10_random_search_smoke_run_keeps_the_best_cell_by_validation_error(tmp_path):
    # 32 training images, not smoke.gin's 16: the held-out half is evaluated through the
    # training transforms (random crops, as DARTS's), so a sample's error measured again after
    # its epoch can differ from the epoch's by one image of 8; of 16, these networks answer
    # alike however the images are cropped.
    folder, info, metrics = _run(
        tmp_path,
        "cifar10/darts_random_search",
        "SAMPLES = 3",
        "build_datasets.synthetic_size = (32, 16)",
    )
    final = _check_record(info, metrics, 3, 1, 2, "valid_error")
    for result in final["samples"]:  # the held-out error of each sample's final weights
        [line] = [r for r in metrics if r.get("sample") == result["sample"]]
        assert result["valid_error"] == pytest.approx(100.0 - line["valid_acc"])
    assert all("valid_acc" not in r for r in metrics if r["phase"] == "final")  # all data
    assert {"test_error_top1", "params_m"} <= set(final)
    _check_table(
        tmp_path,
        "darts_cifar10",
        "cifar10/darts_random_search",
        "test_error",
        final["test_error_top1"],
    )


def _check_table(results, table, experiment, column, value):
    """The row of the DARTS table holds the run's figure (a smoke run counted as a real one:
    tables leave smoke runs out) beside the paper's, and no figure computed in advance."""
    runs = load_runs(results)
    assert build_table(table, runs).query("experiment == @experiment")["seeds"].item() == 0
    runs["smoke"] = False
    row = build_table(table, runs).query("experiment == @experiment").iloc[0]
    assert row["seeds"] == 1 and row["architecture"].startswith("Random search baseline")
    assert row[f"{column}_mean"] == pytest.approx(value)
    assert np.isnan(row["params_computed"])


def test_a_bound_genotype_is_refused(tmp_path, capsys):
    code = cli.main(
        [
            "run",
            "ptb/random_search",
            "--smoke",
            "--results",
            str(tmp_path),
            "--gin_param",
            "GENOTYPE = 'DARTS_V2_RNN'",
        ]
    )
    assert code == 2
    assert "draws its own cells" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---- kill and resume ------------------------------------------------------------------------
def test_a_killed_random_search_resumes_without_redoing_finished_samples(tmp_path, ptb_run, capsys):
    # Killed once a later sample has a checkpoint and has logged an epoch (run epoch 3+).
    args = ["run", "ptb/random_search", "--smoke", "--results", str(tmp_path), "--allow-dirty"]
    for binding in PTB:
        args += ["--gin_param", binding]
    folder = kill_after_epoch(
        args,
        tmp_path,
        "ptb/random_search",
        3,
        log=tmp_path / "killed.out",
        checkpoint="phases/*/checkpoint.pt",
    )
    done = reader.read_info(folder)["random_search"]["samples"]
    assert len(done) >= 1 and not list((folder / "phases" / "sample_00").glob("*.pt"))
    kept = [r for r in reader.read_metrics(folder) if r.get("sample", 99) < len(done)]
    assert len(kept) == 2 * len(done)

    again, info, after = _run(tmp_path, "ptb/random_search", *PTB)
    assert again == folder and "resuming" in capsys.readouterr().out
    assert after[: len(kept)] == kept  # the finished samples' very lines (times included)

    def strip(records):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    _, reference, reference_metrics = ptb_run
    assert strip(after) == strip(reference_metrics)  # no epoch lost, none twice, exact
    assert info["final"] == reference["final"]


def test_samples_without_held_out_data_are_refused_before_anything_runs(tmp_path, capsys):
    code = cli.main(
        [
            "run",
            "cifar10/darts_random_search",
            "--smoke",
            "--results",
            str(tmp_path),
            "--gin_param",
            "sample/train.valid_portion = None",
        ]
    )
    assert code == 2
    assert "sample/train.valid_portion" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_random_searchs_search_cost_is_its_samples_training_epochs(ptb_run):
    folder, info, metrics = ptb_run
    row = load_runs(folder.parents[3]).set_index("run_id").loc[info["run_id"]]
    sampling = sum(r["seconds"] for r in metrics if r["phase"].startswith("sample_"))
    devices = max(info.get("device_count") or 0, 1)
    assert row["search_gpu_days"] == pytest.approx(sampling * devices / 86400.0)
    # Less than the whole run: the winner's training is not search.
    assert 0 < row["search_gpu_days"] < row["gpu_days"]
