"""Preemption loses minutes: a run signalled inside an epoch checkpoints its place there, and the
resumed run ends that epoch exactly as an uninterrupted one (same figures, same weights, every
batch read once), for a search and for a training; so does one killed after a periodic
mid-epoch checkpoint, and one signalled during its evaluation.

The signals are delivered in this process at a chosen batch (``os.kill`` of our own pid from
the training step); the handler that was there before ours stands for submitit's (SIGUSR2:
requeue and exit) or the command line's (SIGTERM: exit 143; also through ``sharpdarts run``).
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
from test_engine import COMMON, TRAIN_CIFAR, make_run  # tests/test_engine.py
from test_engine import assert_same_state as same
from test_faults import SMALL_SUPERNET_BINDINGS  # tests/test_faults.py: one node of four ops

from sharpdarts.engine import checkpoint, search_job, train_job
from sharpdarts.engine.context import Cycle
from sharpdarts.engine.data import datasets, loaders
from sharpdarts.store import run as run_lib

# 6 images for the weights and 6 for the architecture: 3 steps of 2 an epoch.
SEARCH = [
    *COMMON,
    "build_datasets.name = 'synthetic'",
    "build_datasets.synthetic_shape = (3, 8, 8)",
    "build_datasets.synthetic_size = (12, 4)",
    "build_datasets.synthetic_classes = 3",
    "search.epochs = 2",
    "search.batch_size = 2",
    "search.show_progress = False",
    "search.network = @SearchNetwork",
    "SearchNetwork.C = 4",
    "SearchNetwork.layers = 3",
    # One node of four ops a cell: an architecture's and the weights' step, the eigenvalue and
    # the genotype as with more, for a fraction of the time.
    *SMALL_SUPERNET_BINDINGS,
    # One Hessian-vector product per measured epoch, not the default's many: the eigenvalue's
    # random start still comes from the global generator whose state the resume restores
    # (tests/test_collapse.py tests the eigenvalue itself).
    "collapse_metrics.iterations = 1",
]
SEARCH_SIZE, SEARCH_SPLIT = 12, 6  # the training images; those below the split: the weights
# Cutout and drop path draw from the global generators: their state must come back too.
TRAIN = [*TRAIN_CIFAR, "build_datasets.synthetic_size = (16, 4)", "train.epochs = 2"]
TRAIN_SIZE = 16  # 4 steps of 4 an epoch


class Preempted(Exception):
    """Raised by the handler that was installed before the run's (submitit's stand-in)."""


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def record_reads(patch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every image read from a synthetic dataset from now on, as (dataset size, index)."""
    seen: list[tuple[int, int]] = []
    real = datasets.SyntheticDataset.__getitem__

    def getitem(self, index):
        seen.append((len(self), int(index)))
        return real(self, index)

    patch.setattr(datasets.SyntheticDataset, "__getitem__", getitem)
    return seen


@pytest.fixture
def reads(monkeypatch) -> list[tuple[int, int]]:
    return record_reads(monkeypatch)


def metrics(run: run_lib.Run) -> list[dict]:
    lines = run.metrics_path.read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def uninterrupted(bindings: list[str], fit, folder: Path, weights) -> dict:
    """What an uninterrupted run records: its metrics (without seconds), final metrics, last
    checkpoint, checkpoint records, and the training images it read (``weights``: which)."""
    gin.clear_config()
    gin.parse_config(bindings)
    with pytest.MonkeyPatch.context() as patch:
        seen = record_reads(patch)
        run = make_run(folder)
        final = fit(run)
    gin.clear_config()
    return {
        "metrics": metrics(run),
        "final": final,
        "state": checkpoint.load_checkpoint(run.checkpoint_path),
        "records": run.info["checkpoints"],
        "reads": [i for i in seen if weights(i)],
    }


def search_images(item) -> bool:
    return item[0] == SEARCH_SIZE and item[1] < SEARCH_SPLIT


