"""What Slurm answers a sweep: sbatch's refusals as user errors, and each job's state.

- **Refusals.** sbatch refuses a request that the cluster cannot run (GPUs on a partition
  without them, an unknown partition, a time over the partition's limit, more CPUs or memory
  than a node has) before it queues anything. :func:`refusal` turns its message into one
  paragraph that names the sweep options to change, with the partition's own figures from
  ``sinfo`` where it answers.
- **States.** ``squeue --states=all`` knows every job still in the queue and those that ended
  a few minutes ago (Slurm's ``MinJobAge``), accounting or not; ``sacct`` is asked only about
  the others, and quietly: on a cluster without accounting it fails, and the run folders then
  say what happened (:mod:`sharpdarts.face.sweep_status`). submitit's own status calls are not
  used, as they warn on every call where ``sacct`` fails.
"""

from __future__ import annotations

import math
import re
import subprocess

from sharpdarts.errors import UserError

__all__ = ["gpus_in", "minutes_in", "partitions", "refusal", "scheduler_states"]

# sbatch's messages (Slurm 22.05), lower case, and the sweep options that each is about.
_MESSAGES = (
    ("invalid generic resource", "--gpus 0 (or a --partition that has GPUs)"),
    ("invalid partition", "--partition"),
    ("time limit", "--time"),
    ("processors", "--cpus"),
    ("cpu count", "--cpus"),
    ("memory", "--mem"),
    ("node configuration", "--cpus, --mem or --gpus"),
    ("node count", '--cluster_param "cluster.nodes = N"'),
)


def _ask(argv: list[str], nothing: str = "") -> str | None:
    """A Slurm command's output, or None where it is missing or fails (no traceback, no log);
    an empty answer where it fails saying ``nothing`` (squeue: no such job)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return "" if nothing and nothing in done.stderr else None
    return done.stdout


def gpus_in(gres: str) -> int:
    """GPUs per node in sinfo's ``%G`` (``(null)``, ``gpu:4``, ``gpu:a100:2(S:0-1)``, ...)."""
    total = 0
    for part in re.split(r",(?![^(]*\))", gres):
        fields = re.sub(r"\(.*\)", "", part).split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def minutes_in(limit: str) -> float:
    """Minutes in sinfo's ``%l`` time limit (``1-00:00:00``, ``2:00:00``, ``30:00``,
    ``infinite``); infinity where there is none."""
    if not limit or not limit[0].isdigit():
        return math.inf
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    hours, minutes, seconds = ([0] * (3 - len(parts)) + parts)[-3:]
    return (int(days or 0) * 24 + hours) * 60 + minutes + seconds / 60


def partitions() -> dict[str, dict] | None:
    """Each partition's GPUs, CPUs and memory (MB) per node, time limit (minutes) and whether it
    is the default: the smallest node of each partition; None where ``sinfo`` does not answer."""
    out = _ask(["sinfo", "--noheader", "--format", "%P|%G|%c|%m|%l"])
    if out is None:
        return None
    found: dict[str, dict] = {}
    for line in out.splitlines():
        name, gres, cpus, memory, limit = (line.split("|") + [""] * 5)[:5]
        if not name:
            continue
        default = name.endswith("*")
        name = name.rstrip("*")
        node = {
            "gpus": gpus_in(gres),
            "cpus": int(cpus) if cpus.isdigit() else 0,
            "memory_mb": int(memory) if memory.isdigit() else 0,
            "minutes": minutes_in(limit),
            "default": default,
        }
        if name in found:  # nodes of several kinds: what every node of the partition has
            node = {k: min(v, found[name][k]) for k, v in node.items() if k != "default"}
            node["default"] = default or found[name]["default"]
        found[name] = node
    return found


