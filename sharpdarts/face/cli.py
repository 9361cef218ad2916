"""The ``sharpdarts`` command: run named experiments, build tables, show and promote genotypes.

Every user mistake (an unknown name, a bad gin binding, a missing dataset) ends with a
one-paragraph message and exit status 2, before anything is written; a run that fails
exits 1. docs/cli.md describes each subcommand and every exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import textwrap
import traceback
from pathlib import Path

from sharpdarts import resources
from sharpdarts.errors import UserError, one_line
from sharpdarts.face import experiments
from sharpdarts.face.genotype_args import add_genotype_parser
from sharpdarts.face.nb201_args import add_nb201_parser
from sharpdarts.face.plot_args import add_plot_parser
from sharpdarts.face.sweep_args import add_sweep_parser

DEFAULT_RESULTS = "results"

log = logging.getLogger("sharpdarts")


# The runner, the models and plots import torch: each command imports what it needs, so that
# `--help`, `list` and `table` start quickly.
def cmd_run(args) -> int:
    from sharpdarts.face import nb201_args, quickskip

    # --benchmark is the two bindings it stands for: recorded, and skipped on, as those.
    if getattr(args, "benchmark", None):
        args.gin_param = list(args.gin_param) + nb201_args.scorer_bindings(args.benchmark)
    done = quickskip.completed_run(args)  # a completed run is found without importing torch
    if done is not None:
        print(f"already completed: {done}")
        return 0
    from sharpdarts.face import runner

    return runner.run_experiment(args)


def cmd_evaluate(args) -> int:
    from sharpdarts.face import runner

    return runner.evaluate(args)


# ---- list / table / genotype / info ------------------------------------------------------
def cmd_list(args) -> int:
    items = experiments.describe_experiments()
    width = max(len(i["experiment"]) for i in items)
    for item in items:
        row = item["row"] if item["row"] != "-" else item["summary"]
        print(f"{item['experiment']:<{width}}  {item['table']:<14} {row}")
    return 0


def cmd_table(args) -> int:
    from sharpdarts.store import table_defs

    table_defs.definition(args.name)  # a bad name fails before pandas loads
    from sharpdarts.store import results, tables

    table = tables.build_table(args.name, results.load_runs(args.results))
    print(tables.format_table(table, args.format))
    return 0


def cmd_tables(args) -> int:
    """Every table as markdown, and each experiment's figures, into one folder."""
    import warnings

    from sharpdarts.face.plots import alphas, cells, curves, grid, progress
    from sharpdarts.store import results, table_defs, tables

    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = results.load_runs(args.results)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for name in table_defs.table_names():
        path = out / f"{name}.md"
        path.write_text(tables.format_table(tables.build_table(name, frame), "markdown") + "\n")
        print(path)
    if frame.empty:
        return 0
    done = frame[frame["status"] == "completed"]
    for experiment, group in done.groupby("experiment"):
        stem = out / "figures" / experiment.replace("/", "-")
        folders = [Path(p) for p in group["path"]]
        print(curves.plot_curves(folders, f"{stem}-curves.svg"))
        if (group["kind"] == "search").all():
            # A language-model search is best at its lowest perplexity, an image one at its
            # highest accuracy.
            by_ppl = "best_valid_ppl" in group and group["best_valid_ppl"].notna().any()
            best = group.sort_values(
                "best_valid_ppl" if by_ppl else "best_valid_acc", ascending=by_ppl
            ).iloc[0]
            if isinstance(best.get("genotype"), str):
                continue  # a NAS-Bench-201 cell (an arch string): no DARTS cell to draw
            genotype = cells.genotype_for(best["path"], prefer="best_genotype")
            if genotype.layout in ("cell", "edges", "recurrent"):
                print(cells.plot_genotype(genotype, f"{stem}-genotype.svg", title=experiment))
                if genotype.layout in ("cell", "edges"):
                    print(alphas.plot_alphas(best["path"], f"{stem}-alphas.svg"))
                # Few frames: a long search would otherwise make the tables slow.
                print(progress.plot_progress(best["path"], f"{stem}-progress.gif", max_frames=24))
            else:
                print(grid.plot_grid(best["path"], f"{stem}-grid.svg", path=list(genotype.normal)))
    return 0


