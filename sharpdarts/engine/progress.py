"""What a run shows while it trains: a progress bar on a terminal, one line per epoch elsewhere.

On a terminal (rank 0, ``show_progress`` on) a tqdm bar runs over each epoch's steps, showing
the epoch, the step, the running training loss and the time left for the whole run, not just
the epoch. When the output is no terminal (CI, a Slurm log), a bar would fill the log with
carriage returns: then nothing is drawn during an epoch, and one line per epoch is written
instead. Both go to stderr, so that stdout keeps the run folder lines that scripts read.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm import tqdm

# How many loss updates a bar gets per epoch: reading the loss synchronises a GPU.
_UPDATES_PER_EPOCH = 50


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """The progress of one fit: ``bar`` wraps an epoch's loader, ``epoch_done`` reports it.

    Args:
        name: the job's name ('search', 'train').
        epochs: the run's last epoch.
        first_epoch: the epoch this process starts at (after a resume).
        show: the job's ``show_progress``; nothing at all is shown when False.
        is_main: rank 0 (the other ranks show nothing).
        stream: where to write (stderr); a bar is drawn only when it is a terminal.
    """

    def __init__(
        self,
        name: str,
        epochs: int,
        first_epoch: int,
        show: bool,
        is_main: bool,
        stream: IO[str] | None = None,
    ):
        self.name, self.epochs, self.first_epoch = name, epochs, first_epoch
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(show and is_main)
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = self.enabled and bool(isatty and isatty())
        self.started = time.time()
        self._bar: tqdm | None = None

    def left(self, epoch: int, fraction: float = 1.0) -> float:
        """Seconds left for the run, from the mean time of the epochs done in this process."""
        done = (epoch - self.first_epoch) + fraction
        if done <= 0:
            return float("nan")
        per_epoch = (time.time() - self.started) / done
        return per_epoch * (self.epochs - epoch + 1 - fraction)

    def bar(self, loader, epoch: int):
        """The epoch's loader, wrapped in a bar on a terminal (see ``step``)."""
        if not self.interactive:
            return loader
        self._bar = tqdm(
            loader,
            desc=f"{self.name} epoch {epoch}/{self.epochs}",
            leave=False,
            dynamic_ncols=True,
            file=self.stream,
            unit="step",
        )
        self._epoch = epoch
        return self._bar

    def step(self, index: int, loss: Any) -> None:
        """Shows the loss and the run's time left after step ``index`` (0-based), now and then."""
        if self._bar is None:
            return
        total = self._bar.total or 0
        every = max(1, total // _UPDATES_PER_EPOCH)
        if index % every == 0 or index + 1 == total:
            fraction = (index + 1) / total if total else 0.0
            value = loss.item() if hasattr(loss, "item") else float(loss)
            self._bar.set_postfix_str(
                f"loss {value:.4f}, run left {_duration(self.left(self._epoch, fraction))}",
                refresh=True,
            )  # at most ~50 times an epoch

    def epoch_done(self, epoch: int, record: dict) -> None:
        """One line for the epoch: its losses and accuracies, its time and the run's time left."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self.enabled:
            return
        figures = " ".join(
            f"{k} {v:.4g}"
            for k, v in record.items()
            if isinstance(v, float) and k not in ("seconds", "lr")
        )
        line = (
            f"{self.name} epoch {epoch}/{self.epochs}: lr {record.get('lr', float('nan')):.3g} "
            f"{figures} ({record.get('seconds', 0.0):.1f}s, run left "
            f"{_duration(self.left(epoch))})"
        )
        print(line, file=self.stream, flush=True)
