"""Run ``sharpdarts`` in a forked process and SIGKILL it once its run has checkpointed and
logged an epoch.

Shared by the resume tests (convolutional, language-model and random-search runs): the kill
must land mid-run, after a checkpoint exists, like a node dying. The process is forked from
the test's (:func:`spawning.start_forked`), so it starts with torch imported: a fresh
interpreter would spend seconds of CPU on imports the kill does not need.
"""

import os
import signal
import time
from pathlib import Path

from spawning import start_forked

from sharpdarts.store import reader


def kill_after_epoch(
    args: list[str],
    results: Path,
    experiment: str,
    epoch: int,
    *,
    log: Path,
    timeout: float = 300,
    checkpoint: str = "checkpoint.pt",
) -> Path:
    """Runs ``sharpdarts <args>`` and kills it (SIGKILL) once the run folder of
    ``experiment`` under ``results`` holds a checkpoint (``checkpoint``: a glob inside the run
    folder, e.g. ``phases/*/checkpoint.pt`` for a random search's phases) and metrics.jsonl
    has logged an epoch >= ``epoch``. Its output goes to ``log``.

    Returns:
        The run folder. Asserts that the kill happened.
    """
    from sharpdarts.face import cli

    pid = start_forked(lambda: cli.main(args), log)
    folder, reaped, status = None, False, 0
    deadline = time.monotonic() + timeout
    try:
        while folder is None and time.monotonic() < deadline:
            ended, status = os.waitpid(pid, os.WNOHANG)
            if ended:  # it ended by itself: not killed
                reaped = True
                break
            found = [f for f in results.glob(f"runs/{experiment}/*") if any(f.glob(checkpoint))]
            if found and any(r["epoch"] >= epoch for r in reader.read_metrics(found[0])):
                os.kill(pid, signal.SIGKILL)
                folder = found[0]
            time.sleep(0.01)
    finally:
        if not reaped:
            if folder is None:
                os.kill(pid, signal.SIGKILL)
            status = os.waitpid(pid, 0)[1]
    output = log.read_text(errors="replace") if log.exists() else ""
    assert folder is not None and os.waitstatus_to_exitcode(status) == -signal.SIGKILL, output
    return folder