def cmd_info(args) -> int:
    from sharpdarts.core.metrics import count_parameters, multiply_adds
    from sharpdarts.nn.models import NetworkCIFAR, NetworkImageNet
    from sharpdarts.store import genotype_store

    genotype, _ = genotype_store.genotype_of(args.name, args.results)
    try:
        if isinstance(genotype, str):  # a NAS-Bench-201 cell: the benchmark's network of it
            from sharpdarts.nn.nb201 import NB201Network

            if args.dataset != "cifar10":
                raise UserError(
                    f"{args.name} is a NAS-Bench-201 cell: `info` counts its CIFAR-10 network "
                    "(C=16, N=5); leave out --dataset."
                )
            net, shape = NB201Network(genotype, 16, 5, 10), (3, 32, 32)
        elif args.dataset == "cifar10":
            net, shape = NetworkCIFAR(36, 10, 20, True, genotype, C_mid=args.C_mid), (3, 32, 32)
        else:
            net, shape = (
                NetworkImageNet(48, 1000, 14, True, genotype, C_mid=args.C_mid),
                (3, 224, 224),
            )
    except ValueError as exc:
        raise UserError(f"{args.name} does not build: {one_line(exc)}") from None
    print(
        json.dumps(
            {
                "genotype": args.name,
                "dataset": args.dataset,
                "parameters": count_parameters(net),
                "parameters_with_auxiliary": count_parameters(net, auxiliary=True),
                "multiply_adds": multiply_adds(net, shape),
            },
            indent=1,
        )
    )
    return 0


def _add_threads(p) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads torch may use (default: torch's, one per core); recorded in run.json",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sharpdarts", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    parser.add_argument(
        "--project",
        default=None,
        metavar="DIR",
        help="your own project folder (experiments/, gin/, experiments/"
        "genotypes.json, modules your configs import), searched before "
        f"the shipped files; default ${resources.PROJECT_ENV_VAR}",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="every named experiment with its table and row")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run one experiment (prints its run folder)")
    p.add_argument(
        "experiment", help="a name under experiments/ (e.g. cifar10/sharpdarts) or a .gin path"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--gin_param",
        action="append",
        default=[],
        metavar="BINDING",
        help="a gin binding, e.g. EPOCHS=5 (repeatable)",
    )
    p.add_argument(
        "--results", default=DEFAULT_RESULTS, help="the results store (default results/)"
    )
    p.add_argument("--data", default=None, help="dataset root (default $SHARPDARTS_DATA or data/)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny widths, 2 epochs, synthetic data: any experiment in seconds on a CPU",
    )
    p.add_argument(
        "--benchmark", metavar="PATH", help="a NAS-Bench-201 file: record each cell's accuracies"
    )
    p.add_argument(
        "--allow-dirty",
        "--allow_dirty",
        dest="allow_dirty",
        action="store_true",
        help="run a paper experiment from a tree with uncommitted changes (marked so)",
    )
    p.add_argument(
        "--allow-unused",
        "--allow_unused",
        dest="allow_unused",
        action="append",
        default=[],
        metavar="BINDING",
        help="let BINDING (e.g. SearchNetwork.C) take no effect; any other binding "
        "that nothing built reads refuses the run with exit 2 (repeatable)",
    )
    _add_threads(p)
    p.add_argument(
        "--restart",
        action="store_true",
        help="when every checkpoint of the run to resume is damaged, start it again "
        "from epoch 1 in its folder (damaged ones are kept, renamed)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("table", help="print a results table")
    p.add_argument("name", help="cifar10, imagenet, search, demo")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("tables", help="every table (markdown) and each experiment's figures")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--out", default=None, help="output folder (default RESULTS/tables)")
    p.set_defaults(
        func=lambda a: cmd_tables(
            argparse.Namespace(results=a.results, out=a.out or str(Path(a.results) / "tables"))
        )
    )

    add_genotype_parser(sub, DEFAULT_RESULTS)

    p = sub.add_parser("info", help="parameters and multiply-adds of a genotype's network")
    p.add_argument("name", help="a genotype name or a search run")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "imagenet"])
    p.add_argument("--C_mid", type=int, default=None, help="middle width of choke ops (32)")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("evaluate", help="test error of saved weights (ours or the original code's)")
    p.add_argument("checkpoint", help="a checkpoint file, a run folder or a run id")
    p.add_argument("--arch", required=True, help="the genotype the weights belong to")
    p.add_argument(
        "--dataset",
        default="cifar10",
        choices=["cifar10", "imagenet", "ptb", "wt2"],
        help="ptb / wt2: test perplexity of recurrent weights (DARTS's 850 / 700 units)",
    )
    p.add_argument("--gin_param", action="append", default=[], metavar="BINDING")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--data", default=None)
    _add_threads(p)
    p.set_defaults(func=cmd_evaluate)

    add_plot_parser(sub, DEFAULT_RESULTS)
    _add_export_parser(sub)
    p = sub.add_parser("diff", help="binding-level differences of two experiments or runs")
    p.add_argument("a", help="an experiment, a run id or a run folder")
    p.add_argument(
        "b", nargs="?", default=None, help="another (default, when A is a run: A's experiment)"
    )
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.set_defaults(func=cmd_diff)
    add_sweep_parser(sub, DEFAULT_RESULTS, cmd_sweep)
    add_nb201_parser(sub, DEFAULT_RESULTS)
    return parser


