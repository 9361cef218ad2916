"""What the multi-process tests share: a free local port, joining a gloo group as the engine
does, and running a worker on every rank whose results come back through files."""

from __future__ import annotations

import os
import socket
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


def join_group(rank: int, port: int, world: int):
    """Sets the variables torchrun would set, one thread, and joins through the engine's
    context (gloo on CPU); returns the context."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    return context.make_context(device="cpu")


def result_path(out_dir: str | os.PathLike, rank: int) -> Path:
    """Where rank ``rank``'s worker saves its results."""
    return Path(out_dir) / f"rank{rank}.pt"


def run_ranks(
    worker: Callable[[int, int, str], None], out_dir: str | os.PathLike, world: int
) -> list:
    """Runs ``worker(rank, port, out_dir)`` in ``world`` processes and returns what each
    saved to :func:`result_path`, by rank."""
    mp.spawn(worker, args=(free_port(), str(out_dir)), nprocs=world, join=True)
    return [torch.load(result_path(out_dir, r), weights_only=True) for r in range(world)]
