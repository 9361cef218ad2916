"""When a run checkpoints inside an epoch: on the scheduler's preemption or time-limit signal,
and every so many batches or minutes when asked.

Slurm's preemption and ``scontrol requeue`` send SIGTERM; submitit acts on the signal that
``--signal`` configures (SIGUSR2 unless ``$SUBMITIT_PREEMPT_SIGNAL`` names another) and
ignores SIGTERM. While the epoch loop runs, :class:`Preemption` catches both: the handler only
notes the signal, the loop finishes the batch in hand, writes a checkpoint of that place in the
epoch, and then hands the signal to the handler that was there before (the command line's
'exit 143, interrupted'; submitit's 'requeue and exit'; the default's 'terminate'), so
everything else that happens on the signal is unchanged. The periodic interval is
:func:`midepoch_checkpoints`, a gin binding, off by default.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

import gin
import torch

from sharpdarts.core import validate
from sharpdarts.engine.context import Context, reduce_sum

log = logging.getLogger(__name__)

# submitit's preemption signal is SIG + this variable's value (USR2 when it is unset).
SUBMITIT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"
# Under torchrun the processes agree on a signal every this many batches (one small
# all-reduce): every process must checkpoint after the same batch.
AGREE_EVERY = 8

MINUTES = validate.Real("a number of minutes > 0", low=0.0, low_open=True)


def preemption_signals() -> tuple[signal.Signals, ...]:
    """SIGTERM and submitit's preemption signal."""
    name = "SIG" + os.environ.get(SUBMITIT_SIGNAL_ENV, "USR2")
    extra = getattr(signal, name, signal.SIGUSR2)
    return tuple(dict.fromkeys((signal.SIGTERM, signal.Signals(extra))))


@gin.configurable
@validate.params(every_batches=validate.COUNT.or_none(), every_minutes=MINUTES.or_none())
def midepoch_checkpoints(
    every_batches: int | None = None, every_minutes: float | None = None, on_signal: bool = True
) -> dict:
    """When a run checkpoints inside its epochs (besides the checkpoint at each epoch's end).

    The search and training jobs, the language-model ones included, read it when they are
    built (so a binding of it takes effect by then).

    Args:
        every_batches: checkpoint after every this many batches of an epoch; None: never.
        every_minutes: checkpoint when this many minutes have passed since the last
            checkpoint; None: never. (An ImageNet epoch takes an hour or more: e.g. 20.)
        on_signal: checkpoint on SIGTERM and submitit's preemption signal, then act on the
            signal as before. False leaves the signals alone (the epoch's work is then lost).
    """
    return {"every_batches": every_batches, "every_minutes": every_minutes, "on_signal": on_signal}


class Interrupted(Exception):
    """A signal came while the epoch's evaluation ran: the evaluation stops there."""


class Preemption:
    """Catches the preemption signals while the epoch loop runs and says when to checkpoint.

    Use as a context manager around the loop; the handlers that were there before come back
    on exit. Signals are caught only in the main thread (Python's rule) and when ``enabled``.

    Args:
        ctx: where the job runs (its processes agree on when to checkpoint).
        settings: :func:`midepoch_checkpoints` as the job was built with (None: its defaults).
        enabled: whether the run can checkpoint inside an epoch at all.
    """

    def __init__(self, ctx: Context, settings: dict | None = None, enabled: bool = True):
        self.ctx = ctx
        settings = settings or {"every_batches": None, "every_minutes": None, "on_signal": True}
        self.every_batches = settings["every_batches"]
        self.every_seconds = (settings["every_minutes"] or 0.0) * 60.0 or None
        self.enabled = enabled
        self.catching = (
            enabled
            and settings["on_signal"]
            and threading.current_thread() is threading.main_thread()
        )
        self.caught: int | None = None
        self.last_save = time.monotonic()
        self._stop_evaluation = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Preemption:
        if self.catching:
            for signum in preemption_signals():
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _note(self, signum: int, frame) -> None:
        del frame  # the loop acts after the batch in hand (a step is never cut short)
        self.caught = signum
        name = signal.Signals(signum).name
        if self._stop_evaluation:
            self._stop_evaluation = False
            log.warning(
                "caught %s: the evaluation stops, the epoch's batches are checkpointed", name
            )
            raise Interrupted(name)
        log.warning("caught %s: checkpointing after this batch", name)

    @property
    def stops_evaluation(self) -> bool:
        """Whether a signal stops the epoch's evaluation (see :meth:`interruptible`)."""
        return self.catching and not self.ctx.distributed

    @contextlib.contextmanager
    def interruptible(self):
        """Around the epoch's evaluation, which may take minutes (ImageNet's) when a time
        limit leaves two: a signal raises :class:`Interrupted` at once, so the run can
        checkpoint its finished batches and hand the signal on in time. Under torchrun the
        processes finish the evaluation together (it ends in a collective) and then act."""
        if not self.stops_evaluation:
            yield
            return
        if self.caught is not None:  # caught just after the last batch's check
            raise Interrupted(signal.Signals(self.caught).name)
        self._stop_evaluation = True
        try:
            yield
        finally:
            self._stop_evaluation = False

    def due(self, batches_done: int, last: bool) -> bool:
        """Whether to checkpoint now, after ``batches_done`` batches of the epoch (``last``:
        the epoch's last); every process gets the same answer. The interval never asks for it
        after the last batch: the epoch's own checkpoint follows."""
        if not self.enabled:
            return False
        by_count = bool(self.every_batches) and batches_done % self.every_batches == 0
        periodic = by_count
        if self.every_seconds is not None:
            periodic |= time.monotonic() - self.last_save >= self.every_seconds
        periodic &= not last
        if self.ctx.distributed and batches_done % AGREE_EVERY and not by_count:
            return False  # the processes compare notes only now and then
        return self._agree(self.caught is not None or periodic)

    def signalled(self) -> bool:
        """Whether a signal was caught (by any process)."""
        return self.enabled and self._agree(self.caught is not None)

    def _agree(self, flag: bool) -> bool:
        """True on every process when it is true on one."""
        if not self.ctx.distributed:
            return flag
        votes = torch.tensor([float(flag)], device=self.ctx.device)
        return bool(reduce_sum(votes, self.ctx).item() > 0)

    def saved(self) -> None:
        """Notes a checkpoint (the minutes count from here)."""
        self.last_save = time.monotonic()

    def pass_on(self) -> None:
        """Acts on a caught signal as the handler before ours would have (after the
        checkpoint): exit, requeue, or nothing; if that handler returns, the run goes on."""
        signum, self.caught = self.caught, None
        if signum is None:
            return
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, None)
        elif previous in (signal.SIG_DFL, None):  # terminate as the signal would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            time.sleep(1.0)  # the process ends here