def cmd_sweep(args) -> int:
    from sharpdarts.face import sweep  # submitit, gin and the runner load only when sweeping

    return sweep.run_sweep(args, entry_point=main)


def cmd_diff(args) -> int:
    from sharpdarts.face import diff

    return diff.cmd_diff(args)


def _add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="export runs to other tools (tensorboard)")
    esub = p.add_subparsers(dest="export_command", required=True)
    t = esub.add_parser(
        "tensorboard",
        help="TensorBoard event files for run folders written before runs recorded them",
    )
    t.add_argument("runs", nargs="*", help="run ids or folders (default: every run)")
    t.add_argument("--replace", action="store_true", help="rewrite folders that have events")
    t.add_argument("--results", default=DEFAULT_RESULTS)
    t.set_defaults(func=cmd_export_tensorboard)


def cmd_export_tensorboard(args) -> int:
    from sharpdarts.face import tensorboard

    return tensorboard.cmd_export(args)


def _print_user_error(exc: BaseException) -> None:
    text = " ".join(str(exc).split())
    # gin appends "In call to configurable ..." to errors raised inside configurables.
    text = text.split(" In call to configurable")[0]
    print(
        textwrap.fill(
            f"sharpdarts: error: {text}", width=100, break_long_words=False, break_on_hyphens=False
        ),
        file=sys.stderr,
    )


def _use_project(folder: str | None) -> None:
    """Makes ``folder`` (when given) the project root: ``$SHARPDARTS_PROJECT`` for this process."""
    if folder is not None:
        if not Path(folder).is_dir():
            raise UserError(f"--project {folder} is not a folder.")
        os.environ[resources.PROJECT_ENV_VAR] = str(Path(folder).resolve())


def _restore_project(previous: str | None) -> None:
    # In-process callers (tests, notebooks) get their environment back.
    if previous is None:
        os.environ.pop(resources.PROJECT_ENV_VAR, None)
    else:
        os.environ[resources.PROJECT_ENV_VAR] = previous


def _reader_went_away() -> int:
    """The reader of our output closed the pipe (``| head -1``): stop quietly, as Unix tools do.

    What is still buffered for the closed pipe is dropped (standard output now goes nowhere),
    so that the interpreter's final flush does not print an error either.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE  # the status of a tool ended by SIGPIPE


def _not_a_gin_lookup(record: logging.LogRecord) -> bool:
    """False for gin's "Path not found" lines: gin logs one as an error for every place it
    looks for an include before the one where it finds it (gin-config's resource reader); an include
    found nowhere still fails, with gin's own error."""
    return not (
        record.getMessage().startswith("Path not found: ")
        and record.pathname.endswith(os.path.join("gin", "resource_reader.py"))
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if _not_a_gin_lookup not in handler.filters:
            handler.addFilter(_not_a_gin_lookup)
    # SIGTERM (a scheduler's kill) ends the run as 'interrupted', to be resumed.
    # Inside a submitit job, submitit owns the signals (it requeues on SIGUSR2).
    if "SUBMITIT_EXECUTOR" not in os.environ:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    previous_project = os.environ.get(resources.PROJECT_ENV_VAR)
    try:
        _use_project(args.project)
        status = args.func(args) or 0
        sys.stdout.flush()  # a reader that went away shows here, inside the try
        return status
    except BrokenPipeError:
        return _reader_went_away()
    except UserError as exc:
        _print_user_error(exc)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # no raw traceback without -v (docs/cli.md: exit 1, a failed run)
        from sharpdarts.face import failures

        failed_run = isinstance(exc, failures.RunFailed)
        if args.verbose:
            traceback.print_exception(
                (exc.__cause__ or exc) if failed_run else exc, file=sys.stderr
            )
        _print_user_error(exc if failed_run else failures.unexpected(exc))
        return 1
    finally:
        _restore_project(previous_project)
