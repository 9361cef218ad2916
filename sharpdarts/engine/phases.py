"""One phase of a job that fits several jobs in turn (a random search: one training per
sampled cell, then the winner's training), recorded inside the one run folder.

:func:`sharpdarts.engine.loop.fit` records into a duck-typed run. :class:`Phase` is such a run
for one phase: it hands the loop its own checkpoint folder (``phases/<name>/``, so each phase
keeps and rotates its own checkpoints), its own part of ``run.json`` (``phases.<name>``: the
checkpoint checksums and events that :mod:`sharpdarts.engine.checkpoint` keeps, the job's run
fields) and its own stretch of the run's epochs (the last phase may instead be the run's own
training, ``at_root``: its checkpoint is the run's ``checkpoint.pt``): the phase's epoch ``e``
is logged to the run's one ``metrics.jsonl`` as epoch ``offset + e``, with ``phase`` and
``phase_epoch`` beside it.
Phases run one after the other with disjoint stretches, so truncating a phase's metrics to its
checkpoint (resume) keeps every earlier phase's lines and no epoch is ever logged twice.

The engine never imports the store: the run is whatever object the runner passes to ``fit``
(the store's ``Run``, or the face's TensorBoard ``Recording`` around it).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sharpdarts.core import run_folder
from sharpdarts.core.io import atomic_write

PHASES = "phases"  # the phases' part of run.json (their folders: run_folder.phase_dir)


class Phase:
    """A run view for one phase of a multi-phase job (see the module docstring).

    Args:
        run: the whole run (duck-typed: ``path``, ``info``, ``update``, ``write_text``,
            ``truncate_metrics``, ``log_epoch``, ``logged_epochs``).
        name: the phase's name (a plain file name: 'sample_03', 'final').
        offset: the run epoch before the phase's first epoch.
        fields: added to each of the phase's metrics lines (e.g. ``{"sample": 3}``).
        at_root: the phase is the run's own last training (a random search's winner): its
            checkpoint, its run.json fields and its files are the run's, as in any training run;
            only its epochs follow the earlier phases'.
    """

    def __init__(
        self, run: Any, name: str, offset: int, fields: dict | None = None, at_root: bool = False
    ):
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"not a plain phase name: {name!r}")
        self.run, self.name, self.offset = run, name, int(offset)
        self.fields = dict(fields or {})
        self.at_root = at_root
        self.folder = Path(run.path) if at_root else run_folder.phase_dir(run.path, name)
        self.folder.mkdir(parents=True, exist_ok=True)

    # ---- run.json: the phase's own part ------------------------------------------------------
    @property
    def info(self) -> dict:
        """The phase's fields of run.json (a copy)."""
        if self.at_root:
            return dict(self.run.info)
        return dict((self.run.info.get(PHASES) or {}).get(self.name) or {})

    def update(self, **fields: Any) -> dict:
        """Merges ``fields`` into the phase's part of run.json (one atomic write of run.json)."""
        if self.at_root:
            return self.run.update(**fields)
        phases = dict(self.run.info.get(PHASES) or {})
        phases[self.name] = {**(phases.get(self.name) or {}), **fields}
        self.run.update(**{PHASES: phases})
        return self.info

    # ---- files -----------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        """The phase's checkpoint (rotated with its own ``.prev`` and ``.next``)."""
        return run_folder.checkpoint_path(self.folder)

    def write_text(self, name: str, text: str) -> Path:
        """Writes a text file (the phase's operative config) into the phase's folder."""
        if self.at_root:
            return self.run.write_text(name, text)
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"not a plain file name for a phase folder: {name!r}")
        return atomic_write(self.folder / name, text)

    def remove_checkpoints(self) -> None:
        """Deletes the phase's checkpoints once its result is recorded: it never resumes again
        (files set aside as damaged are kept). Never the run's own (``at_root``)."""
        if self.at_root:
            raise ValueError("the run's own checkpoints are never removed")
        for path in run_folder.checkpoint_files(self.folder):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    # ---- metrics: the phase's stretch of the run's epochs ----------------------------------------
    def log_epoch(self, record: dict) -> None:
        """Logs the phase's epoch ``e`` as the run's epoch ``offset + e``."""
        epoch = int(record["epoch"])
        self.run.log_epoch(
            {
                **record,
                "epoch": self.offset + epoch,
                "phase": self.name,
                "phase_epoch": epoch,
                **self.fields,
            }
        )

    def logged_epochs(self) -> list[int]:
        """The phase's epochs in the run's metrics (its own numbering)."""
        return [e - self.offset for e in self.run.logged_epochs() if e > self.offset]

    def truncate_metrics(self, last_epoch: int | None) -> list[dict]:
        """Keeps the earlier phases' lines and this phase's up to ``last_epoch`` (None: none of
        this phase's); returns this phase's kept lines."""
        kept = self.run.truncate_metrics(self.offset + (last_epoch or 0))
        return [r for r in kept if r["epoch"] > self.offset]
