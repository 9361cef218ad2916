"""The results store: finding run folders, and starting, resuming or skipping a run.

Runs live in ``RESULTS/runs/<experiment>/<run_id>/`` (the experiment name may contain
slashes, e.g. ``cifar10/sharpdarts``). A run's key is (experiment, seed, config hash).
``start_run`` decides, under an exclusive lock file (``RESULTS/runs/.lock``, created with
``O_EXCL`` so that it holds on NFS, with stale-lock recovery: :mod:`sharpdarts.store.locks`),
whether to skip a completed run, resume an unfinished one in its own
folder, or start a new folder. Decisions, in order, over the folders that share the key:

1. any ``completed`` -> ``'skip'`` (the newest completed run is returned);
2. any ``running`` whose process is alive (same host, pid alive and not reused) -> UserError;
   ``running`` on another host cannot be checked and is treated as alive, unless the same
   scheduler job (run.json ``scheduler.job_id``) starts it again: it was requeued;
3. the newest resumable one -> ``'resume'``: ``interrupted``, ``running`` with a dead process
   (a crash or a kill), and ``failed`` unless it was failed with ``resumable=False``;
4. otherwise -> ``'new'``.

Failed runs resume by default (a crash, an out-of-memory error, a bug fixed since: the checkpoint
is still good). A run stopped because the loss became NaN or diverged should be failed with
``run.fail(reason, resumable=False)``: resuming from its checkpoint would only repeat the
divergence, so the next start of that key begins from scratch in a new folder and the failed
folder is kept as a record (tables only aggregate completed runs).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from sharpdarts.core import io, run_folder
from sharpdarts.errors import UserError
from sharpdarts.registry import unknown_name
from sharpdarts.store import locks, reader
from sharpdarts.store.keys import RUN_ID_RE, check_experiment, config_hash, new_run_id
from sharpdarts.store.provenance import (
    collect_provenance,
    process_start_time,
    run_process_alive,
    utc_now,
)
from sharpdarts.store.run import Run

__all__ = ["KINDS", "RESERVED", "STATUSES", "find_run", "iter_run_dirs", "start_run"]

STATUSES = ("running", "completed", "failed", "interrupted")
KINDS = ("search", "train", "evaluate")
# Fields that start_run owns: ``extra`` may not set them (they define the key and the state).
RESERVED = frozenset(
    {
        "experiment",
        "run_id",
        "seed",
        "kind",
        "config_hash",
        "status",
        "reason",
        "started",
        "ended",
        "session_started",
        "sessions",
        "wall_seconds",
        "wall_seconds_done",
        "resumes",
        "pid",
        "pid_start",
        "final",
        "last_epoch",
        "updated",
        "record_format",
    }
)


# --------------------------------------------------------------------------------------------
# Finding runs


def iter_run_dirs(results_dir: str | os.PathLike) -> Iterator[Path]:
    """Every run folder under ``results_dir/runs``, readable or not, in sorted order.

    A run folder is one that holds run.json, metrics.jsonl or config.gin, or whose name looks
    like a run id. The search does not descend into run folders.
    """
    root = run_folder.runs_root(results_dir)
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if here == root:
            continue
        if run_folder.MARKERS.intersection(filenames) or RUN_ID_RE.match(here.name):
            dirnames[:] = []
            yield here


def find_run(results_dir: str | os.PathLike, run_id_or_path: str | os.PathLike) -> Run:
    """The run named by a run id (anywhere under ``results_dir/runs``), an
    ``experiment/run_id`` path, a unique prefix of a run id, or a run folder path.

    Raises:
        UserError: no run (the message names the closest run ids), several runs match a
            prefix, or the run's run.json cannot be read.
    """
    text = str(run_id_or_path).strip()
    if text.startswith("run:"):
        text = text[4:]
    if text:
        for folder in (Path(text), run_folder.runs_root(results_dir) / text):
            if run_folder.has_run_json(folder):
                return Run(folder)
    folders = [d for d in iter_run_dirs(results_dir) if run_folder.has_run_json(d)]
    matches = [d for d in folders if d.name == text]
    if not matches:
        matches = [d for d in folders if text and d.name.startswith(text)]
    if len(matches) == 1:
        return Run(matches[0])
    if len(matches) > 1:
        names = ", ".join(run_folder.relative_name(results_dir, d) for d in matches[:10])
        raise UserError(f"run {text!r} is ambiguous under {results_dir}: it matches {names}.")
    error = unknown_name(
        "run",
        text,
        [d.name for d in folders],
        where=f"under {run_folder.runs_root(results_dir)}",
        cutoff=0.5,
    )
    raise UserError(str(error))


# --------------------------------------------------------------------------------------------
# Deciding


def _same_key(exp_dir: Path, experiment: str, seed: Any, chash: str) -> list[Run]:
    runs = []
    if not exp_dir.is_dir():
        return runs
    for child in sorted(exp_dir.iterdir()):
        if not run_folder.has_run_json(child):
            continue
        try:
            run = Run(child)
        except UserError:
            continue  # a corrupt folder is never resumed nor overwritten
        info = run.info
        if (
            info.get("experiment") == experiment
            and info.get("config_hash") == chash
            and info.get("seed") == seed
        ):
            runs.append(run)
    return runs


def _same_job(info: dict, job: dict | None) -> bool:
    """Whether a run was last run by the scheduler job ``job`` (run.json ``scheduler``): a
    scheduler never runs one job twice at once, so its earlier process is gone (killed on
    preemption, or its node died), wherever it ran."""
    mine = info.get("scheduler") or {}
    return bool(
        job
        and job.get("job_id")
        and mine.get("job_id") == job.get("job_id")
        and mine.get("executor") == job.get("executor")
    )


def _decide(candidates: list[Run], job: dict | None = None) -> tuple[str, Run | None]:
    """'skip', 'resume' or 'new' (see the module docstring), with the run it applies to.
    ``job`` is the scheduler job starting the run, if any (see :func:`_same_job`)."""
    completed = [r for r in candidates if r.status == "completed"]
    if completed:
        return "skip", max(completed, key=lambda r: (r.info.get("ended") or "", r.run_id))
    for run in candidates:
        if run.status == "running" and run_process_alive(run.info) and not _same_job(run.info, job):
            where = run.info.get("host")
            raise UserError(
                f"this experiment, seed and config is already running in {run.path} "
                f"(pid {run.info.get('pid')} on {where}). Wait for it to end; if that process "
                "is gone (e.g. another machine crashed), set its run.json status to "
                '"interrupted" to resume it.'
            )
    resumable = [
        r
        for r in candidates
        if r.status in ("interrupted", "running")
        or (r.status == "failed" and r.info.get("resumable", True))
    ]
    if resumable:
        return "resume", max(resumable, key=lambda r: (r.info.get("started") or "", r.run_id))
    return "new", None


def _refuse_untraceable(git: dict) -> None:
    """Raises the UserError of a tree that a run could not be traced to."""
    if git["commit"] is None or git["dirty"] is None:
        raise UserError(
            "the code is not at a git commit (not a git repository, or no commit yet), so "
            "this run could not be traced to its code. Commit your changes, or pass "
            "--allow-dirty."
        )
    if git["dirty"]:
        raise UserError(
            f"the git working tree is dirty (uncommitted changes on {git['branch']} at "
            f"{git['commit'][:12]}). Commit your changes, or pass --allow-dirty to record "
            "the diff beside the run."
        )


# --------------------------------------------------------------------------------------------
# Starting


def _resume(run: Run, prov: dict, session: dict, command: list[str], extra: dict) -> Run:
    """Makes ``run`` 'running' again for this process, closing a dead process's session."""
    info = run.info
    fields: dict = {}
    if info.get("status") == "running":
        # The process died without a word: its session ends at its last update.
        fields.update(run.close_session(info.get("updated") or info.get("started")))
        fields["crashes"] = int(info.get("crashes") or 0) + 1
    sessions = fields.get("sessions", [dict(s) for s in info.get("sessions") or []])
    n = int(info.get("resumes") or 0) + 1
    for tmp in run.path.glob(f".{run_folder.RUN_JSON}.*.tmp"):  # left by a kill mid-write
        with contextlib.suppress(OSError):
            tmp.unlink()
    if prov["git"]["dirty"] and prov["diff"]:
        io.atomic_write(run_folder.git_diff_path(run.path, n), prov["diff"])
    fields.update(
        status="running",
        reason=None,
        resumable=None,
        ended=None,
        pid=session["pid"],
        pid_start=process_start_time(session["pid"]),
        host=session["host"],
        session_started=session["started"],
        resumes=n,
        sessions=[*sessions, session],
        last_command=list(command),
    )
    fields.update(extra)
    run.update(**fields)
    run.own_session()
    return run