def train_images(item) -> bool:
    return item[0] == TRAIN_SIZE


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> dict:
    return uninterrupted(
        SEARCH,
        lambda run: search_job.search(run=run, seed=0),
        tmp_path_factory.mktemp("search") / "full",
        search_images,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    return uninterrupted(
        TRAIN,
        lambda run: train_job.train(run=run, seed=0),
        tmp_path_factory.mktemp("train") / "full",
        train_images,
    )


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


def assert_as_uninterrupted(run, final, reads, weights, full: dict, keys: tuple) -> None:
    """The run's figures, final metrics, images read (each once, in the same order) and last
    checkpoint's ``keys`` are an uninterrupted run's."""
    assert metrics(run) == full["metrics"]
    assert final == full["final"]
    assert [i for i in reads if weights(i)] == full["reads"]
    state = checkpoint.load_checkpoint(run.checkpoint_path)
    for key in keys:
        same(state[key], full["state"][key], key)


def search_preempted_at(bindings: list[str], folder: Path, step: int):
    """A search of ``bindings`` into a run at ``folder``, preempted (SIGUSR2) in its
    ``step``-th training step: the run and the checkpoint it left."""
    gin.parse_config(bindings)
    part = make_run(folder)
    job = search_job.search(run=None, seed=0, build_only=True)
    signal_at(job, step, signal.SIGUSR2)
    with pytest.raises(Preempted):
        job.fit(part)
    return part, checkpoint.load_checkpoint(part.checkpoint_path)


def test_a_search_signalled_mid_epoch_resumes_at_its_batch(
    tmp_path, searched, reads, previous_handlers
):
    # In the 2nd step of epoch 2: checkpointed after it.
    part, saved = search_preempted_at(SEARCH, tmp_path / "part", 5)
    assert saved["epoch"] == 1 and saved["position"]["epoch"] == 2
    assert saved["position"]["batch"] == 2
    assert saved["arch_batches"]["taken"] == 2  # the architecture's batches: as many
    assert part.info["checkpoints"][0]["epoch"] == 1
    assert part.info["checkpoints"][0]["batch"] == 2

    final = search_job.search(run=part, seed=0)
    keys = ("model", "architect", "optimizer", "rng", "arch_batches")
    assert_as_uninterrupted(part, final, reads, search_images, searched, keys)


def test_a_one_level_search_signalled_mid_epoch_resumes_at_its_batch(
    tmp_path, reads, previous_handlers
):
    """SNAS's step (search/snas): the Gumbel draws and drop-path masks of the global generator,
    the alphas' SGD, all 12 images for both, batches of 5, 5 and the last incomplete 2."""
    one_level = [
        *SEARCH,
        "search.batch_size = 5",
        "search.one_level = True",
        "search.train_portion = 1.0",
        "search.valid_set = 'test'",
        "search.drop_last = False",
        "Architect.optimizer = 'sgd'",
        "Architect.grad_clip = 10.0",
        "SearchNetwork.relaxation = 'gumbel_soft'",
        "SearchNetwork.drop_path_prob = 0.3",
        "collapse_metrics.every = 0",
    ]
    weights = lambda item: item[0] == SEARCH_SIZE  # noqa: E731
    fit = lambda run: search_job.search(run=run, seed=0)  # noqa: E731
    full = uninterrupted(one_level, fit, tmp_path / "full", weights)
    assert len(full["reads"]) == 2 * SEARCH_SIZE
    reads.clear()  # the uninterrupted run's
    part, saved = search_preempted_at(one_level, tmp_path / "part", 5)
    assert (saved["position"]["epoch"], saved["position"]["batch"]) == (2, 2)
    final = search_job.search(run=part, seed=0)
    keys = ("model", "architect", "optimizer", "rng")
    assert_as_uninterrupted(part, final, reads, weights, full, keys)


def test_a_training_terminated_mid_epoch_resumes_at_its_batch(
    tmp_path, trained, reads, previous_handlers
):
    gin.parse_config(TRAIN)
    part = make_run(tmp_path / "part")
    job = train_job.train(run=None, seed=0, build_only=True)
    signal_at(job, 3, signal.SIGTERM)  # the previous handler exits 143 after the checkpoint
    with pytest.raises(SystemExit):
        job.fit(part)
    saved = checkpoint.load_checkpoint(part.checkpoint_path)
    assert saved["epoch"] == 0 and saved["position"]["batch"] == 3

    final = train_job.train(run=part, seed=0)
    keys = ("model", "optimizer", "rng")
    assert_as_uninterrupted(part, final, reads, train_images, trained, keys)
    assert len(trained["reads"]) == 2 * TRAIN_SIZE
    assert sorted(trained["reads"][:TRAIN_SIZE]) == [(TRAIN_SIZE, i) for i in range(TRAIN_SIZE)]


def test_a_signal_in_the_evaluation_stops_it_and_the_resumed_run_evaluates_the_epoch(
    tmp_path, trained, reads, previous_handlers, monkeypatch
):
    """An evaluation may outlast the minutes a time limit leaves: the signal stops it, the
    checkpoint holds every batch of the epoch, and the resumed run evaluates it again."""
    gin.parse_config(TRAIN)
    part = make_run(tmp_path / "part")
    job = train_job.train(run=None, seed=0, build_only=True)
    signal_in_evaluation(monkeypatch, job, 1, signal.SIGUSR2)
    with pytest.raises(Preempted):
        job.fit(part)
    saved = checkpoint.load_checkpoint(part.checkpoint_path)
    assert saved["epoch"] == 0 and saved["position"]["batch"] == TRAIN_SIZE // 4
    assert not part.metrics_path.exists() or not part.metrics_path.read_text()

    final = train_job.train(run=part, seed=0)
    assert_as_uninterrupted(part, final, reads, train_images, trained, ("model", "rng"))


def test_a_run_whose_signal_handler_returns_checkpoints_and_goes_on(
    tmp_path, trained, reads, monkeypatch
):
    """submitit only logs SIGTERM (Slurm requeues a preempted job itself): the run
    checkpoints its place, in a batch and in an evaluation, goes on, and ends as an
    uninterrupted run."""
    gin.parse_config(TRAIN)
    logged = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: logged.append(signum))
    try:
        part = make_run(tmp_path / "part")
        job = train_job.train(run=None, seed=0, build_only=True)
        signal_at(job, 2, signal.SIGTERM)
        signal_in_evaluation(monkeypatch, job, 2, signal.SIGTERM)
        final = job.fit(part)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert logged == [signal.SIGTERM] * 2
    places = [(r["epoch"], r.get("batch")) for r in part.info["checkpoints"]]
    assert places == [(2, None), (1, 4), (1, None), (0, 2)]
    assert_as_uninterrupted(part, final, reads, train_images, trained, ("model", "rng"))


