"""A reader that goes away first (``| true``, ``| head -1``) ends the command quietly."""

import shlex
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "command, reader",
    [("list", "true"), ("table cifar10 --results {tmp}", "true"), ("list", "head -1")],
    ids=["list-true", "table-true", "list-head"],
)
def test_a_closed_pipe_ends_quietly(tmp_path, command, reader):
    """``true`` closes the pipe before the command writes: its first write fails."""
    sharpdarts = f"{shlex.quote(sys.executable)} -m sharpdarts {command.format(tmp=tmp_path)}"
    script = f"set -o pipefail; {sharpdarts} 2>{tmp_path}/err | {reader}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert (tmp_path / "err").read_text() == ""
    assert proc.returncode in (0, 141)  # 141: ended by the closed pipe, as Unix tools are