def _new_folder(exp_dir: Path) -> Path:
    exp_dir.mkdir(parents=True, exist_ok=True)
    while True:
        path = exp_dir / new_run_id()
        try:
            os.mkdir(path)  # atomic: two starts can never share a folder
            return path
        except FileExistsError:
            continue


def _create(
    exp_dir: Path,
    key: dict,
    prov: dict,
    session: dict,
    command: list[str],
    config_text: str,
    extra: dict,
) -> Run:
    """A new run folder holding run.json, config.gin and (when dirty) git.diff."""
    path = _new_folder(exp_dir)
    info = {
        "experiment": key["experiment"],
        "run_id": path.name,
        **key,
        "command": list(command),
        "record_format": reader.RECORD_FORMAT,
        "git": dict(prov["git"]),
        "status": "running",
        "reason": None,
        "started": session["started"],
        "ended": None,
        "session_started": session["started"],
        "wall_seconds": 0.0,
        "wall_seconds_done": 0.0,
        "resumes": 0,
        "sessions": [session],
        "pid": session["pid"],
        "pid_start": process_start_time(session["pid"]),
        "host": session["host"],
        "device": prov["device"],
        "device_count": prov["device_count"],
        "python": prov["python"],
        "platform": prov["platform"],
        "packages": prov["packages"],
        "last_epoch": None,
        "final": None,
        **extra,
    }
    io.atomic_write_json(run_folder.run_json_path(path), info)
    run = Run(path)
    run.own_session()
    run.write_text(run_folder.CONFIG, config_text)
    if prov["git"]["dirty"] and prov["diff"]:
        run.write_text(run_folder.GIT_DIFF, prov["diff"])
    return run


