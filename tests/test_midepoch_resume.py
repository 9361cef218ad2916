"""Preemption loses minutes: a run signalled inside an epoch checkpoints its place there, and the
resumed run ends that epoch exactly as an uninterrupted one (same figures, same weights, every
batch read once).

The signals are delivered in this process at a chosen batch (``os.kill`` of our own pid from
the training step); the handler that was there before ours stands for submitit's (SIGUSR2:
requeue and exit) or the command line's (SIGTERM: exit 143).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import gin
import pytest
import torch

from sharpdarts.engine import checkpoint, jobs
from sharpdarts.engine.context import Cycle
from sharpdarts.engine.data import datasets, loaders
from sharpdarts.store import run as run_lib

COMMON = ["make_context.device = 'cpu'", "cosine_power_annealing.warmup_epochs = 1"]
# 16 images for the weights and 16 for the architecture: 4 steps an epoch.
SEARCH = [
    *COMMON,
    "build_datasets.name = 'synthetic'",
    "build_datasets.synthetic_shape = (3, 8, 8)",
    "build_datasets.synthetic_size = (32, 4)",
    "build_datasets.synthetic_classes = 3",
    "search.epochs = 2",
    "search.batch_size = 4",
    "search.show_progress = False",
    "search.network = @SearchNetwork",
    "SearchNetwork.C = 4",
    "SearchNetwork.layers = 3",
    "SearchNetwork.steps = 2",
    "SearchNetwork.multiplier = 2",
    "SearchNetwork.primitives = 'DARTS_PRIMITIVES'",
]
SEARCH_SPLIT = 16  # images below it train the weights
# Cutout and drop path draw from the global generators: their state must come back too.
TRAIN = [
    *COMMON,
    "build_datasets.name = 'synthetic'",
    "build_datasets.synthetic_shape = (3, 32, 32)",
    "build_datasets.synthetic_size = (16, 4)",
    "build_datasets.cutout_length = 16",
    "train.epochs = 2",
    "train.batch_size = 4",
    "train.show_progress = False",
    "train.network = @NetworkCIFAR",
    "train.drop_path_prob = 0.3",
    "NetworkCIFAR.C = 8",
    "NetworkCIFAR.layers = 3",
    "NetworkCIFAR.auxiliary = True",
    "NetworkCIFAR.genotype = 'SHARPSEPCONV_DARTS'",
]
TRAIN_SIZE = 16


class Preempted(Exception):
    """Raised by the handler that was installed before the run's (submitit's stand-in)."""


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture
def reads(monkeypatch) -> list[tuple[int, int]]:
    """Every image read from a synthetic dataset, as (dataset size, index)."""
    seen: list[tuple[int, int]] = []
    real = datasets.SyntheticDataset.__getitem__

    def getitem(self, index):
        seen.append((len(self), int(index)))
        return real(self, index)

    monkeypatch.setattr(datasets.SyntheticDataset, "__getitem__", getitem)
    return seen


@pytest.fixture
def previous_handlers():
    """The handlers before the run's: SIGUSR2 raises :class:`Preempted` (as submitit's exits),
    SIGTERM exits 143 (as the command line's); both restored afterwards."""

    def preempted(signum, frame):
        raise Preempted(signal.Signals(signum).name)

    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM)}
    signal.signal(signal.SIGUSR2, preempted)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def make_run(path: Path) -> run_lib.Run:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"status": "running"}))
    return run_lib.Run(path)


def metrics(run: run_lib.Run) -> list[dict]:
    lines = run.metrics_path.read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def signal_at(job, step: int, signum: int) -> None:
    """Sends ``signum`` to this process during the job's ``step``-th training step (1-based,
    counted over the epochs)."""
    real, count = job.train_step, [0]

    def train_step(x, y):
        count[0] += 1
        if count[0] == step:
            os.kill(os.getpid(), signum)
        return real(x, y)

    job.train_step = train_step


