"""The progress display: a bar with epoch, step, loss and time left on a terminal; one line
per epoch when the output is not a terminal; nothing when show_progress is off."""

import io
import re

import torch

from sharpdarts.engine.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _fit(progress, epochs=3, steps=8):
    """Drives a Progress as engine.loop.fit does, over a loader of ``steps`` batches."""
    for epoch in range(1, epochs + 1):
        for step, batch in enumerate(progress.bar(list(range(steps)), epoch)):
            progress.step(step, torch.tensor(2.5 - 0.1 * epoch))
        progress.epoch_done(
            epoch,
            {
                "epoch": epoch,
                "lr": 0.025,
                "train_loss": 2.5 - 0.1 * epoch,
                "train_acc": 10.0 * epoch,
                "seconds": 0.5,
            },
        )


def test_not_a_terminal_gives_one_line_per_epoch():
    stream = io.StringIO()
    _fit(Progress("search", 3, 1, show=True, is_main=True, stream=stream))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    for epoch, line in enumerate(lines, 1):
        assert line.startswith(f"search epoch {epoch}/3: lr 0.025 ")
        assert f"train_loss {2.5 - 0.1 * epoch:.4g}" in line and "run left" in line
    assert re.search(r"run left 0m00s\)$", lines[-1])


def test_a_terminal_gets_a_bar_with_epoch_step_loss_and_time_left():
    stream = Terminal()
    _fit(Progress("train", 2, 1, show=True, is_main=True, stream=stream), epochs=2, steps=8)
    text = stream.getvalue()
    assert "train epoch 1/2" in text and re.search(r"\d/8 \[", text) and "step/s" in text
    assert re.search(r"loss 2\.4000, run left \d+m\d\ds", text)
    assert (
        sum(
            line.startswith("train epoch") and ": lr" in line
            for line in text.replace("\r", "\n").splitlines()
        )
        == 2
    )


def test_quiet_when_off_or_not_rank_zero():
    for show, main in ((False, True), (True, False)):
        stream = Terminal()
        _fit(Progress("search", 2, 1, show=show, is_main=main, stream=stream), epochs=2)
        assert stream.getvalue() == ""


def test_time_left_after_a_resume_counts_only_the_epochs_left():
    progress = Progress("train", 10, 6, show=True, is_main=True, stream=io.StringIO())
    progress.started -= 50.0  # 50 s for epoch 6 alone: 4 epochs of 50 s are left after it
    assert abs(progress.left(6) - 200.0) < 5.0
