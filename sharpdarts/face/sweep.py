"""``sharpdarts sweep``: one scheduler job per experiment and seed, through submitit.

A sweep does not schedule anything itself. It hands one :class:`SweepJob` per (experiment,
seed) to submitit's executor: Slurm on a cluster, the local executor on a workstation (which
this module throttles to N jobs at a time), or submitit's in-process debug executor. Each job
runs ``sharpdarts run EXPERIMENT --seed S ...`` through the same command-line entry point, so
provenance, skipping a completed run and resuming an interrupted one are unchanged.

Preemption and time limits: submitit sends the job SIGUSR2 before the end; ``SweepJob`` is
:class:`submitit.helpers.Checkpointable`, so submitit requeues the same job, which then resumes
its run folder from the last checkpoint (the store's 'resume' decision; the engine drops any
epoch logged after the checkpoint, so none is lost or repeated).

Every sweep is recorded in ``RESULTS/sweeps/<sweep_id>/sweep.json`` (its jobs and their
scheduler ids); submitit's own files (pickles, logs) go to ``RESULTS/sweeps/<sweep_id>/jobs``.
A Slurm sweep is recorded once sbatch has taken its jobs: a refused one (exit 2, the option to
change named by :mod:`sharpdarts.face.sweep_slurm`) leaves no record and no files.
:mod:`sharpdarts.face.sweep_status` reads both back for ``sharpdarts sweep --status``.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gin
import submitit

from sharpdarts.core import io, validate
from sharpdarts.errors import UserError, one_line
from sharpdarts.face import sweep_slurm
from sharpdarts.face.sweep_status import SWEEP_JSON, print_status, sweep_folder
from sharpdarts.store.keys import new_run_id

__all__ = [
    "JOB_ENV",
    "LAUNCHERS",
    "SweepJob",
    "cluster",
    "job_record",
    "parse_seeds",
    "run_sweep",
    "make_executor",
]

LAUNCHERS = ("slurm", "local", "debug")
# The environment variable through which a sweep job tells the runner its scheduler identity.
JOB_ENV = "SHARPDARTS_SWEEP_JOB"


# A duration or an amount of memory: a number above 0.
POSITIVE = validate.Real("a number > 0", low=0.0, low_open=True)
# The sweep's own options, each with the cluster parameter it sets and what it must be.
OPTION_KINDS = {
    "--parallel": ("parallel", validate.COUNT),
    "--time": ("timeout_min", POSITIVE),
    "--gpus": ("gpus_per_node", validate.WORKERS),
    "--cpus": ("cpus_per_task", validate.COUNT),
    "--mem": ("mem_gb", POSITIVE),
}


@gin.configurable("cluster")
@validate.params(
    timeout_min=POSITIVE,
    gpus_per_node=validate.WORKERS,
    cpus_per_task=validate.COUNT,
    mem_gb=POSITIVE,
    nodes=validate.COUNT,
    tasks_per_node=validate.COUNT.or_none(),
    parallel=validate.COUNT,
    max_num_timeout=validate.WORKERS,
)
def cluster(
    partition: str | None = None,
    timeout_min: float = 24 * 60,
    gpus_per_node: int = 1,
    cpus_per_task: int = 8,
    mem_gb: float = 32,
    nodes: int = 1,
    tasks_per_node: int | None = None,
    parallel: int = 1,
    signal_delay_s: int = 120,
    max_num_timeout: int = 20,
    slurm_additional_parameters: dict | None = None,
) -> dict:
    """The resources of every job of a sweep (bind in gin/cluster.gin or ``--cluster_param``).

    Args:
        partition: the Slurm partition (None: the cluster's default).
        timeout_min: each job's time limit, in minutes; a job still running then is requeued
            and resumes from its checkpoint.
        gpus_per_node: GPUs per job (per node).
        cpus_per_task: CPU cores per task (data loading workers live here).
        mem_gb: memory per node, in GB.
        nodes: nodes per job (multi-node DDP training).
        tasks_per_node: processes per node; None: one per GPU (at least one). With more than
            one task in all, each task joins the job's torch process group.
        parallel: jobs running at once (the local launcher's N; Slurm's array parallelism).
        signal_delay_s: how long before the time limit submitit signals the job to requeue.
        max_num_timeout: how many times a job may be requeued for reaching its time limit.
        slurm_additional_parameters: more sbatch options, e.g. ``{'constraint': 'a100'}``.

    Returns:
        The bound values, by name.
    """
    return dict(
        partition=partition,
        timeout_min=timeout_min,
        gpus_per_node=gpus_per_node,
        cpus_per_task=cpus_per_task,
        mem_gb=mem_gb,
        nodes=nodes,
        tasks_per_node=tasks_per_node or max(1, gpus_per_node),
        parallel=parallel,
        signal_delay_s=signal_delay_s,
        max_num_timeout=max_num_timeout,
        slurm_additional_parameters=dict(slurm_additional_parameters or {}),
    )


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``'1-8'``, ``'1,3,5'``, ``'1 2 3'`` or a mix (``'1-3,7'``), in order, once each.

    Raises:
        UserError: a part is not a seed or a range of seeds.
    """
    seeds: list[int] = []
    for part in text.replace(",", " ").split():
        try:
            if "-" in part[1:]:
                first, last = (int(x) for x in part.split("-", 1))
                if last < first:
                    raise ValueError
                seeds += range(first, last + 1)
            else:
                seeds.append(int(part))
        except ValueError:
            raise UserError(
                f"--seeds {text!r}: use seeds and ranges such as 1-8 or 1,3,5 "
                f"('{part}' is neither)."
            ) from None
    if not seeds:
        raise UserError("--seeds names no seed; use e.g. --seeds 1-8.")
    return list(dict.fromkeys(seeds))


def job_record() -> dict | None:
    """The scheduler identity of this process's sweep job (for run.json), or None outside one."""
    text = os.environ.get(JOB_ENV)
    return json.loads(text) if text else None


class _Tee(_io.TextIOBase):
    """Writes through to a stream and keeps the last line (the run folder ``run`` prints)."""

    def __init__(self, stream):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> int:
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            self.last = lines[-1].strip()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


class SweepJob(submitit.helpers.Checkpointable):
    """One job of a sweep: ``sharpdarts run`` of one experiment and seed.

    A :class:`submitit.helpers.Checkpointable`: on preemption or time-out submitit requeues
    the same call, and the run store resumes the run's folder from its checkpoint.

    Args:
        argv: the ``sharpdarts`` arguments (``['run', EXPERIMENT, '--seed', ...]``).
        sweep_id: the sweep this job belongs to.
        index: the job's position in the sweep.
    """

    def __init__(self, argv: list[str], sweep_id: str, index: int, entry_point: Callable):
        self.argv, self.sweep_id, self.index = list(argv), sweep_id, index
        self.entry_point = entry_point

    def __call__(self) -> dict:
        record = {"sweep_id": self.sweep_id, "sweep_index": self.index}
        env = None
        with contextlib.suppress(RuntimeError):  # outside a submitit job (called directly)
            env = submitit.JobEnvironment()
        if env is not None:
            record.update(
                executor=env.name(),
                job_id=env.job_id,
                array_job_id=env.array_job_id,
                array_task_id=env.array_task_id,
                host=env.hostname,
                global_rank=env.global_rank,
                num_tasks=env.num_tasks,
            )
            if env.num_tasks > 1:  # one task per GPU: each joins the job's process group
                submitit.helpers.TorchDistributedEnvironment().export(
                    set_cuda_visible_devices=False
                )
        os.environ[JOB_ENV] = json.dumps(record)
        sys.argv = ["sharpdarts", *self.argv]
        tee = _Tee(sys.stdout)
        with contextlib.redirect_stdout(tee):
            rc = self.entry_point(self.argv)
        # A failed run fails its job (the scheduler shows it), except under submitit's debug
        # executor, which would open a debugger on the error.
        if rc != 0 and (env is None or env.name() != "debug"):
            raise RuntimeError(f"sharpdarts {' '.join(self.argv)} exited with status {rc}")
        return {"rc": rc, "run": tee.last.split()[-1] if tee.last else None, **record}


def make_executor(launcher: str, folder: str | os.PathLike, resources: dict, name: str):
    """A submitit executor for ``launcher`` with ``resources`` (from :func:`cluster`)."""
    if launcher not in LAUNCHERS:
        raise UserError(f"--launcher {launcher!r}: use one of {', '.join(LAUNCHERS)}.")
    if launcher == "slurm" and shutil.which("srun") is None:
        raise UserError(
            "--launcher slurm needs a Slurm cluster (no `srun` on PATH here); "
            "use --launcher local to run the sweep on this machine."
        )
    executor = submitit.AutoExecutor(
        folder=str(folder), cluster=launcher, slurm_max_num_timeout=resources["max_num_timeout"]
    )
    params = dict(
        timeout_min=int(math.ceil(resources["timeout_min"])),
        nodes=resources["nodes"],
        tasks_per_node=resources["tasks_per_node"],
        name=name,
        cpus_per_task=resources["cpus_per_task"],
        mem_gb=resources["mem_gb"],
        gpus_per_node=resources["gpus_per_node"],
    )
    if launcher == "slurm":
        params.update(
            slurm_partition=resources["partition"],
            slurm_array_parallelism=resources["parallel"],
            slurm_signal_delay_s=resources["signal_delay_s"],
            slurm_additional_parameters=resources["slurm_additional_parameters"],
        )
    else:  # a workstation: as many GPUs as it has, and no Slurm-only options
        params["gpus_per_node"] = min(params["gpus_per_node"], _gpus())
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _job_argv(experiment: str, seed: int, args) -> list[str]:
    argv = ["run", experiment, "--seed", str(seed), "--results", str(Path(args.results).resolve())]
    for binding in args.gin_param:
        argv += ["--gin_param", binding]
    for binding in args.allow_unused:
        argv += ["--allow-unused", binding]
    if args.data:
        argv += ["--data", str(Path(args.data).resolve())]
    if args.smoke:
        argv.append("--smoke")
    if args.allow_dirty:
        argv.append("--allow-dirty")
    if args.project:
        argv = ["--project", str(Path(args.project).resolve()), *argv]
    return argv


def _check_experiments(names: list[str], args) -> None:
    """Every experiment must configure and build, and every binding must take effect, before
    any job is queued: a typo fails here (exit 2), not in every job. The datasets may live only
    on the compute nodes, so the check builds on a tiny synthetic dataset of the same shape."""
    from sharpdarts.face import runner

    for name in names:
        configured = runner.configure(
            name, list(args.gin_param), args.smoke, args.results, tuple(args.allow_unused)
        )
        if not args.smoke:
            runner._apply_smoke()  # the dataset's shape and classes, synthetic
            gin.bind_parameter("build_datasets.synthetic_size", (8, 8))
        runner.build_checked(configured, 0, args.data)
    gin.clear_config()


def _resources(args) -> dict:
    from sharpdarts import resources
    from sharpdarts.face import runner

    files = [p for p in [resources.find("gin/cluster.gin")] if p is not None]
    flags = {"partition": repr(args.partition) if args.partition else None}
    flags.update(
        {param: getattr(args, option.lstrip("-")) for option, (param, _) in OPTION_KINDS.items()}
    )
    bindings = [*args.cluster_param] + [
        f"cluster.{k} = {v}" for k, v in flags.items() if v is not None
    ]
    runner._parse_config(files, bindings)
    try:
        validate.check_config()  # a bad --cluster_param or gin/cluster.gin value: exit 2
        return cluster()
    finally:
        gin.clear_config()


def run_sweep(args, entry_point: Callable[[list[str]], int]) -> int:
    """``sharpdarts sweep``: submit the jobs; the local launcher also waits for them.

    Args:
        args: the parsed ``sharpdarts sweep`` arguments.
        entry_point: what each job calls with its ``sharpdarts`` arguments (the command
            line's ``main``, passed in so that this module does not import the command line).
    """
    from sharpdarts.face import experiments

    if args.status is not None:
        return print_status(args.results, args.status or None)
    if not args.experiments:
        raise UserError(
            "name the experiments to sweep (e.g. sharpdarts sweep "
            "cifar10/sharpsepconv_darts --seeds 1-8), or ask --status."
        )
    for option, (_, kind) in OPTION_KINDS.items():
        value = getattr(args, option.lstrip("-"))
        if value is not None:
            validate.check_value(option, value, kind)
    seeds = parse_seeds(args.seeds)
    names = [experiments.resolve_experiment(name)[0] for name in args.experiments]
    resources = _resources(args)
    _check_experiments(list(args.experiments), args)
    sweep_id = new_run_id()
    folder = sweep_folder(args.results, sweep_id)
    executor = make_executor(args.launcher, folder / "jobs", resources, f"sharpdarts-{sweep_id}")
    jobs = [
        {
            "index": i,
            "experiment": name,
            "seed": seed,
            "argv": _job_argv(given, seed, args),
            "job_id": None,
        }
        for i, ((name, given), seed) in enumerate(
            (pair, seed) for pair in zip(names, args.experiments) for seed in seeds
        )
    ]
    record = {
        "sweep_id": sweep_id,
        "launcher": args.launcher,
        "created": _now(),
        "results": str(Path(args.results).resolve()),
        "resources": resources,
        "jobs": jobs,
    }
    calls = [SweepJob(job["argv"], sweep_id, job["index"], entry_point) for job in jobs]
    if args.launcher == "slurm":
        # sweep.json is written once Slurm has taken the jobs: a refused sweep leaves nothing.
        submitted = _submit_array(executor, calls, resources, args.results, folder)
        for job, handle in zip(jobs, submitted):
            job["job_id"] = handle.job_id
        io.atomic_write_json(folder / SWEEP_JSON, record)
        print(
            f"sweep {sweep_id}: {len(jobs)} jobs submitted to Slurm "
            f"({submitted[0].job_id.split('_')[0] if submitted else '-'})"
        )
        print(f"status: sharpdarts sweep --status {sweep_id} --results {args.results}")
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    io.atomic_write_json(folder / SWEEP_JSON, record)
    failed = _run_throttled(executor, calls, jobs, record, folder, resources["parallel"])
    print_status(args.results, sweep_id)
    return 1 if failed else 0


def _submit_array(executor, calls, resources: dict, results, folder: Path) -> list:
    """Submits ``calls`` as one Slurm job array (array index = position in the sweep).

    Raises:
        UserError: sbatch refused the jobs (one paragraph naming the option to change); the
            files submitit wrote for them, and any folder made for them, are removed.
    """
    made = [p for p in (Path(results), Path(results) / "sweeps", folder) if not p.exists()]
    quiet = _io.StringIO()  # submitit prints sbatch's stderr; the user's error says it once
    try:
        with contextlib.redirect_stderr(quiet), executor.batch():
            submitted = [executor.submit(call) for call in calls]
        sys.stderr.write(quiet.getvalue())  # taken: any warning is the user's to see
        return submitted
    except submitit.core.utils.FailedJobError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()  # only where it is empty: made for this sweep alone
        raise sweep_slurm.refusal(str(exc) or quiet.getvalue(), resources) from None


def _run_throttled(executor, calls, jobs, record, folder, parallel: int) -> int:
    """Submits the jobs ``parallel`` at a time and waits for them; returns how many failed."""
    pending = list(zip(jobs, calls))
    running: list = []
    failed = 0
    while pending or running:
        while pending and len(running) < max(1, parallel):
            job, call = pending.pop(0)
            handle = executor.submit(call)
            job["job_id"] = str(handle.job_id)
            io.atomic_write_json(folder / SWEEP_JSON, record)
            running.append((job, handle))
        still = []
        for job, handle in running:
            if handle.done():
                try:
                    outcome = handle.results()[0]  # task 0 (rank 0) of the job
                    error = (
                        None
                        if outcome.get("rc") == 0
                        else f"sharpdarts run exited with status {outcome.get('rc')}"
                    )
                except Exception as exc:  # the job's own error: recorded, the sweep goes on
                    error = one_line(exc)[-300:]
                if error:
                    failed += 1
                    job["error"] = error
                    io.atomic_write_json(folder / SWEEP_JSON, record)
                    print(
                        f"job {job['index']} ({job['experiment']} seed {job['seed']}) "
                        f"failed: {error}",
                        file=sys.stderr,
                    )
            else:
                still.append((job, handle))
        running = still
        if running:
            time.sleep(0.5)
    return failed


def _now() -> str:
    from sharpdarts.store.provenance import utc_now

    return utc_now()
