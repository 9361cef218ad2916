"""The ``sharpdarts sweep`` command's arguments (no heavy imports: ``--help`` stays quick)."""

from __future__ import annotations

from collections.abc import Callable


def add_sweep_parser(sub, default_results: str, command: Callable) -> None:
    """Adds ``sweep`` to the ``sharpdarts`` subcommands ``sub``, run by ``command(args)``."""
    p = sub.add_parser(
        "sweep",
        help="one scheduler job per experiment and seed (Slurm or local, via submitit)",
        description="Submits `sharpdarts run EXPERIMENT --seed S` for every experiment and seed "
        "as one job each; preempted or timed-out jobs are requeued and resume from "
        "their checkpoint. --status shows each job's state.",
    )
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT")
    p.add_argument("--seeds", default="1", help="seeds and ranges: 1-8, 1,3,5 (default 1)")
    p.add_argument(
        "--launcher",
        default="local",
        choices=["slurm", "local", "debug"],
        help="slurm: submit to the cluster and return; local: run here, --parallel "
        "at a time, and wait; debug: in this process, one after another",
    )
    p.add_argument(
        "--status",
        nargs="?",
        const="",
        default=None,
        metavar="SWEEP_ID",
        help="show each job's state (the latest sweep when no id is given)",
    )
    p.add_argument(
        "--gin_param",
        action="append",
        default=[],
        metavar="BINDING",
        help="a gin binding for every run, e.g. EPOCHS=5 (repeatable)",
    )
    p.add_argument(
        "--cluster_param",
        action="append",
        default=[],
        metavar="BINDING",
        help='a binding of the job resources, e.g. "cluster.mem_gb = 64"',
    )
    p.add_argument("--partition", default=None, help="Slurm partition")
    p.add_argument(
        "--time",
        type=float,
        default=None,
        metavar="MINUTES",
        help="each job's time limit (it is requeued when it reaches it)",
    )
    p.add_argument("--gpus", type=int, default=None, help="GPUs per job (per node)")
    p.add_argument("--cpus", type=int, default=None, help="CPU cores per task")
    p.add_argument("--mem", type=float, default=None, metavar="GB", help="memory per node")
    p.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="jobs at once (local launcher; Slurm array parallelism)",
    )
    p.add_argument("--results", default=default_results)
    p.add_argument("--data", default=None, help="dataset root for every run")
    p.add_argument("--smoke", action="store_true", help="every run as `run --smoke`")
    p.add_argument("--allow-dirty", "--allow_dirty", dest="allow_dirty", action="store_true")
    p.add_argument(
        "--allow-unused",
        "--allow_unused",
        dest="allow_unused",
        action="append",
        default=[],
        metavar="BINDING",
    )
    p.set_defaults(func=command)


__all__ = ["add_sweep_parser"]