def _misfits(resources: dict, node: dict) -> list[str]:
    """What in ``resources`` a node of the partition cannot give, each with the option to pass."""
    out = []
    if resources["gpus_per_node"] > node["gpus"]:
        out.append(
            "the partition has no GPUs: pass --gpus 0"
            if node["gpus"] == 0
            else f"its nodes have {node['gpus']} GPUs: pass --gpus {node['gpus']} or fewer"
        )
    tasks = resources["tasks_per_node"]
    if node["cpus"] and resources["cpus_per_task"] * tasks > node["cpus"]:
        each = node["cpus"] // tasks
        per_task = f" ({tasks} tasks per node)" if tasks > 1 else ""
        out.append(
            f"its nodes have {node['cpus']} CPUs{per_task}: pass --cpus {max(1, each)} or fewer"
        )
    if node["memory_mb"] and resources["mem_gb"] * 1024 > node["memory_mb"]:
        out.append(
            f"its nodes have {node['memory_mb']} MB of memory: "
            f"pass --mem {node['memory_mb'] // 1024} or less (GB)"
        )
    if resources["timeout_min"] > node["minutes"]:
        out.append(
            f"its time limit is {node['minutes']:g} minutes: pass --time {node['minutes']:g} "
            "or less (a longer run is requeued at each limit and resumes)"
        )
    return out


def refusal(message: str, resources: dict) -> UserError:
    """The user's error for sbatch's refusal ``message`` of a sweep asking for ``resources``.

    One paragraph: what sbatch said, then what to change: every request that the partition
    cannot meet (from ``sinfo``), or else the option that sbatch's message is about.
    """
    lines = [
        line.split("error:", 1)[-1].replace("Batch job submission failed:", "").strip()
        for line in message.splitlines()
    ]
    said = "; ".join(dict.fromkeys(line for line in lines if line)) or "no reason given"
    known = partitions()
    asked = resources.get("partition")
    if known is not None and asked and asked not in known:
        advice = [
            f"there is no partition {asked!r} on this cluster: pass --partition with one of "
            f"{', '.join(sorted(known))}"
        ]
    else:
        node = None
        if known:
            node = known.get(asked) or next((p for p in known.values() if p["default"]), None)
        advice = _misfits(resources, node) if node else []
        if not advice:
            lower = message.lower()
            options = [option for text, option in _MESSAGES if text in lower]
            advice = [
                f"change {options[0]}"
                if options
                else "change the resources: --partition, --time, --gpus, --cpus, --mem or "
                "--cluster_param"
            ]
    where = f"partition {asked!r}" if asked else "the default partition"
    return UserError(
        f"Slurm refused the sweep's jobs on {where} (sbatch: {said}); {'; '.join(advice)}. "
        "Nothing was submitted; `sinfo` shows the partitions, their time limits and nodes."
    )


def scheduler_states(job_ids: list[str]) -> dict[str, str]:
    """``{job id: Slurm state}`` (e.g. ``'4242_1': 'RUNNING'``) for the jobs that ``squeue`` or
    ``sacct`` still know; a job neither knows is left out, and where neither answers at all
    (the controller is down) every job not known is ``'UNKNOWN'``."""
    ids = sorted({job.split("_")[0] for job in job_ids})
    if not ids:
        return {}
    states: dict[str, str] = {}
    # -r: one line per array task; --states=all: ended jobs too, while slurmctld keeps them.
    queue = _ask(
        ["squeue", "--noheader", "-r", "--states=all", "--format=%i|%T", "-j", ",".join(ids)],
        nothing="Invalid job id",
    )
    for line in (queue or "").splitlines():
        job, _, state = line.partition("|")
        states[job.strip()] = state.strip()
    missing = [job for job in job_ids if job not in states]
    accounting = None
    if missing:
        accounting = _ask(
            ["sacct", "--noheader", "--parsable2", "-X", "--format=JobID,State", "-j"]
            + [",".join(sorted({job.split("_")[0] for job in missing}))]
        )
        for line in (accounting or "").splitlines():
            job, state = (line.split("|") + [""])[:2]
            if job in missing and state:
                states[job] = state.split()[0]  # 'CANCELLED by 0' -> 'CANCELLED'
    if queue is None and accounting is None:
        return {job: states.get(job, "UNKNOWN") for job in job_ids}
    return {job: states[job] for job in job_ids if job in states}
