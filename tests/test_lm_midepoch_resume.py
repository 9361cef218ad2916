"""The language-model jobs checkpoint inside an epoch too: a training (after its switch to
averaged SGD) and a search signalled partway through an epoch, and a search killed just after
a periodic mid-epoch checkpoint, resume at the next BPTT window and end as an uninterrupted
run (the same figures, weights, optimizer and architecture states; every window of every
epoch stepped once, in order).

The signals are delivered in this process from a chosen training step, with stand-ins for the
handlers that were there before (see tests/test_midepoch_resume.py); the tiny corpus is the
synthetic one (800 training tokens: 32 columns of 25 rows, about 4 windows of ~6 an epoch).
"""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import gin
import pytest
from test_engine import assert_same_state, make_run  # tests/test_engine.py
from test_midepoch_resume import Killed, Preempted, metrics, previous_handlers  # noqa: F401 (a fixture)

from sharpdarts.engine import checkpoint
from sharpdarts.engine.data.bundle import build_datasets
from sharpdarts.engine.lm_jobs import lm_train
from sharpdarts.engine.lm_search import lm_search
from sharpdarts.nn.models import RNNModel, RNNSearchModel

TINY = dict(ninp=8, nhid=8, nhidlast=8)
BATCH, BPTT = 32, 6
# Seed 1 switches to ASGD after epoch 3 (nonmono 1): the signal in epoch 4 is after it.
TRAIN = dict(
    epochs=4,
    batch_size=BATCH,
    bptt=BPTT,
    nonmono=1,
    network=functools.partial(RNNModel, **TINY),
    show_progress=False,
    seed=1,
)
SEARCH = dict(
    epochs=2,
    batch_size=BATCH,
    bptt=BPTT,
    order=1,
    network=functools.partial(RNNSearchModel, steps=2, **TINY),
    show_progress=False,
    seed=3,
)
ROWS = 800 // BATCH  # the training tokens' rows


@pytest.fixture(scope="module")
def corpus():
    return build_datasets(name="synthetic_text")


def build(entry, corpus, params: dict, windows: list, signal_at: tuple[int, int] | None = None):
    """The built job, its steps recorded as ``(epoch, first row, length)`` of each window into
    ``windows``; ``signal_at``: (step, signal) sends the signal to this process in that
    training step (1-based, counted over this job's steps)."""
    job = entry(data=corpus, build_only=True, **params)
    real_step, real_start = job.train_step, job.start_epoch
    epoch, count = [0], [0]

    def start_epoch(number):
        epoch[0] = number
        real_start(number)

    def train_step(x, y):
        count[0] += 1
        if signal_at is not None and count[0] == signal_at[0]:
            os.kill(os.getpid(), signal_at[1])
        windows.append((epoch[0], job.train_loader.start, job.train_loader.seq_len))
        return real_step(x, y)

    job.start_epoch, job.train_step = start_epoch, train_step
    return job


def uninterrupted(entry, corpus, params: dict, folder: Path) -> dict:
    windows: list = []
    run = make_run(folder)
    final = build(entry, corpus, params, windows).fit(run)
    state = checkpoint.load_checkpoint(run.checkpoint_path)
    return {"metrics": metrics(run), "final": final, "state": state, "windows": windows}


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> dict:
    return uninterrupted(lm_train, corpus, TRAIN, tmp_path_factory.mktemp("lm_train") / "full")


@pytest.fixture(scope="module")
def searched(corpus, tmp_path_factory) -> dict:
    return uninterrupted(lm_search, corpus, SEARCH, tmp_path_factory.mktemp("lm_search") / "full")


def assert_tiles_each_epoch(windows: list, epochs: int) -> None:
    """Each epoch's windows start at row 0, each where the one before ended, and run to the
    end of the rows: every row of every epoch is stepped once."""
    for epoch in range(1, epochs + 1):
        steps = [(start, length) for e, start, length in windows if e == epoch]
        assert steps[0][0] == 0
        assert all(b[0] == a[0] + a[1] for a, b in zip(steps, steps[1:])), steps
        assert steps[-1][0] < ROWS - 2 <= steps[-1][0] + steps[-1][1]


def assert_as_uninterrupted(run, final, windows: list, full: dict, keys: tuple) -> None:
    assert metrics(run) == full["metrics"]
    assert final == full["final"]
    assert windows == full["windows"]  # no window stepped twice, none skipped
    state = checkpoint.load_checkpoint(run.checkpoint_path)
    for key in keys:
        assert_same_state(state[key], full["state"][key], key)


