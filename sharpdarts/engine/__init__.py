"""The search and training engine: jobs (``search``, ``train``, ``evaluate_checkpoint``) built
before their first epoch and fitted by one epoch loop.

Modules: :mod:`.context` (device, precision, processes, random states), :mod:`.checkpoint`
(save, load, resume), :mod:`.loop` (the epoch loop and evaluation), :mod:`.jobs` (the jobs
and their gin configurables), :mod:`.architect` (architecture steps), :mod:`.data`.

The names the face uses are re-exported here, imported on first use so that importing the
package (e.g. for ``engine.data``'s specs) does not load the jobs.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "search": "jobs", "train": "jobs", "evaluate_checkpoint": "jobs", "experiment": "jobs",
    "SearchJob": "jobs", "TrainJob": "jobs", "EvaluateJob": "jobs",
    "Job": "loop", "fit": "loop", "evaluate": "loop", "NonFiniteLossError": "loop",
    "Context": "context", "make_context": "context", "broadcast_object": "context",
    "close_process_group": "context",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "file_sha256": "checkpoint",
    "NoGoodCheckpointError": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
