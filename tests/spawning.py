"""What the multi-process tests share: a free local port, joining a gloo group as the engine
does, running a worker on every rank whose results come back through files, racing forked
processes, and starting one forked process to kill."""

from __future__ import annotations

import os
import socket
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp

from sharpdarts.engine import context


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_torchrun_variables(rank: int, port: int, world: int) -> None:
    """Sets the variables torchrun sets for process ``rank`` of ``world`` on this host."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )


def join_group(rank: int, port: int, world: int):
    """Sets the variables torchrun would set, one thread, and joins through the engine's
    context (gloo on CPU); returns the context."""
    set_torchrun_variables(rank, port, world)
    torch.set_num_threads(1)
    return context.make_context(device="cpu")


def result_path(out_dir: str | os.PathLike, rank: int) -> Path:
    """Where rank ``rank``'s worker saves its results."""
    return Path(out_dir) / f"rank{rank}.pt"


def run_ranks(
    worker: Callable[[int, int, str], None], out_dir: str | os.PathLike, world: int
) -> list:
    """Runs ``worker(rank, port, out_dir)`` in ``world`` processes and returns what each
    saved to :func:`result_path`, by rank.

    The processes are forked from the test process (which has joined no process group): they
    start with torch imported, where spawned ones would pay 2 to 4 s of CPU each to import it
    and this module again."""
    mp.start_processes(
        worker, args=(free_port(), str(out_dir)), nprocs=world, join=True, start_method="fork"
    )
    return [torch.load(result_path(out_dir, r), weights_only=True) for r in range(world)]


def race_forked(calls: list[Callable[[], int | None]], log_dir: str | os.PathLike) -> list[int]:
    """Runs each call in its own forked process, all released at the same moment, and returns
    their exit statuses (a call's return value; 99 when it raised).

    Forked from the test process, the children start with torch and the package imported
    (a fresh interpreter pays 2 to 4 s of CPU for that), so they meet in the code under test
    at once: each waits on a pipe that the parent closes when every child exists. Child ``i``
    writes its stdout and stderr to ``log_dir/i.out`` (see :func:`forked_output`).
    """
    read_end, write_end = os.pipe()
    pids: list[int] = []
    try:
        _fork_each(calls, log_dir, read_end, write_end, pids)
    finally:
        os.close(read_end)
        os.close(write_end)  # releases the children
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]


def _fork_each(calls, log_dir, read_end: int, write_end: int, pids: list[int]) -> None:
    for i, call in enumerate(calls):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            _child(call, Path(log_dir) / f"{i}.out", read_end, write_end)
        pids.append(pid)


def start_forked(call: Callable[[], int | None], log: str | os.PathLike) -> int:
    """Starts ``call`` in a process forked from this one and returns its pid at once (for a
    test that signals or kills it; reap it with ``os.waitpid``). Its exit status is the call's
    return value (0 for None; 99 when it raised); its stdout and stderr go to ``log``.

    Forked, it starts with torch and the package imported, where a fresh interpreter pays 2 to
    4 s of CPU for them: for a test about a process that dies, not about a fresh one."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        _child(call, log)
    return pid


def _child(call, log: Path, read_end: int | None = None, write_end: int | None = None):
    """A forked child's whole life: output to ``log``, wait for the parent to close its
    ``write_end`` of the pipe (if given), run ``call`` and exit with its status."""
    code = 99
    try:
        if write_end is not None:
            os.close(write_end)  # the parent's alone: its closing is the release
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        if read_end is not None:
            os.read(read_end, 1)  # end of file once the parent has closed its end
        result = call()
        code = 0 if result is None else int(result)
    except BaseException:  # noqa: BLE001 - reported through the log and status 99
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def forked_output(log_dir: str | os.PathLike, i: int) -> str:
    """What child ``i`` of :func:`race_forked` printed."""
    return (Path(log_dir) / f"{i}.out").read_text(errors="replace")
