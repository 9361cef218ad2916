"""Checkpoints: atomic saves, ``weights_only`` loads, resume with metrics truncation, weights
from elsewhere (another run, or the original code's checkpoints), and content hashes."""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sharpdarts.core.io import atomic_write
from sharpdarts.engine.context import Context, broadcast_object
from sharpdarts.nn.models import load_original_state_dict

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """Writes atomically and durably: a crash mid-write leaves the previous checkpoint intact."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path | str, map_location="cpu") -> dict:
    """Loads tensors and plain containers only (``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def checkpoint_file(source: str | os.PathLike) -> Path:
    """A checkpoint file, or the checkpoint.pt of a run folder."""
    path = Path(source)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's content (hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def init_weights_from(model: nn.Module, source: str | os.PathLike) -> None:
    """Loads another run's (or the original code's) weights into ``model``, strictly."""
    state = load_checkpoint(checkpoint_file(source))
    load_original_state_dict(model, state.get("model", state) if isinstance(state, dict) else state)


def run_checkpoint_path(run, ctx: Context) -> Path | None:
    """The run's checkpoint file, agreed on by every process (only rank 0 has the run)."""
    del ctx  # every process takes part in the broadcast, whatever its rank
    path = broadcast_object(str(run.checkpoint_path) if run is not None else None)
    return Path(path) if path else None


def resume(run, path: Path | None, ctx: Context, restore: Callable[[dict], None]) -> int:
    """Loads the last checkpoint if there is one and returns the first epoch still to run.

    The run's metrics are truncated to the checkpoint's epoch: an epoch logged after its
    checkpoint (a kill between the two) is redone, never duplicated.
    """
    if path is None or not path.exists():
        if run is not None:
            run.truncate_metrics(None)  # epochs logged before the first checkpoint are redone
        return 1
    state = load_checkpoint(path, map_location=ctx.device)
    restore(state)
    if run is not None:
        run.truncate_metrics(state["epoch"])
    log.info("resuming after epoch %d from %s", state["epoch"], path)
    return state["epoch"] + 1