def same(actual, expected, where="state") -> None:
    """Nested dicts/lists of tensors and numbers are equal exactly."""
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual.cpu(), expected.cpu()), where
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            same(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, where


def interrupted_and_resumed(tmp_path, build, reads, weights, step, signum, raised):
    """An uninterrupted run, and one signalled at ``step``, stopped by the previous handler
    (``raised``) and fitted again by a newly built job; returns both runs, their finals and the
    weight images each read (the second's over both of its fits), and the checkpoint the
    signal left with its record in run.json."""
    full = make_run(tmp_path / "full")
    final_full = build().fit(full)
    read_full = [i for i in reads if weights(i)]
    reads.clear()

    part = make_run(tmp_path / "part")
    job = build()
    signal_at(job, step, signum)
    with pytest.raises(raised):
        job.fit(part)
    saved = checkpoint.load_checkpoint(part.checkpoint_path)
    saved["record"] = part.info["checkpoints"][0]  # its record in run.json
    final_part = build().fit(part)
    return full, part, final_full, final_part, read_full, [i for i in reads if weights(i)], saved


def test_a_search_signalled_mid_epoch_resumes_at_its_batch(tmp_path, reads, previous_handlers):
    gin.parse_config(SEARCH)
    # The signal comes in the 2nd step of epoch 2 (the 6th step): checkpointed after it.
    full, part, final_full, final_part, read_full, read_part, saved = interrupted_and_resumed(
        tmp_path,
        lambda: jobs.search(run=None, seed=0, build_only=True),
        reads,
        lambda item: item[0] == 32 and item[1] < SEARCH_SPLIT,
        step=6,
        signum=signal.SIGUSR2,
        raised=Preempted,
    )
    assert saved["epoch"] == 1 and saved["position"]["epoch"] == 2
    assert saved["position"]["batch"] == 2
    assert saved["arch_batches"]["taken"] == 2  # the architecture's batches: as many
    assert saved["record"]["epoch"] == 1 and saved["record"]["batch"] == 2
    assert metrics(part) == metrics(full)
    assert final_part == final_full
    assert read_part == read_full  # every weight batch once, in the same order
    a, b = (checkpoint.load_checkpoint(r.checkpoint_path) for r in (full, part))
    same(b["model"], a["model"], "model")
    same(b["architect"], a["architect"], "architect")
    same(b["rng"], a["rng"], "rng")
    same(b["arch_batches"], a["arch_batches"], "arch_batches")


def test_a_training_terminated_mid_epoch_resumes_at_its_batch(tmp_path, reads, previous_handlers):
    gin.parse_config(TRAIN)
    # SIGTERM in the 3rd step of epoch 1: the previous handler exits 143 after the checkpoint.
    full, part, final_full, final_part, read_full, read_part, saved = interrupted_and_resumed(
        tmp_path,
        lambda: jobs.train(run=None, seed=0, build_only=True),
        reads,
        lambda item: item[0] == TRAIN_SIZE,
        step=3,
        signum=signal.SIGTERM,
        raised=SystemExit,
    )
    assert saved["epoch"] == 0 and saved["position"]["batch"] == 3
    assert metrics(part) == metrics(full)
    assert final_part == final_full
    assert read_part == read_full
    assert len(read_full) == 2 * TRAIN_SIZE and sorted(read_full[:TRAIN_SIZE]) == [
        (TRAIN_SIZE, i) for i in range(TRAIN_SIZE)
    ]
    a, b = (checkpoint.load_checkpoint(r.checkpoint_path) for r in (full, part))
    same(b["model"], a["model"], "model")
    same(b["optimizer"], a["optimizer"], "optimizer")
    same(b["rng"], a["rng"], "rng")


def signal_in_evaluation(monkeypatch, job, epoch: int, signum: int) -> None:
    """Sends ``signum`` to this process as the evaluation of ``epoch`` reads its first test
    image (once): the test loader has drawn its seed from torch's generator by then."""
    real, real_getitem = job.end_epoch, datasets.SyntheticDataset.__getitem__
    state = {"armed": False, "sent": False}

    def end_epoch(at):
        state["armed"] = at == epoch and not state["sent"]
        return real(at)

    def getitem(self, index):
        if self is job.bundle.test and state["armed"]:
            state["armed"], state["sent"] = False, True
            os.kill(os.getpid(), signum)
        return real_getitem(self, index)

    job.end_epoch = end_epoch
    monkeypatch.setattr(datasets.SyntheticDataset, "__getitem__", getitem)


def test_a_signal_in_the_evaluation_stops_it_and_the_resumed_run_evaluates_the_epoch(
    tmp_path, reads, previous_handlers, monkeypatch
):
    """An evaluation may outlast the minutes a time limit leaves: the signal stops it, the
    checkpoint holds every batch of the epoch, and the resumed run evaluates it again."""
    gin.parse_config(TRAIN)
    full = make_run(tmp_path / "full")
    jobs.train(run=full, seed=0)
    read_full = [i for i in reads if i[0] == TRAIN_SIZE]
    reads.clear()

    part = make_run(tmp_path / "part")
    job = jobs.train(run=None, seed=0, build_only=True)
    signal_in_evaluation(monkeypatch, job, 1, signal.SIGUSR2)
    with pytest.raises(Preempted):
        job.fit(part)
    saved = checkpoint.load_checkpoint(part.checkpoint_path)
    assert saved["epoch"] == 0 and saved["position"]["batch"] == TRAIN_SIZE // 4
    assert not part.metrics_path.exists() or not part.metrics_path.read_text()
    jobs.train(run=part, seed=0)
    assert metrics(part) == metrics(full)
    assert [i for i in reads if i[0] == TRAIN_SIZE] == read_full


def test_a_run_whose_signal_handler_returns_checkpoints_and_goes_on(tmp_path, reads, monkeypatch):
    """submitit only logs SIGTERM (Slurm requeues a preempted job itself): the run
    checkpoints its place, in a batch and in an evaluation, goes on, and ends as an
    uninterrupted run."""
    gin.parse_config(TRAIN)
    full = make_run(tmp_path / "full")
    jobs.train(run=full, seed=0)
    read_full = [i for i in reads if i[0] == TRAIN_SIZE]
    reads.clear()

    logged = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: logged.append(signum))
    try:
        part = make_run(tmp_path / "part")
        job = jobs.train(run=None, seed=0, build_only=True)
        signal_at(job, 2, signal.SIGTERM)
        signal_in_evaluation(monkeypatch, job, 2, signal.SIGTERM)
        job.fit(part)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert logged == [signal.SIGTERM] * 2
    places = [(r["epoch"], r.get("batch")) for r in part.info["checkpoints"]]
    assert places == [(2, None), (1, 4), (1, None), (0, 2)]
    assert metrics(part) == metrics(full)
    assert [i for i in reads if i[0] == TRAIN_SIZE] == read_full
    a, b = (checkpoint.load_checkpoint(r.checkpoint_path) for r in (full, part))
    same(b["model"], a["model"], "model")
    same(b["rng"], a["rng"], "rng")


