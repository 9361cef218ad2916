"""Start a command and SIGKILL it once its run has checkpointed and logged an epoch.

Shared by the resume tests (convolutional and language-model runs): the kill must land
mid-run, after a checkpoint exists, like a node dying.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

from sharpdarts.store import reader


def kill_after_epoch(
    cmd: list[str],
    results: Path,
    experiment: str,
    epoch: int,
    *,
    cwd,
    env,
    timeout: float,
    checkpoint: str = "checkpoint.pt",
) -> tuple[Path, str]:
    """Runs ``cmd`` and kills it (SIGKILL) once the run folder of ``experiment`` under
    ``results`` holds a checkpoint (``checkpoint``: a glob inside the run folder, e.g.
    ``phases/*/checkpoint.pt`` for a random search's phases) and metrics.jsonl has logged an
    epoch >= ``epoch``.

    Returns:
        The run folder and the command's output. Asserts that the kill happened.
    """
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    folder = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = [f for f in results.glob(f"runs/{experiment}/*") if any(f.glob(checkpoint))]
            if found and any(r["epoch"] >= epoch for r in reader.read_metrics(found[0])):
                os.kill(proc.pid, signal.SIGKILL)
                folder = found[0]
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and folder is None:
            proc.kill()
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, output
    return folder, output
