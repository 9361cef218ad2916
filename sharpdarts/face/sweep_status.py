"""``sharpdarts sweep --status``: each job's state, from the results store and the scheduler.

The store says what the run did (its run.json status, last epoch, reason); the scheduler says
what the job is doing (pending in the queue, running, requeued, ended). A job is shown as:

- ``pending``: not yet submitted, or queued by the scheduler with no run folder yet;
- ``running``: its run is running (epoch N of the run so far);
- ``completed``: its run completed (or was already complete in the store and was skipped);
- ``failed``: its run failed, or the job ended without completing its run: with the reason;
- ``cancelled``: the job was cancelled (``scancel``).

Slurm's states come from ``squeue``, then ``sacct`` (:mod:`sharpdarts.face.sweep_slurm`): without
accounting, a job that has left the queue is known by its run folder alone.

It ends with each experiment's mean ± std over the completed seeds of the sweep.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

from sharpdarts.errors import UserError
from sharpdarts.face import sweep_slurm
from sharpdarts.store import reader

__all__ = ["SWEEP_JSON", "job_states", "load_sweep", "print_status", "sweep_folder"]

SWEEP_JSON = "sweep.json"


def sweep_folder(results: str | os.PathLike, sweep_id: str) -> Path:
    """Where a sweep's record (``sweep.json``) and its scheduler's job files live."""
    return Path(results) / "sweeps" / sweep_id


def load_sweep(results: str | os.PathLike, sweep_id: str | None) -> dict:
    """The sweep record (the latest sweep when ``sweep_id`` is None).

    Raises:
        UserError: no such sweep under ``results``.
    """
    root = Path(results) / "sweeps"
    found = sorted(p.parent.name for p in root.glob(f"*/{SWEEP_JSON}")) if root.is_dir() else []
    if sweep_id is None:
        if not found:
            raise UserError(f"no sweep has been started with --results {results}.")
        sweep_id = found[-1]
    matches = [s for s in found if s == sweep_id] or [s for s in found if s.startswith(sweep_id)]
    if len(matches) != 1:
        from sharpdarts.registry import unknown_name

        raise UserError(str(unknown_name("sweep", sweep_id, found, where=f"under {root}")))
    return json.loads((sweep_folder(results, matches[0]) / SWEEP_JSON).read_text())


def _runs_of(results: str | os.PathLike, sweep_id: str) -> dict[int, dict]:
    """``{sweep index: run.json}`` of the runs that this sweep's jobs started or resumed."""
    from sharpdarts.store.store import iter_run_dirs

    out: dict[int, dict] = {}
    for folder in iter_run_dirs(results):
        try:
            info = reader.read_recorded_info(folder)
        except UserError:
            continue
        job = info.get("scheduler") or {}
        if job.get("sweep_id") == sweep_id:
            out[int(job["sweep_index"])] = {**info, "path": str(folder)}
    return out


def _local_state(folder: Path, job_id: str) -> tuple[str, str | None]:
    """(state, reason) of a local-executor job: its result file, else its controller pid."""
    result = folder / f"{job_id}_0_result.pkl"
    if result.exists():
        try:
            outcome, value = pickle.loads(result.read_bytes())
        except Exception:  # being written
            return "RUNNING", None
        if outcome == "success":
            if isinstance(value, dict) and value.get("rc", 0) != 0:
                return "FAILED", f"sharpdarts run exited with status {value['rc']}"
            return "COMPLETED", None
        return "FAILED", str(value).strip().splitlines()[-1] if value else None
    try:
        os.kill(int(job_id), 0)
        return "RUNNING", None
    except (OSError, ValueError):
        return "UNKNOWN", "the job's process is gone without a result"


# A Slurm job that neither squeue nor sacct knows: it left the queue on a cluster without
# accounting (or long ago); its run folder says how it ended.
GONE = (
    "ENDED",
    "no longer in Slurm's queue, and no accounting (sacct) to ask how it ended",
)


def _scheduler_state(record: dict, job: dict, slurm: dict[str, str]) -> tuple[str, str | None]:
    """(scheduler state, reason) of one job; ``slurm``: the Slurm states of the sweep's jobs."""
    if job.get("error"):  # the local launcher saw the job end with an error
        return "FAILED", job["error"]
    if not job.get("job_id"):
        return "PENDING", None
    folder = Path(record["results"]) / "sweeps" / record["sweep_id"] / "jobs"
    if record["launcher"] == "slurm":
        state = slurm.get(job["job_id"])
        if state == "UNKNOWN":
            return state, "Slurm does not answer (squeue and sacct failed)"
        return (state, None) if state else GONE
    if record["launcher"] == "local":
        return _local_state(folder, job["job_id"])
    return "COMPLETED", None  # the debug executor ran it in the sweep's own process


