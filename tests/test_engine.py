"""Search and training engines: smoke searches and trainings, checkpoints, resume, NaN stops.

Every test configures the engine through gin (cleared around each test) on tiny networks and
small synthetic datasets, or a tiny CIFAR-10 written here in its real on-disk format. Runs
record into minimal run folders (a run.json and ``runs.Run``), except the command-line tests,
which run ``sharpdarts run`` in this process.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
from test_data import write_cifar10  # the real CIFAR-10 pickle format (tests/test_data.py)
from torch import nn
from torchvision import transforms as T

from sharpdarts.core import genotype_types, genotypes, schedules
from sharpdarts.engine import checkpoint, context, evaluation, loop, search_job, train_job
from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import loaders, transforms
from sharpdarts.nn import models
from sharpdarts.nn.multichannel import graph as graph_lib
from sharpdarts.nn.multichannel import networks as _networks  # noqa: F401  (gin registrations)
from sharpdarts.store import run as run_lib

REPO = Path(__file__).resolve().parent.parent

COMMON = ["make_context.device = 'cpu'", "cosine_power_annealing.warmup_epochs = 1"]

# 8 training images: two halves of 4, one weight step and one architecture step per epoch.
SEARCH_DATA = [
    "build_datasets.name = 'synthetic'",
    "build_datasets.synthetic_shape = (3, 8, 8)",
    "build_datasets.synthetic_size = (8, 4)",
    "build_datasets.synthetic_classes = 3",
]
SEARCH = [
    *COMMON,
    *SEARCH_DATA,
    "search.epochs = 2",
    "search.batch_size = 4",
    "search.show_progress = False",
    # One Hessian-vector product per measured epoch: the tiny searches test the recording
    # (tests/test_collapse.py tests the eigenvalue itself).
    "collapse_metrics.iterations = 1",
]
SEARCH_CELL = [
    "search.network = @SearchNetwork",
    "SearchNetwork.C = 4",
    "SearchNetwork.layers = 3",
    "SearchNetwork.steps = 2",
    "SearchNetwork.multiplier = 2",
]
SEARCH_GRID = [
    "search.network = @MultiChannelNetwork",
    "MultiChannelNetwork.C = 8",
    "MultiChannelNetwork.steps = 2",
    "MultiChannelNetwork.layers = 1",
    "MultiChannelNetwork.head_channels = 16",
]

# NetworkCIFAR's auxiliary head needs the 8x8 map of a 32x32 image.
TRAIN_CIFAR = [
    *COMMON,
    "build_datasets.name = 'synthetic'",
    "build_datasets.synthetic_shape = (3, 32, 32)",
    "build_datasets.synthetic_size = (16, 8)",
    "build_datasets.cutout_length = 16",
    "train.epochs = 3",
    "train.batch_size = 4",
    "train.show_progress = False",
    "train.network = @NetworkCIFAR",
    "train.drop_path_prob = 0.3",
    "NetworkCIFAR.C = 8",
    "NetworkCIFAR.layers = 3",
    "NetworkCIFAR.auxiliary = True",
    "NetworkCIFAR.genotype = 'SHARPSEPCONV_DARTS'",
]

TRAIN_KEYS = {
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "seconds",
    "test_acc_top5",
    "drop_path_prob",
}
SEARCH_KEYS = {
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "valid_loss",
    "valid_acc",
    "seconds",
    "genotype",
    "alphas_normal",
    "alphas_reduce",
    # engine/collapse.py
    "hessian_eigenvalue",
    "hessian_iterations",
    "skip_connections_normal",
    "skip_connections_reduce",
    "op_entropy_normal",
    "op_entropy_reduce",
    "op_entropy_mean",
}


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def configure(*bindings: str) -> None:
    gin.parse_config(list(bindings))


def make_run(path: Path) -> run_lib.Run:
    """A minimal run folder (start_run's provenance takes seconds and is tested elsewhere)."""
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"status": "running"}))
    return run_lib.Run(path)


