"""Checkpoints: atomic saves that survive damage, ``weights_only`` loads, resume with metrics
truncation, weights from elsewhere (another run, or the original code's checkpoints), and
content hashes.

A run keeps its last two good checkpoints: ``checkpoint.pt`` (newest) and
``checkpoint.prev.pt``. A save serialises the state, records its sha256 in run.json *before*
the file exists (so every checkpoint on disk has its checksum recorded), writes
``checkpoint.next.pt`` atomically (temp file, fsync, rename: a full disk leaves everything as it
was), then rotates ``checkpoint.pt -> checkpoint.prev.pt`` and ``checkpoint.next.pt ->
checkpoint.pt`` by renames, which need no space. On resume the newest checkpoint that matches
its recorded checksum and loads is used; a damaged one is renamed aside (never deleted), the
event goes into run.json and is said in one line. When none is left, the run stops with
:class:`NoGoodCheckpointError` unless restarting from epoch 1 was asked for.

The run folder is reached only through the duck-typed run object (``info``, ``update``,
``truncate_metrics``): the engine never imports the store. The files' names are
:mod:`sharpdarts.core.run_folder`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sharpdarts.core import run_folder
from sharpdarts.core.io import atomic_write, fsync_dir
from sharpdarts.engine.context import Context, broadcast_object
from sharpdarts.nn.models import load_original_state_dict

log = logging.getLogger(__name__)

RECORDS = "checkpoints"  # run.json: [{"epoch", "sha256"}], newest first
EVENTS = "checkpoint_events"  # run.json: damaged checkpoints set aside, restarts
LOST = "checkpoint_lost"  # run.json: every checkpoint was damaged; --restart needed
_KEEP_RECORDS = 8  # the two kept, the one being written, and some to spare for kills mid-save


class NoGoodCheckpointError(RuntimeError):
    """Every checkpoint of a run was damaged (each is set aside, nothing is deleted)."""


class PreparedState(dict):
    """A checkpoint state with its serialised bytes and their sha256, so that the checksum can
    be recorded before the file is written."""

    payload: bytes
    sha256: str


def prepare(state: dict) -> PreparedState:
    """Serialises ``state`` once (what is hashed is exactly what is written)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    prepared = PreparedState(state)
    prepared.payload = buffer.getvalue()
    prepared.sha256 = hashlib.sha256(prepared.payload).hexdigest()
    return prepared


def save_checkpoint(path: Path, state: dict) -> None:
    """Writes ``path`` atomically and durably, keeping the checkpoint it replaces as
    ``checkpoint.prev.pt``: a crash or a full disk at any point leaves the previous one intact."""
    path = Path(path)
    data = state.payload if isinstance(state, PreparedState) else prepare(state).payload
    fresh = path.with_name(run_folder.CHECKPOINT_NEXT)
    atomic_write(fresh, data)
    if path.exists():
        os.replace(path, path.with_name(run_folder.CHECKPOINT_PREVIOUS))
    os.replace(fresh, path)
    fsync_dir(path.parent)


def record_checkpoint(run, epoch: int, sha256: str, batch: int | None = None) -> None:
    """Records a checkpoint's checksum in run.json (before its file is written): ``epoch`` is
    the last epoch done, ``batch`` the batches done of the next one (a mid-epoch checkpoint)."""
    records = [r for r in run.info.get(RECORDS) or [] if r.get("sha256") != sha256]
    record = {"epoch": int(epoch), "sha256": sha256}
    if batch is not None:
        record["batch"] = int(batch)
    run.update(**{RECORDS: [record, *records][:_KEEP_RECORDS]})


