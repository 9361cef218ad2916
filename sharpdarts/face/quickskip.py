"""Skipping a completed run without importing torch: the request key.

``sharpdarts run`` knows a run is completed only after it has parsed the config with every
configurable registered, which imports torch (seconds). This module answers the common case
first, from files alone: the *request key* hashes everything the config text can come from,
namely the texts of the experiment's .gin file and of every file its includes can resolve to
(recursively), ``gin/smoke.gin`` under ``--smoke``, the command line's bindings, the user
genotype registry (a genotype name resolves through it), and the code (the checkout's commit
and the sha256 of its uncommitted diff, or the installed package's version). The runner
records this key in run.json when it starts a run; a later ``run`` with the same experiment,
seed and key finds that run completed and says so at once. Anything that differs, or cannot be
read, falls back to the full path, which decides by the config hash as always: the quick path
only ever skips a run the full path would skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from sharpdarts import resources
from sharpdarts.core import genotypes, run_folder
from sharpdarts.face import experiments
from sharpdarts.store import reader

__all__ = ["completed_run", "request_key"]

_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.MULTILINE)


def _included_files(path: Path, seen: dict[str, str]) -> None:
    """Adds the text of ``path`` and of every file its includes may resolve to, recursively.

    gin resolves an include against the working folder, then each search path; every
    candidate that exists is hashed, so the key changes whichever one gin reads.
    """
    key = str(path.resolve())
    if key in seen:
        return
    text = path.read_text()
    seen[key] = text
    for include in _INCLUDE.findall(text):
        candidates = [Path(include)] + [
            Path(root) / include for root in experiments.gin_search_paths()
        ]
        for candidate in candidates:
            if candidate.is_file():
                _included_files(candidate, seen)


def _code_version() -> dict:
    """The code a config was parsed by: commit and uncommitted diff, else the package version."""
    root = resources.checkout_root()
    if root is not None:
        head = run_folder.git_head(root, timeout=10)
        if head is not None:
            diff = run_folder.git_tracked_diff(root, "sharpdarts", timeout=10)
            if diff is not None:
                return {"commit": head, "diff": hashlib.sha256(diff).hexdigest()}
    from importlib import metadata

    try:
        return {"version": metadata.version("sharpdarts")}
    except metadata.PackageNotFoundError:
        return {"version": None}


def request_key(experiment_file: Path, gin_params: list[str], smoke: bool) -> str:
    """The sha256 of everything the run's config text is made from (see the module doc)."""
    files: dict[str, str] = {}
    _included_files(Path(experiment_file), files)
    if smoke:
        _included_files(experiments.smoke_gin(), files)
    registry = genotypes.user_registry_path()
    parts = {
        "files": files,
        "gin_params": list(gin_params),
        "smoke": bool(smoke),
        "registry": registry.read_text() if registry.is_file() else None,
        "code": _code_version(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def completed_run(args) -> Path | None:
    """The completed run folder of ``sharpdarts run args``, when the request key finds one.

    Returns None (the caller takes the full path) when no completed run of that experiment and
    seed has the same request key, under torchrun, or when anything cannot be read. A bad
    experiment name raises the same UserError the full path would.
    """
    experiment, path = experiments.resolve_experiment(args.experiment)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    exp_dir = run_folder.experiment_dir(args.results, experiment)
    if not exp_dir.is_dir():
        return None
    try:
        key = request_key(path, args.gin_param, args.smoke)
    except (OSError, UnicodeDecodeError):
        return None
    found = []
    for child in sorted(exp_dir.iterdir()):
        if not run_folder.has_run_json(child):
            continue
        try:
            info = reader.read_info(child)
        except Exception:  # noqa: BLE001 - an unreadable folder is the full path's business
            continue
        if (
            info.get("status") == "completed"
            and info.get("request_key") == key
            and info.get("experiment") == experiment
            and info.get("seed") == args.seed
        ):
            found.append((info.get("ended") or "", child.name, child))
    return max(found)[2] if found else None
