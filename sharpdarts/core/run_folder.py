"""The run folder's one owner: the names of its files and folders, where each lies, and the git
state that a run records.

The layout (every name below is defined here and nowhere else)::

    RESULTS/runs/                          RUNS: the runs root, runs_root()
        .lock                              LOCK: start_run's lock file, lock_file()
        <experiment>/                      experiment_dir() (the name may hold '/')
            <run_id>/                      a run folder
                run.json                   RUN_JSON: what was run, where, how it went
                metrics.jsonl              METRICS: one JSON object per epoch
                config.gin                 CONFIG: the config as asked
                operative_config.gin       OPERATIVE_CONFIG: what the built job read
                git.diff                   GIT_DIFF: a dirty tree's diff (git.resume<N>.diff
                                           for the N-th resumed session), git_diff_path()
                error.log                  ERROR_LOG: the traceback of a failed run
                checkpoint.pt              CHECKPOINT, kept with checkpoint.prev.pt and
                                           written as checkpoint.next.pt (CHECKPOINTS)
                events.out.tfevents.*      EVENTS_GLOB: TensorBoard's event files
                phases/<name>/             PHASES: a multi-phase job's own checkpoints

Why here, in core: the engine writes into a run folder (the operative config, the rotated
checkpoints) and the store creates, finds and reads run folders, but the engine and the store
never import each other. Both may import core, so the names live in core and the import graph
stays one-way; the engine still reaches its run folder only through the run object it is handed.
This module imports nothing of the project and neither torch nor pandas: the quick commands use
it.

It names and locates; it neither reads nor writes a run's files. Reading is
:mod:`sharpdarts.store.reader`'s job, writing run.json and the metrics is
:class:`sharpdarts.store.run.Run`'s, and the checkpoints are :mod:`sharpdarts.engine.checkpoint`'s.
The git state (:func:`git_state`, :func:`git_head`, :func:`git_tracked_diff`) is what a run
records in run.json and ``git.diff`` (through :mod:`sharpdarts.store.provenance`) and what the
quick skip (:mod:`sharpdarts.face.quickskip`) hashes: one set of git commands for both.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

__all__ = [
    "CHECKPOINT",
    "CHECKPOINTS",
    "CHECKPOINT_NEXT",
    "CHECKPOINT_PREVIOUS",
    "CONFIG",
    "ERROR_LOG",
    "EVENTS_GLOB",
    "GIT_DIFF",
    "LOCK",
    "MARKERS",
    "METRICS",
    "OPERATIVE_CONFIG",
    "PHASES",
    "RUNS",
    "RUN_JSON",
    "checkpoint_file",
    "checkpoint_files",
    "checkpoint_path",
    "config_path",
    "error_log_path",
    "event_files",
    "experiment_dir",
    "git_diff_path",
    "git_head",
    "git_state",
    "git_tracked_diff",
    "has_run_json",
    "lock_file",
    "metrics_path",
    "operative_config_path",
    "phase_dir",
    "relative_name",
    "run_dir",
    "run_json_path",
    "runs_root",
]

# The results store's folders.
RUNS = "runs"
LOCK = ".lock"

# The files of a run folder.
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
CONFIG = "config.gin"
OPERATIVE_CONFIG = "operative_config.gin"
GIT_DIFF = "git.diff"
ERROR_LOG = "error.log"
CHECKPOINT = "checkpoint.pt"  # the newest good checkpoint
CHECKPOINT_PREVIOUS = "checkpoint.prev.pt"  # the one before it
CHECKPOINT_NEXT = "checkpoint.next.pt"  # one being written, before it is rotated in
CHECKPOINTS = (CHECKPOINT, CHECKPOINT_PREVIOUS, CHECKPOINT_NEXT)
EVENTS_GLOB = "events.out.tfevents.*"  # named by TensorBoard's writer
PHASES = "phases"  # the folder of a multi-phase job's phases, one folder each
# A folder holding any of these is a run folder (even when its name is not a run id).
MARKERS = frozenset({RUN_JSON, METRICS, CONFIG})

# Untracked files larger than this are named in git.diff but not copied into it.
_MAX_UNTRACKED_BYTES = 256 * 1024


# --------------------------------------------------------------------------------------------
# The results store


def runs_root(results_dir: str | os.PathLike) -> Path:
    """The folder holding every run folder of a results store: ``results_dir/runs``."""
    return Path(results_dir) / RUNS


def lock_file(results_dir: str | os.PathLike) -> Path:
    """The lock file under which ``start_run`` decides: ``results_dir/runs/.lock``."""
    return runs_root(results_dir) / LOCK


def experiment_dir(results_dir: str | os.PathLike, experiment: str) -> Path:
    """The folder of an experiment's runs: ``results_dir/runs/<experiment>``."""
    return runs_root(results_dir) / experiment


def relative_name(results_dir: str | os.PathLike, path: str | os.PathLike) -> str:
    """``path`` relative to the runs root, with '/': an experiment folder gives the
    experiment's name, a run folder ``<experiment>/<run_id>``.

    Raises:
        ValueError: ``path`` is not under ``results_dir/runs``.
    """
    return Path(path).relative_to(runs_root(results_dir)).as_posix()


# --------------------------------------------------------------------------------------------
# One run folder


def run_dir(path: str | os.PathLike) -> Path:
    """A run folder from a folder path or the path of its run.json."""
    path = Path(path)
    if path.name == RUN_JSON and path.is_file():
        return path.parent
    return path


def run_json_path(folder: str | os.PathLike) -> Path:
    """The run folder's run.json."""
    return Path(folder) / RUN_JSON