def load_checkpoint(path: Path | str, map_location="cpu") -> dict:
    """Loads tensors and plain containers only (``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's content (hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def init_weights_from(model: nn.Module, source: str | os.PathLike) -> None:
    """Loads another run's (or the original code's) weights into ``model``, strictly."""
    state = load_checkpoint(run_folder.checkpoint_file(source))
    load_original_state_dict(model, state.get("model", state) if isinstance(state, dict) else state)


def run_checkpoint_path(run, ctx: Context) -> Path | None:
    """The run's checkpoint file, agreed on by every process (only rank 0 has the run)."""
    del ctx  # every process takes part in the broadcast, whatever its rank
    path = broadcast_object(str(run.checkpoint_path) if run is not None else None)
    return Path(path) if path else None


def _set_aside(path: Path) -> Path:
    """Renames a damaged checkpoint out of the way (never deletes it)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1000):
        aside = path.with_name(f"{path.name}.damaged-{stamp}" + (f"-{n}" if n else ""))
        if not aside.exists():
            os.replace(path, aside)
            fsync_dir(path.parent)
            return aside
    raise FileExistsError(f"no free name to set {path} aside")


def _said(events: list[dict]) -> str:
    """The damaged files of ``events`` in words, for the one line that says what happened."""
    return "; ".join(
        f"{e['file']} is damaged ({e['reason'][:150]})"
        + (f" and was set aside as {e['set_aside_as']}" if "set_aside_as" in e else "")
        for e in events
    )


def _candidates(run, path: Path) -> list[tuple[Path, int | None]]:
    """The checkpoint files on disk, newest recorded epoch first (``checkpoint.pt`` alone, with
    no epoch, for a run written before checksums were recorded)."""
    records = run.info.get(RECORDS)
    names = (run_folder.CHECKPOINT_NEXT, run_folder.CHECKPOINT, run_folder.CHECKPOINT_PREVIOUS)
    files = [f for f in (path.with_name(n) for n in names) if f.exists()]
    if not records:
        return [(f, None) for f in files if f.name == run_folder.CHECKPOINT]
    places = {r["sha256"]: (int(r["epoch"]), int(r.get("batch", 0))) for r in records}
    found = [(f, places.get(file_sha256(f))) for f in files]
    # Unrecorded checksums (damaged files) first, so they are set aside; then newest first
    # (a mid-epoch checkpoint after the end of the epoch before it).
    found.sort(key=lambda item: (item[1] is not None, [-n for n in item[1] or (0, 0)]))
    return [(f, place[0] if place is not None else None) for f, place in found]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _logged_through(run, epoch: int) -> bool:
    """Whether the run's metrics hold every epoch up to ``epoch`` (a damaged metrics.jsonl
    loses lines: resuming after them would leave those epochs unlogged for good)."""
    logged = getattr(run, "logged_epochs", None)
    return logged is None or set(range(1, epoch + 1)) <= set(logged())


def _choose(run, path: Path, ctx: Context, restart: bool) -> tuple[Path | None, dict | None]:
    """The newest good checkpoint whose epochs are all logged, and its state; sets damaged
    ones aside and records what happened in run.json."""
    for stale in path.parent.glob(".checkpoint*.tmp"):  # left by a kill mid-write
        with contextlib.suppress(OSError):
            stale.unlink()
    events, unlogged = [], []
    chosen, state = None, None
    for file, epoch in _candidates(run, path):
        if run.info.get(RECORDS) and epoch is None:
            reason = "its sha256 matches no checksum recorded in run.json"
        else:
            try:
                state = load_checkpoint(file, map_location=ctx.device)
            except Exception as exc:  # a cut-short zip, garbage bytes: all mean damaged
                reason = f"it does not load ({type(exc).__name__}: {' '.join(str(exc).split())})"
            else:
                if _logged_through(run, int(state["epoch"])):
                    chosen = file
                    break
                unlogged.append(f"{file.name} (epoch {state['epoch']})")
                state = None
                continue  # a good file, kept: only the metrics before it are missing
        aside = _set_aside(file)
        events.append(
            {"time": _now(), "file": file.name, "set_aside_as": aside.name, "reason": reason[:300]}
        )
    if unlogged:
        events.append(
            {
                "time": _now(),
                "file": run_folder.METRICS,
                "reason": "epochs are missing before " + ", ".join(unlogged),
            }
        )
    lost = bool(events or run.info.get(LOST)) and chosen is None
    said = _said(events)
    if lost and not restart:
        run.update(**{EVENTS: [*(run.info.get(EVENTS) or []), *events], LOST: True})
        raise NoGoodCheckpointError(
            f"No good checkpoint is left in {path.parent}: {said or 'none was left'}. Nothing "
            "was deleted (see checkpoint_events in run.json). Run the same command with "
            "--restart to start this run again from epoch 1 in the same folder."
        )
    if lost:  # --restart: the old metrics are kept aside too, never deleted
        metrics = getattr(run, "metrics_path", None)
        if metrics is not None and Path(metrics).exists():
            events.append(
                {
                    "time": _now(),
                    "file": Path(metrics).name,
                    "set_aside_as": _set_aside(Path(metrics)).name,
                    "reason": "the run restarts from epoch 1",
                }
            )
    if events or lost or run.info.get(LOST):
        summary = (
            {"resumed_from": chosen.name, "epoch": int(state["epoch"])}
            if chosen is not None
            else {"restarted": True, "epoch": 0}
        )
        run.update(
            **{
                EVENTS: [*(run.info.get(EVENTS) or []), *events, {"time": _now(), **summary}],
                LOST: False,
            }
        )
        print(
            f"{path.parent}: {said + '; ' if said else ''}"
            + (
                f"resuming from {chosen.name} (epoch {state['epoch']})"
                if chosen is not None
                else "restarting from epoch 1 (--restart: no good checkpoint was left)"
            ),
            file=sys.stderr,
            flush=True,
        )
    # a kill mid-rotation: finish it
    if chosen is not None and chosen.name == run_folder.CHECKPOINT_NEXT:
        if path.exists():
            os.replace(path, path.with_name(run_folder.CHECKPOINT_PREVIOUS))
        os.replace(chosen, path)
        fsync_dir(path.parent)
        chosen = path
    return chosen, state


def resume(
    run, path: Path | None, ctx: Context, restore: Callable[[dict], None], restart: bool = False
) -> int:
    """Loads the newest good checkpoint if there is one and returns the first epoch to run.

    The run's metrics are truncated to the checkpoint's epoch: an epoch logged after its
    checkpoint (a kill between the two) is redone, never duplicated.

    Args:
        run: the run (rank 0), or None on the other processes and when recording nothing.
        path: where the run's checkpoint lives (on every process), or None.
        ctx: where the state is loaded to.
        restore: puts a loaded state into the job.
        restart: when every checkpoint is damaged, start again from epoch 1 (in the same
            folder) instead of raising :class:`NoGoodCheckpointError`.
    """
    if path is None:
        if run is not None:
            run.truncate_metrics(None)
        return 1
    outcome = {"file": None, "error": None}
    state = None
    if run is not None:
        try:
            chosen, state = _choose(run, path, ctx, restart)
            outcome["file"] = str(chosen) if chosen is not None else None
        except NoGoodCheckpointError as exc:
            outcome["error"] = str(exc)
    outcome = broadcast_object(outcome)  # every process resumes from rank 0's choice
    if outcome["error"]:
        raise NoGoodCheckpointError(outcome["error"])
    if outcome["file"] is None:
        if run is not None:
            run.truncate_metrics(None)  # epochs logged before the first checkpoint are redone
        return 1
    if state is None:
        state = load_checkpoint(outcome["file"], map_location=ctx.device)
    restore(state)
    if run is not None:
        run.truncate_metrics(state["epoch"])
    inside = state.get("position")
    log.info(
        "resuming after epoch %d%s from %s",
        state["epoch"],
        f" and batch {inside['batch']} of epoch {inside['epoch']}" if inside else "",
        outcome["file"],
    )
    return state["epoch"] + 1