class Killed(Exception):
    """Stands for a SIGKILL just after a chosen checkpoint is written."""


def test_the_interval_checkpoints_inside_epochs_and_a_kill_resumes_there(
    tmp_path, trained, reads, monkeypatch
):
    """``midepoch_checkpoints.every_batches``: a run killed outright (no signal) just after
    its checkpoint at batch 2 of epoch 2 resumes from it; without the binding (the
    uninterrupted run) there is none."""
    assert [(r["epoch"], r.get("batch")) for r in trained["records"]] == [(2, None), (1, None)]
    gin.parse_config([*TRAIN, "midepoch_checkpoints.every_batches = 2"])
    written = []
    real = checkpoint.save_checkpoint

    def save(path, state):
        real(path, state)
        written.append((state["epoch"], state.get("position", {}).get("batch")))
        if written[-1] == (1, 2) and len(written) == 3:
            raise Killed

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    part = make_run(tmp_path / "part")
    with pytest.raises(Killed):
        train_job.train(run=part, seed=0)
    final = train_job.train(run=part, seed=0)
    # Batch 2 of each epoch, never after the last batch (the epoch's own checkpoint follows).
    assert written == [(0, 2), (1, None), (1, 2), (2, None)]
    assert_as_uninterrupted(part, final, reads, train_images, trained, ("model", "rng"))


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