def has_run_json(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a run.json (a run that was started there)."""
    return run_json_path(folder).is_file()


def metrics_path(folder: str | os.PathLike) -> Path:
    """The run folder's per-epoch log."""
    return Path(folder) / METRICS


def config_path(folder: str | os.PathLike) -> Path:
    """The config as asked."""
    return Path(folder) / CONFIG


def operative_config_path(folder: str | os.PathLike) -> Path:
    """The operative config, written by the engine when the job starts fitting."""
    return Path(folder) / OPERATIVE_CONFIG


def git_diff_path(folder: str | os.PathLike, resume: int = 0) -> Path:
    """The diff of a dirty tree: ``git.diff`` when the run started, ``git.resume<N>.diff``
    when it was resumed for the N-th time (``resume=N``)."""
    return Path(folder) / (f"git.resume{int(resume)}.diff" if resume else GIT_DIFF)


def error_log_path(folder: str | os.PathLike) -> Path:
    """The traceback of a run that failed."""
    return Path(folder) / ERROR_LOG


def checkpoint_path(folder: str | os.PathLike) -> Path:
    """The checkpoint a run (or a phase's folder) resumes from."""
    return Path(folder) / CHECKPOINT


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """Every checkpoint a folder may hold: the newest, the previous, the one being written."""
    return [Path(folder) / name for name in CHECKPOINTS]


def checkpoint_file(source: str | os.PathLike) -> Path:
    """A checkpoint file, or the checkpoint.pt of a run folder."""
    path = Path(source)
    return checkpoint_path(path) if path.is_dir() else path


def event_files(folder: str | os.PathLike) -> list[Path]:
    """The TensorBoard event files in a run folder, sorted."""
    return sorted(Path(folder).glob(EVENTS_GLOB))


def phase_dir(folder: str | os.PathLike, name: str) -> Path:
    """The folder of one phase of a multi-phase job: ``<run folder>/phases/<name>``."""
    return Path(folder) / PHASES / name


# --------------------------------------------------------------------------------------------
# Git state


def _git(
    repo: Path, *args: str, check: bool = True, text: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess | None:
    """``git -C repo args``; None when git is missing, fails (with ``check``) or times out."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=text,
            errors="replace" if text else None,
            timeout=timeout,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if check and proc.returncode != 0:
        return None
    return proc


def git_head(repo: str | os.PathLike, timeout: float = 60) -> str | None:
    """The commit at HEAD of the repository holding ``repo``; None outside a git repository,
    without git, or before the first commit."""
    head = _git(Path(repo), "rev-parse", "--verify", "-q", "HEAD", timeout=timeout)
    return head.stdout.strip() if head is not None else None


def git_tracked_diff(repo: str | os.PathLike, *paths: str, timeout: float = 60) -> bytes | None:
    """The changes of tracked files under ``paths`` against HEAD, exactly as ``git diff HEAD``
    prints them (bytes); None where git cannot say."""
    diff = _git(Path(repo), "diff", "HEAD", "--", *paths, text=False, timeout=timeout)
    return diff.stdout if diff is not None else None


def _pathspec(root: Path, exclude: list[Path]) -> list[str]:
    """``-- . :(exclude)...`` for the excluded paths that lie inside the repository."""
    excludes = []
    for path in exclude:
        with contextlib.suppress(ValueError, OSError):
            rel = Path(path).resolve().relative_to(root.resolve())
            if str(rel) not in ("", "."):
                excludes.append(f":(exclude){rel.as_posix()}")
    return ["--", ".", *excludes]


def _diff(root: Path, has_commit: bool, untracked: list[str], spec: list[str]) -> str:
    """The working tree's changes against HEAD (or the index before the first commit), plus
    every untracked file small enough to copy."""
    parts = []
    against = ["HEAD"] if has_commit else ["--cached"]
    diff = _git(root, "diff", "--no-color", "--no-ext-diff", *against, *spec)
    if diff is not None and diff.stdout:
        parts.append(diff.stdout)
    skipped = []
    for name in untracked:
        try:
            too_big = (root / name).stat().st_size > _MAX_UNTRACKED_BYTES
        except OSError:
            continue
        if too_big:
            skipped.append(name)
            continue
        new = _git(root, "diff", "--no-color", "--no-index", "--", "/dev/null", name, check=False)
        if new is not None and new.returncode in (0, 1) and new.stdout:
            parts.append(new.stdout)
    if skipped:
        parts.append(
            "# untracked files too large to include:\n"
            + "".join(f"#   {name}\n" for name in skipped)
        )
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def git_state(repo_dir: str | os.PathLike, exclude: list | tuple = ()) -> dict:
    """Commit, branch, dirty flag and diff (the text of ``git.diff``) of the repository holding
    ``repo_dir``: ``{'commit', 'branch', 'dirty', 'diff'}``.

    Not a git repository (or no git): everything None. No commit yet: commit None and dirty
    True whenever files exist (nothing is committed, so nothing can be traced). Files under
    ``exclude`` (the results store) never make the tree dirty.
    """
    state = {"commit": None, "branch": None, "dirty": None, "diff": ""}
    top = _git(Path(repo_dir), "rev-parse", "--show-toplevel")
    if top is None:
        return state
    root = Path(top.stdout.strip())
    spec = _pathspec(root, [Path(p) for p in exclude])

    state["commit"] = git_head(root)
    branch = _git(root, "symbolic-ref", "-q", "--short", "HEAD")
    state["branch"] = branch.stdout.strip() if branch is not None else None
    if state["branch"] is None and state["commit"] is not None:
        state["branch"] = "HEAD"  # detached

    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", *spec)
    if status is None:
        return state
    entries = [e for e in status.stdout.split("\0") if e]
    state["dirty"] = bool(entries)
    if state["dirty"]:
        untracked = [e[3:] for e in entries if e.startswith("?? ")]
        state["diff"] = _diff(root, state["commit"] is not None, untracked, spec)
    return state
