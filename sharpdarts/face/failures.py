"""What the terminal says when a run fails: one paragraph, never a raw traceback.

An unexpected exception in a run marks the run failed with its reason (an out-of-memory error
names the batch size and the device), writes the full traceback to ``error.log`` in the run
folder, and reaches the command line as :class:`RunFailed` (exit 1). ``sharpdarts -v`` prints
the traceback too.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from sharpdarts.core import run_folder
from sharpdarts.errors import one_line


class RunFailed(Exception):
    """A run ended in an error (exit status 1); the message names its folder and log."""


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


def reason_of(exc: BaseException, built=None) -> str:
    """The reason a run failed, in one line; for an out-of-memory error, the batch size and
    device that ran out (``built`` is the built job, when there is one)."""
    if _is_out_of_memory(exc):
        loader = getattr(built, "train_loader", None) or getattr(built, "loader", None)
        batch = getattr(loader, "batch_size", None)
        ctx = getattr(built, "ctx", None)
        device = str(ctx.device) if ctx is not None else "the device"
        hint = (
            f"; try a smaller batch, e.g. --gin_param BATCH_SIZE={max(1, batch // 2)}"
            if batch
            else ""
        )
        return f"out of memory on {device} with batch size {batch} ({one_line(exc)[:200]}){hint}"
    return f"{type(exc).__name__}: {one_line(exc)[:500]}"


def run_failed(run, exc: BaseException, built=None) -> RunFailed:
    """Records a failed run (reason in run.json, traceback in error.log) and returns the
    :class:`RunFailed` for the command line to report. A record that cannot be written (a
    full disk) is said, not raised: the paragraph still names the folder."""
    reason = reason_of(exc, built)
    log: Path | None = run_folder.error_log_path(run.path)
    try:
        run.write_text(run_folder.ERROR_LOG, "".join(traceback.format_exception(exc)))
    except OSError:
        log = None
    try:
        if run.status == "running":
            run.fail(reason)
    except OSError as write_error:
        reason += f" (and run.json could not be updated: {one_line(write_error)})"
    where = (
        f"The full traceback is in {log}"
        if log is not None
        else "The traceback could not be written to the run folder"
    )
    return RunFailed(
        f"The run failed: {reason}. Its folder is {run.path}; it resumes from its "
        f"last good checkpoint when the same command runs again. {where} (or run "
        "with -v to print it)."
    )


def unexpected(exc: BaseException) -> str:
    """The one paragraph for an unexpected error outside a run (a bug, or a fault of the
    machine): what happened, and how to see the traceback."""
    return (
        f"Unexpected {type(exc).__name__}: {one_line(exc)[:500]}. Nothing more was "
        "written. Run again with -v to see the traceback (and please report it if it looks "
        "like a bug)."
    )