class Killed(Exception):
    """Stands for a SIGKILL just after a chosen checkpoint is written."""


def test_the_interval_checkpoints_inside_epochs_and_a_kill_resumes_there(
    tmp_path, reads, monkeypatch
):
    """``midepoch_checkpoints.every_batches``: a run killed outright (no signal) just after
    its checkpoint at batch 2 of epoch 2 resumes from it; without the binding there is none."""
    gin.parse_config([*TRAIN, "midepoch_checkpoints.every_batches = 2"])
    full = make_run(tmp_path / "full")
    written = []
    real = checkpoint.save_checkpoint

    def save(path, state):
        real(path, state)
        written.append((state["epoch"], state.get("position", {}).get("batch")))
        if written[-1] == (1, 2) and path.parent.name == "part":
            raise Killed

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    jobs.train(run=full, seed=0)
    # Batch 2 of each epoch; never after the last batch (the epoch's own checkpoint follows).
    assert written == [(0, 2), (1, None), (1, 2), (2, None)]
    read_full = [i for i in reads if i[0] == TRAIN_SIZE]
    reads.clear()

    part = make_run(tmp_path / "part")
    with pytest.raises(Killed):
        jobs.train(run=part, seed=0)
    jobs.train(run=part, seed=0)
    assert metrics(part) == metrics(full)
    assert [i for i in reads if i[0] == TRAIN_SIZE] == read_full

    gin.clear_config()
    gin.parse_config(TRAIN)
    written.clear()
    jobs.train(run=make_run(tmp_path / "off"), seed=0)
    assert written == [(1, None), (2, None)]


def test_a_skipping_sampler_draws_the_whole_order_and_loads_none_of_the_skipped(reads):
    data = datasets.SyntheticDataset(num_samples=12, image_shape=(1, 2, 2), num_classes=2)
    loader = loaders.make_loader(data, 3, shuffle=True, seed=5, drop_last=True)
    start = loader.generator.get_state()
    whole = [y for _, y in loader]
    order = [i for _, i in reads]
    after = loader.generator.get_state()

    reads.clear()
    loader.generator.set_state(start)
    loader.sampler.skip_next(2 * 3)
    assert len(loader) == 2
    rest = [y for _, y in loader]
    assert [i for _, i in reads] == order[6:]  # the first two batches were never read
    assert all(torch.equal(a, b) for a, b in zip(rest, whole[2:])) and len(rest) == 2
    assert torch.equal(loader.generator.get_state(), after)  # the same draws as a whole pass
    assert len(loader) == 4  # the skip was for one pass only


def test_a_restored_cycle_goes_on_after_the_batch_it_had_taken(reads):
    data = datasets.SyntheticDataset(num_samples=8, image_shape=(1, 2, 2), num_classes=2)
    first = Cycle(loaders.make_loader(data, 2, indices=range(8), seed=3, drop_last=True))
    for _ in range(5):  # a pass of 4 batches and one of the next
        next(first)
    state = first.state_dict()
    reads.clear()
    for _ in range(6):
        next(first)
    expected = list(reads)

    reads.clear()
    loader = loaders.make_loader(data, 2, indices=range(8), seed=3, drop_last=True)
    loader.generator.manual_seed(99)  # whatever its state: the pass's own is restored
    again = Cycle(loader)
    again.load_state_dict(state)
    for _ in range(6):
        next(again)
    assert state["passes"] == 1 and state["taken"] == 1
    assert reads == expected and len(expected) == 12


def test_the_interval_is_a_binding_that_takes_effect_and_is_checked(tmp_path):
    """``sharpdarts run`` refuses a binding that takes no effect by the end of the build, and
    a bad value by its name: the interval is read when the job is built."""
    from sharpdarts.errors import UserError
    from sharpdarts.face import runner

    bindings = ["midepoch_checkpoints.every_minutes = 20", "make_context.device = 'cpu'"]
    configured = runner.configure("demo/search", bindings, True, str(tmp_path))
    built = runner.build_checked(configured, 0, None)
    assert built.checkpointing == {"every_batches": None, "every_minutes": 20, "on_signal": True}

    gin.clear_config()
    configured = runner.configure(
        "demo/search", ["midepoch_checkpoints.every_batches = 0"], True, str(tmp_path)
    )
    with pytest.raises(UserError, match="midepoch_checkpoints.every_batches"):
        runner.build_checked(configured, 0, None)