def read_metrics(run: run_lib.Run) -> list[dict]:
    if not run.metrics_path.exists():
        return []
    return [json.loads(line) for line in run.metrics_path.read_text().splitlines() if line]


def epochs_of(run: run_lib.Run) -> list[int]:
    return [r["epoch"] for r in read_metrics(run)]


class Killed(Exception):
    """Stands for a SIGKILL at a chosen point of an epoch's end."""


def kill_at(monkeypatch, epoch: int, after_checkpoint: bool = True) -> None:
    """Makes the run die when the checkpoint of ``epoch`` is written: just after it (the
    epoch is logged and checkpointed) or just before it (logged, not checkpointed)."""
    real = checkpoint.save_checkpoint

    def save(path, state):
        if state["epoch"] == epoch and not after_checkpoint:
            raise Killed(f"killed before the checkpoint of epoch {epoch}")
        real(path, state)
        if state["epoch"] == epoch:
            raise Killed(f"killed after the checkpoint of epoch {epoch}")

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key].cpu(), value.cpu()), key


def assert_same_state(actual, expected, where="state") -> None:
    """Nested dicts/lists of tensors and numbers are equal exactly."""
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual.cpu(), expected.cpu()), where
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            assert_same_state(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_state(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, where


def without_seconds(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


# ---- Smoke searches -----------------------------------------------------------------------
# Each cell space once, both orders and both weightings among them; the grid (a second of CPU
# in all) with all four. The search job does the same for every cell space, order and
# weighting: what they change is the network and the architect, whose every combination is
# checked step by step in tests/test_architect.py (test_every_primitive_set_and_weighting)
# and tests/test_performance_equivalence.py. Here each space's genotype is checked.
SMOKE_SEARCHES = [
    ("PRIMITIVES", 1, "scalar"),
    ("SHARPER_PRIMITIVES", 1, "max_w"),
    ("DARTS_PRIMITIVES", 2, "max_w"),
    *[("grid", order, weighting) for order in (1, 2) for weighting in ("scalar", "max_w")],
]


@pytest.mark.parametrize("space, order, weighting", SMOKE_SEARCHES)
def test_smoke_search_gives_a_valid_genotype(space, order, weighting):
    # The eigenvalue once (epoch 1), as --smoke measures it: the records are checked in
    # test_search_records_epochs_and_resumes_exactly, the genotypes here.
    configure("collapse_metrics.last_epoch = False")
    if space == "grid":
        configure(
            *SEARCH,
            *SEARCH_GRID,
            f"MultiChannelNetwork.weighting = '{weighting}'",
            f"Architect.order = {order}",
        )
    else:
        configure(
            *SEARCH,
            *SEARCH_CELL,
            f"SearchNetwork.primitives = '{space}'",
            f"SearchNetwork.weighting = '{weighting}'",
            f"Architect.order = {order}",
        )
    final = search_job.search(run=None, seed=0)

    assert final["genotype_epoch"] == 2 and final["best_epoch"] in (1, 2)
    genotype = genotypes.from_dict(final["genotype"])
    best = genotypes.from_dict(final["best_genotype"])
    if space == "grid":
        assert genotype.layout == "path"
        graph = graph_lib.grid_graph(None, graph_lib.channel_widths(8, 2), 1)
        for g in (genotype, best):
            names = graph_lib.check_path(g, graph)  # raises unless Source -> ... -> Linear
            ops = [graph_lib.parse_op_node(n) for n in names]
            assert [o.stride for o in ops if o is not None] == [1, 2]  # one op per stage
        raw = genotypes.from_dict(final["raw_weights"])
        assert raw.layout == "raw_weights"
        assert np.allclose(np.asarray(raw.normal).sum(axis=(1, 2, 3)), 1.0)
        return
    primitives = genotype_types.primitives(space)
    for g in (genotype, best):
        assert g.layout == "cell"
        for cell, concat in ((g.normal, g.normal_concat), (g.reduce, g.reduce_concat)):
            assert len(cell) == 4  # 2 steps x 2 inputs
            assert list(concat) == [2, 3]  # the last `multiplier` states
            for k, (op, index) in enumerate(cell):
                assert op in primitives and op != "none"
                assert 0 <= index < 2 + k // 2  # a node reads only earlier states
            assert cell[0][1] != cell[1][1] and cell[2][1] != cell[3][1]  # distinct inputs


def test_an_architecture_split_without_a_full_batch_stops_with_a_user_error():
    """6 images for the weights, 2 for the architecture at batch 4: the architecture's loader
    gives no batch, which once made the search wait for one for ever."""
    from sharpdarts.errors import UserError

    configure(*SEARCH, *SEARCH_CELL, "search.train_portion = 0.75")
    with pytest.raises(UserError, match="a loader of 2 items gives no batch of 4"):
        search_job.search(run=None, seed=0)


def test_a_weights_split_without_a_full_batch_stops_with_a_user_error():
    """2 images for the weights, 6 for the architecture at batch 4: an epoch of no weight step
    once recorded a training loss of 0 and went on as if it had trained."""
    from sharpdarts.errors import UserError

    configure(*SEARCH, *SEARCH_CELL, "search.train_portion = 0.25")
    with pytest.raises(UserError, match="a loader of 2 items gives no batch of 4"):
        search_job.search(run=None, seed=0)


def test_search_records_epochs_and_resumes_exactly(tmp_path, monkeypatch):
    """A search killed after epoch 1 and started again ends as an uninterrupted one (the
    resumed epoch 2 is past the warm-up, with the collapse metrics of the last epoch)."""
    configure(
        *SEARCH,
        *SEARCH_CELL,
        "Architect.order = 1",
        "SearchNetwork.primitives = 'DARTS_PRIMITIVES'",
    )
    killed_search_resumes_exactly(tmp_path, monkeypatch)
    full = run_lib.Run(tmp_path / "full")
    records = read_metrics(full)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(set(r) == SEARCH_KEYS for r in records)
    # The final genotype (the finished run's, derived again from its last checkpoint).
    assert search_job.search(run=full, seed=0)["genotype"] == records[-1]["genotype"]
    assert (tmp_path / "full" / "operative_config.gin").is_file()


def search_copied_at(tmp_path: Path, monkeypatch, epoch: int) -> tuple[dict, run_lib.Run]:
    """Runs the configured search uninterrupted into ``tmp_path / 'full'``; returns its final
    metrics and the run killed after ``epoch``'s checkpoint, without running it a second time:
    the full run's folder copied (to ``tmp_path / 'part'``) the moment that checkpoint is on
    disk, which is all that a SIGKILL there leaves (a seeded search writes the same files each
    time). The killed run is read back through a new ``Run``, as a new process would."""
    full = make_run(tmp_path / "full")
    killed = tmp_path / "part"
    real = checkpoint.save_checkpoint

    def save(path, state):
        real(path, state)
        if state["epoch"] == epoch and not killed.exists():
            shutil.copytree(full.path, killed)

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save_checkpoint", save)
        final_full = search_job.search(run=full, seed=0)
    part = run_lib.Run(killed)
    assert epochs_of(part) == list(range(1, epoch + 1))
    assert checkpoint.load_checkpoint(part.checkpoint_path)["epoch"] == epoch
    return final_full, part


def killed_search_resumes_exactly(tmp_path: Path, monkeypatch) -> tuple[dict, dict]:
    """Runs the configured search uninterrupted, then killed after epoch 1 and resumed; checks
    the resumed run ends as the other (final metrics, every epoch's record, weights and alphas,
    architect) and returns both checkpoints (uninterrupted, resumed) for a method's own state.
    The killed run is the uninterrupted one's folder as it was then (``search_copied_at``)."""
    final_full, part = search_copied_at(tmp_path, monkeypatch, 1)
    full = run_lib.Run(tmp_path / "full")
    assert search_job.search(run=part, seed=0) == final_full
    assert without_seconds(read_metrics(part)) == without_seconds(read_metrics(full))
    a, b = (checkpoint.load_checkpoint(r.checkpoint_path) for r in (full, part))
    assert_same_tensors(b["model"], a["model"])  # the alphas among them
    assert_same_state(b["architect"], a["architect"], "architect")
    return a, b


# ---- Smoke trainings ----------------------------------------------------------------------
class Recorder:
    """A network factory that keeps the networks it builds and watches their training passes."""

    def __init__(self, cls=models.NetworkCIFAR, poison_after: int | None = None):
        self.cls = cls
        self.poison_after = poison_after
        self.models: list[nn.Module] = []
        self.aux_seen = False
        self.drop_path_probs: set[float] = set()
        self.train_steps = 0

    def __call__(self, **kwargs) -> nn.Module:
        model = self.cls(**kwargs)
        self.models.append(model)
        real_forward = model.forward

        def forward(x):
            logits, aux = real_forward(x)
            if model.training:
                self.train_steps += 1
                self.aux_seen |= aux is not None
                self.drop_path_probs.add(model.drop_path_prob)
                if self.poison_after is not None and self.train_steps > self.poison_after:
                    logits = logits * float("nan")
            return logits, aux

        model.forward = forward
        return model


def write_cifar10_1(root: Path, n: int = 4) -> None:
    """CIFAR-10.1 v6 in its real format: two .npy files (uint8 N x 32 x 32 x 3, labels)."""
    folder = root / "cifar10_1"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    np.save(folder / "cifar10.1_v6_data.npy", rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    np.save(folder / "cifar10.1_v6_labels.npy", rng.integers(0, 10, n).astype(np.int64))


def test_smoke_training_cifar10_with_auxiliary_drop_path_cutout_autoaugment(tmp_path):
    write_cifar10(tmp_path, per_batch=4)  # 20 training and 4 test images
    write_cifar10_1(tmp_path)
    configure(
        *COMMON,
        "build_datasets.name = 'cifar10'",
        f"build_datasets.root = '{tmp_path}'",
        "build_datasets.autoaugment = True",
        "build_datasets.cutout_length = 16",
        "train.epochs = 2",
        "train.batch_size = 4",
        "train.show_progress = False",
        "train.drop_path_prob = 0.2",
        "train.auxiliary_weight = 0.4",
        "NetworkCIFAR.C = 8",
        "NetworkCIFAR.layers = 3",
        "NetworkCIFAR.auxiliary = True",
        "NetworkCIFAR.genotype = 'SHARPSEPCONV_DARTS'",
    )
    pipeline = [type(t) for t in bundle_lib.build_datasets().train.transform.transforms]
    assert T.AutoAugment in pipeline and transforms.Cutout in pipeline
    recorder = Recorder()
    run = make_run(tmp_path / "run")
    final = train_job.train(run=run, seed=0, network=recorder)

    assert recorder.aux_seen and recorder.train_steps == 2 * 5
    assert recorder.drop_path_probs == {0.0, 0.1}  # ramped from 0 by the 0-based epoch
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(set(r) == TRAIN_KEYS for r in records)
    assert [r["drop_path_prob"] for r in records] == [0.0, 0.1]
    # The final epoch's test figures; no best epoch is chosen without a held-out split.
    assert set(final) == {
        "test_error_top1",
        "test_error_top5",
        "cifar10_1_error",
        "params_m",
        "multiply_adds_b",
    }
    assert final["test_error_top1"] == 100.0 - records[-1]["test_acc"]
    assert all(math.isfinite(v) for v in final.values())
    assert 0 <= final["test_error_top1"] <= 100 and 0 <= final["cifar10_1_error"] <= 100
    assert checkpoint.load_checkpoint(run.checkpoint_path)["epoch"] == 2


@pytest.mark.parametrize("size,auxiliary", [(64, False), (224, True)])
def test_smoke_training_imagenet(size, auxiliary):
    """NetworkImageNet at a reduced resolution; its auxiliary head needs 224 (a 7x7 map)."""
    configure(
        *COMMON,
        "build_datasets.name = 'synthetic'",
        f"build_datasets.synthetic_shape = (3, {size}, {size})",
        "build_datasets.synthetic_size = (8, 4)",
        "build_datasets.cutout_length = 16",
        "train.epochs = 2",
        "train.batch_size = 4",
        "train.show_progress = False",
        "train.label_smoothing = 0.1",
        "train.lr_reference_batch = 256",
        "train.drop_path_prob = 0.2",
        "NetworkImageNet.C = 8",
        "NetworkImageNet.layers = 3",
        f"NetworkImageNet.auxiliary = {auxiliary}",
        "NetworkImageNet.genotype = 'SHARPSEPCONV_DARTS'",
    )
    recorder = Recorder(models.NetworkImageNet)
    final = train_job.train(run=None, seed=0, network=recorder)
    assert recorder.aux_seen == auxiliary and recorder.train_steps == 4
    assert recorder.drop_path_probs == {0.0, 0.1}
    assert all(math.isfinite(v) for v in final.values())
    assert "cifar10_1_error" not in final


def test_a_held_out_split_chooses_the_best_epoch_and_the_test_set_never_does(tmp_path):
    configure(*TRAIN_CIFAR, "train.valid_portion = 0.25")
    built = train_job.train(seed=0, build_only=True)
    train_idx, valid_idx = (
        set(l.sampler.indices) for l in (built.train_loader, built.valid_loader)
    )
    assert not train_idx & valid_idx and train_idx | valid_idx == set(range(16))
    assert len(valid_idx) == 4

    run = make_run(tmp_path / "run")
    final = built.fit(run)
    records = read_metrics(run)
    assert all(
        set(r) == TRAIN_KEYS | {"valid_loss", "valid_acc", "valid_acc_top5"} for r in records
    )
    best = max(records, key=lambda r: r["valid_acc"])  # the first epoch of the best accuracy
    assert (final["best_epoch"], final["best_valid_acc"]) == (best["epoch"], best["valid_acc"])
    assert final["test_error_top1"] == 100.0 - records[-1]["test_acc"]  # the final epoch's


# ---- Checkpoints and resume ---------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted_training(tmp_path_factory) -> tuple[dict, run_lib.Run]:
    """TRAIN_CIFAR run uninterrupted (seed 0): its final metrics and run, which both kill
    points below compare with."""
    gin.clear_config()
    configure(*TRAIN_CIFAR)
    full = make_run(tmp_path_factory.mktemp("uninterrupted") / "full")
    try:
        return train_job.train(run=full, seed=0), full
    finally:
        gin.clear_config()


@pytest.mark.parametrize("after_checkpoint", [True, False], ids=["after_ckpt", "before_ckpt"])
def test_interrupted_training_resumes_exactly(
    tmp_path, monkeypatch, after_checkpoint, uninterrupted_training
):
    """Killed at the end of epoch 2 (before or after its checkpoint) and started again, a run
    logs every epoch once and ends with the weights and metrics of an uninterrupted run."""
    final_full, full = uninterrupted_training
    configure(*TRAIN_CIFAR)
    part = make_run(tmp_path / "part")
    with monkeypatch.context() as m:
        kill_at(m, 2, after_checkpoint)
        with pytest.raises(Killed):
            train_job.train(run=part, seed=0)
    assert epochs_of(part) == [1, 2]
    assert checkpoint.load_checkpoint(part.checkpoint_path)["epoch"] == (
        2 if after_checkpoint else 1
    )
    final_part = train_job.train(run=part, seed=0)

    assert epochs_of(part) == [1, 2, 3] and part.info["last_epoch"] == 3
    assert without_seconds(read_metrics(part)) == without_seconds(read_metrics(full))
    assert final_part == final_full
    a, b = (checkpoint.load_checkpoint(r.checkpoint_path) for r in (full, part))
    assert_same_tensors(b["model"], a["model"])
    assert_same_state(b["optimizer"], a["optimizer"], "optimizer")
    assert_same_state(b["rng"], a["rng"], "rng")


def test_resume_restores_the_checkpoint_exactly(tmp_path, monkeypatch):
    configure(*TRAIN_CIFAR)
    run = make_run(tmp_path / "run")
    with monkeypatch.context() as m:
        kill_at(m, 1)
        with pytest.raises(Killed):
            train_job.train(run=run, seed=0)
    saved = checkpoint.load_checkpoint(run.checkpoint_path)

    recorder = Recorder()
    optimizers = []
    real_resume = checkpoint.resume
    restored = {}

    def build_optimizer(*args, **kwargs):
        optimizers.append(torch.optim.SGD(*args, momentum=0.9, weight_decay=3e-4, **kwargs))
        return optimizers[-1]

    def resume(*args, **kwargs):
        start = real_resume(*args, **kwargs)
        restored.update(
            start=start,
            model={k: v.clone() for k, v in recorder.models[0].state_dict().items()},
            optimizer=copy.deepcopy(optimizers[0].state_dict()),
            torch_rng=torch.get_rng_state(),
        )
        return start

    monkeypatch.setattr(checkpoint, "resume", resume)
    train_job.train(run=run, seed=0, network=recorder, optimizer=build_optimizer)

    assert restored["start"] == 2
    assert_same_tensors(restored["model"], saved["model"])
    assert_same_state(restored["optimizer"], saved["optimizer"], "optimizer")
    assert torch.equal(restored["torch_rng"], saved["rng"]["torch"])
    assert epochs_of(run) == [1, 2, 3]


def test_completed_training_is_not_trained_again(tmp_path):
    configure(*TRAIN_CIFAR, "train.epochs = 2")
    run = make_run(tmp_path / "run")
    final = train_job.train(run=run, seed=0)
    recorder = Recorder()
    again = train_job.train(run=run, seed=0, network=recorder)
    assert recorder.train_steps == 0 and epochs_of(run) == [1, 2]
    assert again["test_error_top1"] == final["test_error_top1"]


# ---- Failures -----------------------------------------------------------------------------
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    configure(*TRAIN_CIFAR)
    run = make_run(tmp_path / "run")
    recorder = Recorder(poison_after=4)  # 4 steps an epoch: epoch 2's losses are NaN
    with pytest.raises(loop.NonFiniteLossError, match=r"loss became nan in epoch 2"):
        train_job.train(run=run, seed=0, network=recorder)
    assert epochs_of(run) == [1]
    saved = checkpoint.load_checkpoint(run.checkpoint_path)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_huge_learning_rate_stops_with_a_clear_reason(tmp_path):
    configure(*TRAIN_CIFAR, "train.learning_rate = 1e10")
    run = make_run(tmp_path / "run")
    with pytest.raises(loop.NonFiniteLossError, match=r"lower learning rate"):
        train_job.train(run=run, seed=0)
    assert epochs_of(run) == [] and not run.checkpoint_path.exists()


# ---- Weights from elsewhere ---------------------------------------------------------------
def _original_layout(state: dict) -> dict:
    """Our state dict as the original code saved it: 'module.' prefixes (DataParallel), no
    BatchNorm step counters (PyTorch < 0.4.1), wrapped as {'state_dict': ...}."""
    return {
        "epoch": 3,
        "state_dict": {
            f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")
        },
    }


def test_evaluate_checkpoint_in_the_original_layout(tmp_path):
    configure(
        *TRAIN_CIFAR,
        "train.epochs = 2",
        "evaluate_checkpoint.network = @NetworkCIFAR",
        "evaluate_checkpoint.batch_size = 3",
    )
    run = make_run(tmp_path / "run")
    recorder = Recorder()
    final = train_job.train(run=run, seed=0, network=recorder)
    model = recorder.models[0]
    ctx = context.make_context()
    bundle = bundle_lib.build_datasets()
    expected = loop.evaluate(model, loaders.make_loader(bundle.test, 8), nn.CrossEntropyLoss(), ctx)
    assert 100.0 - expected["acc"] == final["test_error_top1"]

    original = tmp_path / "weights.pt"
    torch.save(_original_layout(checkpoint.load_checkpoint(run.checkpoint_path)["model"]), original)
    result = evaluation.evaluate_checkpoint(checkpoint=original)
    assert result["test_error_top1"] == pytest.approx(100.0 - expected["acc"], abs=1e-9)
    assert result["test_error_top5"] == pytest.approx(100.0 - expected["acc_top5"], abs=1e-9)
    assert result["params_m"] == final["params_m"]
    ours = evaluation.evaluate_checkpoint(checkpoint=run.path)  # a run folder works too
    assert ours["test_error_top1"] == result["test_error_top1"]


@pytest.mark.parametrize("layout", ["run", "original"])
def test_training_starts_from_another_checkpoints_weights(tmp_path, monkeypatch, layout):
    configure(*TRAIN_CIFAR, "train.epochs = 1")
    source = make_run(tmp_path / "source")
    train_job.train(run=source, seed=0)
    weights = checkpoint.load_checkpoint(source.checkpoint_path)["model"]
    if layout == "run":
        init_from = source.path
    else:
        init_from = tmp_path / "weights.pt"
        torch.save(_original_layout(weights), init_from)

    loaded = []
    real = checkpoint.init_weights_from

    def init_weights_from(model, path):
        real(model, path)
        loaded.append({k: v.clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(train_job, "init_weights_from", init_weights_from)
    configure("train.epochs = 2", f"train.init_from = '{init_from}'")
    run = make_run(tmp_path / "run")
    train_job.train(run=run, seed=1)
    assert len(loaded) == 1
    state = loaded[0]
    if layout == "original":  # the old layout has no step counters; they stay as built
        weights = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert_same_tensors(state, weights)
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2]  # a fresh schedule, from epoch 1
    fresh = schedules.cosine_power_annealing_schedule(
        torch.optim.SGD([nn.Parameter(torch.zeros(1))], 0.025), 2
    )
    assert records[0]["lr"] == fresh.optimizer.param_groups[0]["lr"]  # warm-up's first epoch


# ---- The command line: kill and resume -------------------------------------------------------
def _cli(results: Path, *extra: str) -> list[str]:
    """The arguments of ``sharpdarts run`` for a 3-epoch smoke training into ``results``."""
    return [
        "run",
        "cifar10/sharpsepconv_darts",
        "--smoke",
        "--results",
        str(results),
        "--gin_param",
        "EPOCHS=3",
        *extra,
    ]


def test_cli_run_killed_after_an_epoch_resumes(tmp_path, capsys, monkeypatch):
    """A `sharpdarts run` killed after epoch 1's checkpoint starts again through the same
    command line and resumes its folder.

    The killed run is the results folder copied the moment that checkpoint is on disk, with
    the pid of a process that has ended in its run.json: all a SIGKILL there leaves (the run
    marked running by a dead process, nothing more written). Real kills of a process are in
    tests/test_lm_jobs.py and tests/test_random_search.py; this one runs in this process, which
    spares the start of a second Python with torch.
    """
    from sharpdarts.face import cli

    results, killed = tmp_path / "results", tmp_path / "killed"
    real = checkpoint.save_checkpoint

    def save(path, state):
        real(path, state)
        if state["epoch"] == 1 and not killed.exists():
            shutil.copytree(results, killed)

    cmd = _cli(results)
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save_checkpoint", save)
        assert cli.main(cmd) == 0, capsys.readouterr()
    [folder] = [p.parent for p in killed.glob("runs/*/*/*/run.json")]
    assert checkpoint.load_checkpoint(folder / "checkpoint.pt")["epoch"] == 1
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "running" and info["pid"] == os.getpid()
    ended = subprocess.Popen(["true"])  # a pid whose process is gone, as the killed one's
    ended.wait()
    (folder / "run.json").write_text(json.dumps({**info, "pid": ended.pid}))
    before = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in before] == [1]
    capsys.readouterr()

    code = cli.main(_cli(killed))
    again = capsys.readouterr()
    assert code == 0, again.out + again.err
    assert "resuming" in again.out and str(folder) in again.out
    assert [p.parent for p in killed.glob("runs/*/*/*/run.json")] == [folder]
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert lines[:1] == before  # the epoch done before the kill is kept as it was
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "completed" and info["resumes"] == 1
    assert set(info["final"]) >= {"test_error_top1", "test_error_top5", "params_m"}
    assert checkpoint.load_checkpoint(folder / "checkpoint.pt")["epoch"] == 3


def test_cli_run_with_a_non_finite_loss_fails_with_its_reason(tmp_path, capsys):
    from sharpdarts.face import cli

    results = tmp_path / "results"
    # 32 images (4 steps an epoch): the loss becomes nan within the first epoch.
    code = cli.main(
        _cli(
            results,
            "--gin_param",
            "train.learning_rate = 1e10",
            "--gin_param",
            "build_datasets.synthetic_size = (32, 16)",
        )
    )
    done = capsys.readouterr()
    assert code == 1, done.out + done.err
    assert "loss became nan" in done.err and "Traceback" not in done.err
    [run_json] = results.glob("runs/*/*/*/run.json")
    info = json.loads(run_json.read_text())
    assert info["status"] == "failed" and info["resumable"] is False
    assert "loss became nan in epoch 1" in info["reason"]


# ---- torch.compile (optional) --------------------------------------------------------------


@pytest.mark.slow(10)
@pytest.mark.parametrize("job", ["search", "train"])
def test_compiled_weight_steps_give_the_eager_results(job, tmp_path, monkeypatch):
    """``make_context.compile_backend`` routes the weight steps through torch.compile; the
    'eager' backend traces the model with dynamo but runs the same kernels."""
    # Compiling takes time with the size of the traced graph, not the data: the smallest
    # networks that still hold both kinds of cell (and the training's auxiliary head).
    if job == "search":
        bindings = [
            *SEARCH,
            *SEARCH_CELL,
            "SearchNetwork.primitives = 'DARTS_PRIMITIVES'",
            "SearchNetwork.steps = 1",
            "SearchNetwork.multiplier = 1",
        ]
    else:
        bindings = [*TRAIN_CIFAR, "train.epochs = 2"]
    results, compiled = [], []
    real_compile = torch.compile

    def counting_compile(model, **kwargs):
        compiled.append(kwargs.get("backend"))
        return real_compile(model, **kwargs)

    monkeypatch.setattr(torch, "compile", counting_compile)
    for backend in (None, "eager"):
        gin.clear_config()
        configure(*bindings, f"make_context.compile_backend = {backend!r}")
        run = make_run(tmp_path / str(backend))
        final = (search_job.search if job == "search" else train_job.train)(run=run, seed=0)
        results.append((final, without_seconds(read_metrics(run))))
    assert compiled == ["eager"]
    torch._dynamo.reset()
    (final_eager, metrics_eager), (final_compiled, metrics_compiled) = results
    assert [m["epoch"] for m in metrics_compiled] == [m["epoch"] for m in metrics_eager]
    for a, b in zip(metrics_compiled, metrics_eager):
        assert a.keys() == b.keys()
        for key in ("train_loss", "valid_loss" if job == "search" else "test_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
