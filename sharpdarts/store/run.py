"""One run folder, written by the process that runs it: run.json, the metrics log, the ending.

Every change to ``run.json`` goes through :meth:`Run.update`, an atomic write
(:func:`sharpdarts.core.io.atomic_write`: temp file, fsync, rename), so a crash leaves the old
or the new file, never a torn one. ``metrics.jsonl`` gets one fsynced line per epoch; an epoch
is never logged twice (``log_epoch`` refuses, ``truncate_metrics`` drops the epochs after a
checkpoint on resume), and nothing is appended after a torn line (the file is repaired first).

A run reads its own folder through :mod:`sharpdarts.store.reader` as recorded: the writer never
renames what it wrote. Tables and plots read today's names through the same reader.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import time
from pathlib import Path
from typing import Any, Iterator

from sharpdarts.core import io, run_folder
from sharpdarts.store import reader
from sharpdarts.store.provenance import parse_time, utc_now

__all__ = ["Run"]


class Run:
    """One run folder. Every change to ``run.json`` goes through :meth:`update` (atomic).

    Args:
        path: the run folder (it must hold a run.json).

    Raises:
        UserError: the folder has no readable run.json.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.info: dict = reader.read_recorded_info(self.path)
        self._epochs: set[int] | None = None  # cache of logged epochs
        self._session_t0: float | None = None  # monotonic start of the session this process owns
        self._session_wall0: float | None = None  # wall time before it

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"

    # ------------------------------------------------------------------ properties
    @property
    def run_id(self) -> str:
        """The folder's name."""
        return self.path.name

    @property
    def experiment(self) -> str | None:
        """The experiment name recorded in run.json."""
        return self.info.get("experiment")

    @property
    def status(self) -> str | None:
        """'running', 'completed', 'failed' or 'interrupted'."""
        return self.info.get("status")

    @property
    def checkpoint_path(self) -> Path:
        """Where the engine keeps the checkpoint to resume from."""
        return run_folder.checkpoint_path(self.path)

    @property
    def metrics_path(self) -> Path:
        """The per-epoch log."""
        return run_folder.metrics_path(self.path)

    # ------------------------------------------------------------------ run.json
    def reload(self) -> dict:
        """Reads run.json again (another process may have changed it)."""
        self.info = reader.read_recorded_info(self.path)
        return self.info

    def update(self, **fields: Any) -> dict:
        """Merge ``fields`` into run.json and write it atomically.

        The in-memory ``info`` changes only once the new file is in place, so a failed write
        leaves both the file and ``info`` as they were.
        """
        new = {**self.info, **fields, "updated": utc_now()}
        text = io.dumps(new, indent=2) + "\n"
        io.atomic_write(run_folder.run_json_path(self.path), text)
        self.info = json.loads(text)  # what a reader will see (tuples as lists, ...)
        return self.info

    def write_text(self, name: str, text: str) -> Path:
        """Write a text file (e.g. 'config.gin', 'operative_config.gin') into the folder."""
        name = str(name)
        reserved = ("", ".", "..", run_folder.RUN_JSON, run_folder.METRICS)
        if Path(name).name != name or name in reserved:
            raise ValueError(f"not a plain file name for a run folder: {name!r}")
        return io.atomic_write(self.path / name, text)

    # ------------------------------------------------------------------ wall time
    def own_session(self) -> None:
        """Start timing the session this process runs (called by start_run)."""
        self._session_t0 = time.monotonic()
        self._session_wall0 = float(self.info.get("wall_seconds_done") or 0.0)

    def wall_seconds(self) -> float:
        """Finished sessions plus the current one (if this process owns it)."""
        done = float(self.info.get("wall_seconds_done") or 0.0)
        if self.info.get("status") != "running":
            return float(self.info.get("wall_seconds") or done)
        if self._session_t0 is not None:
            return (self._session_wall0 or 0.0) + (time.monotonic() - self._session_t0)
        start = parse_time(self.info.get("session_started"))
        return done + (max(0.0, time.time() - start) if start is not None else 0.0)

    def close_session(self, end_time: str | None = None) -> dict:
        """The fields that close the current session (ended, wall_seconds, sessions).

        Args:
            end_time: when the session ended, for a session that another (dead) process
                owned; by default now, timed by this process's clock when it owns it.
        """
        ended = end_time or utc_now()
        if end_time is None and self._session_t0 is not None:
            seconds = time.monotonic() - self._session_t0
        else:
            start = parse_time(self.info.get("session_started"))
            stop = parse_time(ended)
            seconds = max(0.0, stop - start) if start is not None and stop is not None else 0.0
        done = float(self.info.get("wall_seconds_done") or 0.0) + seconds
        sessions = [dict(s) for s in self.info.get("sessions") or []]
        if sessions and sessions[-1].get("ended") is None:
            sessions[-1].update(ended=ended, seconds=round(seconds, 3))
        self._session_t0 = None
        return {
            "ended": ended,
            "wall_seconds": round(done, 3),
            "wall_seconds_done": round(done, 3),
            "sessions": sessions,
        }

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> list[dict]:
        """Every complete epoch record as written, in file order (a torn last line is left
        out)."""
        return reader.scan_metrics(self.path)[0]

    def logged_epochs(self) -> list[int]:
        """The epochs in metrics.jsonl, in file order."""
        return [int(r["epoch"]) for r in self.metrics()]

    def _rewrite_metrics(self, records: list[dict]) -> None:
        io.write_jsonl(self.metrics_path, records)
        self._epochs = {int(r["epoch"]) for r in records}

    def truncate_metrics(self, last_epoch: int | None) -> list[dict]:
        """Atomically keep only the records with ``epoch <= last_epoch`` (None keeps none).

        Used on resume from a checkpoint of ``last_epoch`` so that no epoch is ever logged
        twice; a torn last line (a crash mid-append) is dropped too. Returns what is kept.
        """
        records, intact = reader.scan_metrics(self.path)
        keep = [r for r in records if last_epoch is not None and r["epoch"] <= last_epoch]
        if not intact or len(keep) != len(records) or not self.metrics_path.exists():
            self._rewrite_metrics(keep)
        else:
            self._epochs = {r["epoch"] for r in keep}
        last = max((r["epoch"] for r in keep), default=None)
        self.update(last_epoch=last)
        return keep

    def log_epoch(self, record: dict) -> None:
        """Append one epoch's record to metrics.jsonl (flushed and fsynced).

        Raises:
            ValueError: the record has no integer ``epoch``, or that epoch is already logged.
        """
        if "epoch" not in record:
            raise ValueError("an epoch record needs an 'epoch' field")
        try:
            if isinstance(record["epoch"], bool):
                raise TypeError
            epoch = operator.index(record["epoch"])
        except TypeError:
            raise ValueError(f"epoch must be an integer, got {record['epoch']!r}") from None
        if self._epochs is None:
            records, intact = reader.scan_metrics(self.path)
            if not intact:  # never append after a torn line: it would corrupt the new record
                self._rewrite_metrics(records)
            self._epochs = {r["epoch"] for r in records}
        if epoch in self._epochs:
            raise ValueError(
                f"epoch {epoch} is already logged in {self.metrics_path}; "
                "call truncate_metrics(last_checkpoint_epoch) when resuming"
            )
        io.append_jsonl(self.metrics_path, {**record, "epoch": epoch})
        self._epochs.add(epoch)
        self.update(last_epoch=max(self._epochs), wall_seconds=round(self.wall_seconds(), 3))

    # ------------------------------------------------------------------ endings
    def finish(self, final: dict, **fields: Any) -> dict:
        """Mark the run completed with its final metrics (see docs/CONVENTIONS.md)."""
        return self.update(
            **{
                **fields,
                **self.close_session(),
                "status": "completed",
                "reason": None,
                "final": dict(final),
            }
        )

    def fail(self, reason: str, *, resumable: bool = True, **fields: Any) -> dict:
        """Mark the run failed. ``resumable=False`` (a NaN loss, a divergence) makes the next
        start of this key begin afresh in a new folder instead of resuming this one."""
        return self.update(
            **{
                **fields,
                **self.close_session(),
                "status": "failed",
                "reason": str(reason),
                "resumable": bool(resumable),
            }
        )

    def interrupt(self, reason: str = "interrupted", **fields: Any) -> dict:
        """Mark the run interrupted (Ctrl-C, SIGTERM, a time limit): it resumes next start."""
        return self.update(
            **{**fields, **self.close_session(), "status": "interrupted", "reason": str(reason)}
        )

    @contextlib.contextmanager
    def guard(self) -> Iterator["Run"]:
        """Mark the run interrupted on KeyboardInterrupt/SystemExit and failed on an exception
        when the body leaves it 'running'; the exception propagates."""
        try:
            yield self
        except (KeyboardInterrupt, SystemExit) as exc:
            if self.status == "running":
                self.interrupt(f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise
        except BaseException as exc:
            if self.status == "running":
                self.fail(f"{type(exc).__name__}: {exc}")
            raise