def start_run(
    results_dir: str | os.PathLike,
    experiment: str,
    seed: int,
    config_text: str,
    *,
    command: list[str],
    kind: str,
    allow_dirty: bool = True,
    extra: dict | None = None,
    repo_dir: str | os.PathLike | None = None,
) -> tuple[Run, str]:
    """Start, resume or skip the run of (experiment, seed, config) in ``results_dir``.

    Args:
        results_dir: the results store; runs go to ``results_dir/runs/<experiment>/<run_id>``.
        experiment: the experiment name (may contain '/').
        seed: the random seed.
        config_text: the config as asked (saved as config.gin; its hash is part of the key).
        command: the command line (a list of arguments).
        kind: 'search', 'train' or 'evaluate'.
        allow_dirty: when False, a dirty working tree (or one that is not a git repository)
            is a UserError, raised before anything is written.
        extra: more fields for run.json (e.g. genotype name and lineage, gin_params, smoke,
            or ``device_count`` when a run uses fewer devices than are visible).
        repo_dir: the git repository to describe (default: the one holding sharpdarts).

    Returns:
        ``(run, decision)``, decision being 'new', 'resume' or 'skip'. A skipped run is
        returned untouched; a resumed one is 'running' again in its own folder (the caller
        then loads its checkpoint and calls ``truncate_metrics(checkpoint_epoch)``). A new
        run.json records ``record_format`` (:data:`sharpdarts.store.reader.RECORD_FORMAT`).

    Raises:
        UserError: the same key is running in a live process, the tree is dirty and
            ``allow_dirty`` is False, or the experiment name or kind is invalid.
    """
    experiment = check_experiment(experiment)
    if kind not in KINDS:
        raise UserError(f"unknown run kind {kind!r}; expected one of {', '.join(KINDS)}.")
    extra = dict(extra or {})
    if RESERVED & extra.keys():
        raise ValueError(f"start_run's extra may not set {sorted(RESERVED & extra.keys())}")
    results_dir = Path(results_dir)
    chash = config_hash(config_text)
    # Provenance first (git can be slow), outside the lock.
    prov = collect_provenance(repo_dir, exclude=[results_dir])

    exp_dir = run_folder.experiment_dir(results_dir, experiment)
    with locks.exclusive(run_folder.lock_file(results_dir)):
        decision, run = _decide(_same_key(exp_dir, experiment, seed, chash), extra.get("scheduler"))
        if decision == "skip":
            return run, "skip"
        if not allow_dirty:
            _refuse_untraceable(prov["git"])
        session = {
            "started": utc_now(),
            "ended": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "commit": prov["git"]["commit"],
            "dirty": prov["git"]["dirty"],
            "device": prov["device"],
        }
        if decision == "resume":
            return _resume(run, prov, session, command, extra), "resume"
        key = {"experiment": experiment, "seed": seed, "kind": kind, "config_hash": chash}
        return _create(exp_dir, key, prov, session, command, config_text, extra), "new"