# Scheduler states of a job that holds its node, and of one waiting in the queue (first
# submitted, or requeued).
ACTIVE = ("RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "SUSPENDED")
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")


def _combine(run: dict | None, state: str, reason: str | None) -> tuple[str, str]:
    """One job's shown state and detail from its run (if any) and its scheduler state."""
    cancelled = state.startswith("CANCELLED")
    if run is not None:
        status = run.get("status")
        epoch = run.get("last_epoch")
        if status == "completed":
            return "completed", run["path"]
        if cancelled:
            return "cancelled", f"at epoch {epoch or 0}; {run['path']}"
        # UNKNOWN: the scheduler cannot say; the run's own 'running' is believed.
        if status == "running" and state in ACTIVE + ("UNKNOWN",):
            return "running", f"epoch {epoch or 0} done; {run['path']}"
        # Interrupted (signalled) and still on its node, or back in the queue: requeued.
        if (status == "interrupted" and state in ACTIVE) or (
            status in ("interrupted", "running") and state in QUEUED
        ):
            return "pending", f"requeued, resumes from epoch {epoch or 0}; {run['path']}"
        return "failed", f"{run.get('reason') or reason or state}; {run['path']}"
    if state in QUEUED + ("CONFIGURING",):
        return "pending", "queued"
    if state in ACTIVE:
        return "running", "starting"
    if state == "COMPLETED":
        return "completed", "already completed in the store (skipped)"
    if cancelled:
        return "cancelled", "before it started"
    return "failed", reason or state


def job_states(results: str | os.PathLike, sweep_id: str | None = None) -> tuple[dict, list]:
    """The sweep record and one dict per job: index, experiment, seed, job_id, state, detail,
    and the run's final metrics (when completed)."""
    record = load_sweep(results, sweep_id)
    runs = _runs_of(results, record["sweep_id"])
    slurm = (
        sweep_slurm.scheduler_states([job["job_id"] for job in record["jobs"] if job.get("job_id")])
        if record["launcher"] == "slurm"
        else {}
    )
    rows = []
    for job in record["jobs"]:
        run = runs.get(job["index"])
        state, detail = _combine(run, *_scheduler_state(record, job, slurm))
        rows.append(
            {
                "index": job["index"],
                "experiment": job["experiment"],
                "seed": job["seed"],
                "job_id": job.get("job_id"),
                "state": state,
                "detail": detail,
                "final": (run or {}).get("final") or {},
            }
        )
    return record, rows


def _summary(rows: list[dict]) -> list[str]:
    """Each experiment's mean ± std of its final error metrics over the completed seeds."""
    lines = []
    for experiment in dict.fromkeys(r["experiment"] for r in rows):
        mine = [r for r in rows if r["experiment"] == experiment]
        done = [r for r in mine if r["state"] == "completed" and r["final"]]
        running = sum(r["state"] in ("running", "pending") for r in mine)
        parts = []
        for key in (
            "test_error_top1",
            "test_error_top5",
            "best_valid_error_top1",
            "valid_error_top1",
        ):
            values = [
                float(r["final"][key])
                for r in done
                if isinstance(r["final"].get(key), (int, float))
            ]
            if values:
                mean = sum(values) / len(values)
                std = (
                    math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                    if len(values) > 1
                    else math.nan
                )
                parts.append(f"{key} {mean:.2f} ± {std:.2f}")
        lines.append(
            f"{experiment}: {len(done)} completed seeds, {running} still running or "
            f"queued" + (f"; {', '.join(parts)}" if parts else "")
        )
    return lines


def print_status(results: str | os.PathLike, sweep_id: str | None = None) -> int:
    """Prints each job's state and each experiment's summary; 0 unless a job failed."""
    record, rows = job_states(results, sweep_id)
    print(
        f"sweep {record['sweep_id']} ({record['launcher']}, {len(rows)} jobs, "
        f"started {record['created']})"
    )
    width = max(len(r["experiment"]) for r in rows) if rows else 10
    for r in rows:
        print(
            f"{r['index']:>3}  {r['experiment']:<{width}}  seed {r['seed']:<4} "
            f"job {str(r['job_id'] or '-'):<12} {r['state']:<9}  {r['detail']}"
        )
    for line in _summary(rows):
        print(line)
    return 1 if any(r["state"] == "failed" for r in rows) else 0