def test_sharpdarts_run_terminated_mid_epoch_is_interrupted_and_resumes_there(
    tmp_path, capsys, monkeypatch
):
    """Through the command line: SIGTERM in the first batch of a 2-batch epoch ends the run as
    'interrupted' (its handler exits 143) after a checkpoint of batch 1; the same command
    resumes there and logs each epoch once."""
    from sharpdarts.face import cli

    command = ["run", "cifar10/sharpsepconv_darts", "--smoke", "--results", str(tmp_path)]
    real, count = train_job.TrainJob.train_step, [0]

    def train_step(self, x, y):
        count[0] += 1
        if count[0] == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, x, y)

    monkeypatch.setattr(train_job.TrainJob, "train_step", train_step)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as ended:
            cli.main([*command, "--gin_param", "make_context.device = 'cpu'"])
        assert ended.value.code == 143
        [folder] = [p.parent for p in tmp_path.glob("runs/*/*/*/run.json")]
        info = json.loads((folder / "run.json").read_text())
        assert info["status"] == "interrupted"
        saved = checkpoint.load_checkpoint(folder / "checkpoint.pt")
        assert (saved["epoch"], saved["position"]["batch"]) == (0, 1)
        capsys.readouterr()

        assert cli.main([*command, "--gin_param", "make_context.device = 'cpu'"]) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "completed" and info["resumes"] == 1
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert count[0] == 4  # 2 epochs of 2 batches: the one done before the signal not redone


def _agreeing_worker(rank: int, port: int, out_dir: str) -> None:
    """One of two gloo processes: only rank 1 is signalled (in its 3rd batch); both must
    checkpoint after the same batch, and a sharded loader resumed there reads the rest."""
    import torch.distributed as dist
    from spawning import join_group, result_path

    from sharpdarts.engine.preemption import AGREE_EVERY, Preemption

    ctx = join_group(rank, port, 2)
    try:
        answers = []
        with Preemption(ctx) as preemption:
            for batch in range(1, 2 * AGREE_EVERY + 1):
                if rank == 1 and batch == 3:
                    preemption.caught = signal.SIGTERM  # as its handler would note it
                answers.append(preemption.due(batch, batch == 2 * AGREE_EVERY))
                if answers[-1]:
                    preemption.caught = None  # checkpointed (the signal's handler: not here)
        data = datasets.SyntheticDataset(num_samples=16, image_shape=(1, 2, 2), num_classes=2)
        loader = loaders.make_loader(
            data, 2, shuffle=True, seed=1, distributed=True, drop_last=True
        )
        loader.sampler.set_epoch(3)
        whole = list(loader.sampler)
        loader.sampler.skip_next(2 * 2)
        rest = list(loader.sampler)
        torch.save({"answers": answers, "whole": whole, "rest": rest}, result_path(out_dir, rank))
    finally:
        dist.destroy_process_group()


def test_under_torchrun_every_process_checkpoints_after_the_same_batch(tmp_path):
    from spawning import run_ranks

    from sharpdarts.engine.preemption import AGREE_EVERY

    ranks = run_ranks(_agreeing_worker, tmp_path, 2)
    expected = [batch == AGREE_EVERY for batch in range(1, 2 * AGREE_EVERY + 1)]
    assert ranks[0]["answers"] == ranks[1]["answers"] == expected
    for rank in ranks:  # each process's shard, from its 3rd batch
        assert rank["rest"] == rank["whole"][4:] and len(rank["whole"]) == 8
    assert set(ranks[0]["whole"]).isdisjoint(ranks[1]["whole"])