@pytest.mark.usefixtures("previous_handlers")
def test_a_training_signalled_mid_epoch_after_the_asgd_switch_resumes_at_its_window(
    tmp_path, corpus, trained
):
    epochs = TRAIN["epochs"]
    assert_tiles_each_epoch(trained["windows"], epochs)
    assert trained["final"]["asgd_epoch"] == 3
    step = sum(1 for w in trained["windows"] if w[0] < 4) + 2  # the 2nd window of epoch 4
    part = make_run(tmp_path / "part")
    windows: list = []
    job = build(lm_train, corpus, TRAIN, windows, signal_at=(step, signal.SIGUSR2))
    with pytest.raises(Preempted):
        job.fit(part)
    saved = checkpoint.load_checkpoint(part.checkpoint_path)
    assert saved["epoch"] == 3 and saved["asgd_epoch"] == 3
    position = saved["position"]
    assert (position["epoch"], position["batch"]) == (4, 2)
    assert position["loader"]["row"] == sum(w[2] for w in windows if w[0] == 4)
    assert (part.info["checkpoints"][0]["epoch"], part.info["checkpoints"][0]["batch"]) == (3, 2)
    # The averaged SGD's state (its running average of each weight) is in the checkpoint.
    assert all("ax" in s for s in saved["optimizer"]["state"].values())
    [hidden] = position["job"]["hidden"]
    assert hidden.shape == (1, TRAIN["batch_size"], TINY["nhid"]) and hidden.abs().sum() > 0

    final = build(lm_train, corpus, TRAIN, windows).fit(part)
    keys = ("model", "optimizer", "rng", "best_model", "val_history")
    assert_as_uninterrupted(part, final, windows, trained, keys)


@pytest.mark.usefixtures("previous_handlers")
def test_a_search_terminated_mid_epoch_resumes_at_its_window(tmp_path, corpus, searched):
    assert_tiles_each_epoch(searched["windows"], SEARCH["epochs"])
    assert {w[2] for w in searched["windows"]} <= {BPTT, BPTT // 2}  # the search's: no jitter
    part = make_run(tmp_path / "part")
    windows: list = []
    job = build(lm_search, corpus, SEARCH, windows, signal_at=(3, signal.SIGTERM))
    with pytest.raises(SystemExit):  # the previous handler exits 143 after the checkpoint
        job.fit(part)
    saved = checkpoint.load_checkpoint(part.checkpoint_path)
    assert (saved["epoch"], saved["position"]["epoch"], saved["position"]["batch"]) == (0, 1, 3)
    assert set(saved["position"]["job"]) == {"hidden", "hidden_valid"}

    final = build(lm_search, corpus, SEARCH, windows).fit(part)
    keys = ("model", "optimizer", "architect", "rng", "best")
    assert_as_uninterrupted(part, final, windows, searched, keys)


def test_a_search_killed_after_a_periodic_checkpoint_resumes_there(
    tmp_path, corpus, searched, monkeypatch
):
    """``midepoch_checkpoints.every_batches`` binds the language-model jobs too: a search
    killed outright just after its checkpoint inside epoch 2 resumes from it; the interval
    never checkpoints after an epoch's last window (the epoch's own checkpoint follows)."""
    first, second = [sum(1 for w in searched["windows"] if w[0] == e) for e in (1, 2)]
    every = first // 2  # falls on epoch 1's last window
    assert first == 2 * every and second > every
    gin.parse_config([f"midepoch_checkpoints.every_batches = {every}"])
    written = []
    real = checkpoint.save_checkpoint

    def save(path, state):
        real(path, state)
        written.append((state["epoch"], state.get("position", {}).get("batch")))
        if written[-1] == (1, every):
            raise Killed

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    part = make_run(tmp_path / "part")
    windows: list = []
    with pytest.raises(Killed):
        build(lm_search, corpus, SEARCH, windows).fit(part)
    expected = [(0, every), (1, None), (1, every)]
    assert written == expected
    final = build(lm_search, corpus, SEARCH, windows).fit(part)
    rest = [(1, b) for b in range(2 * every, second, every)]
    assert written == [*expected, *rest, (2, None)]
    assert_as_uninterrupted(part, final, windows, searched, ("model", "architect", "rng"))
