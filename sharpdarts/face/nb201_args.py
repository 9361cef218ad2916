"""The ``sharpdarts nb201`` command: the NAS-Bench-201 benchmark's ground truth.

- ``nb201 query ARCH_OR_RUN --benchmark PATH``: what the benchmark file records for a cell (an
  arch string, a promoted NAS-Bench-201 name, or a search run's final cell): accuracy per
  training set and split, parameters, multiply-adds and training seconds.
- ``nb201 random`` / ``nb201 rea --benchmark PATH --seed N``: the benchmark's own baselines,
  random search and regularised evolution, run against the file alone (no training) and
  recorded as run folders of ``nb201/search_random`` / ``nb201/search_rea``.

The benchmark module and the official API packages load only when a command runs, so that
``--help`` stays quick and the rest of sharpdarts works without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sharpdarts.errors import UserError, one_line

BENCHMARK_ENV = "SHARPDARTS_NB201_BENCHMARK"
# The datasets the baselines search on, and the benchmark's training set behind each: on
# CIFAR-10 they look up the 'cifar10-valid' training (train half, valid half), as the authors'.
SEARCH_DATASETS = {
    "cifar10": "cifar10-valid",
    "cifar100": "cifar100",
    "ImageNet16-120": "ImageNet16-120",
}


def scorer_bindings(path: str | os.PathLike) -> list[str]:
    """What ``sharpdarts run ... --benchmark PATH`` binds: the search's genotype scorer, the
    benchmark's accuracies of each cell (docs/nb201.md, "Searching the space")."""
    return [
        "search.genotype_scorer = @nb201_benchmark_scores()",
        f"nb201_benchmark_scores.path = {str(Path(path).expanduser().resolve())!r}",
    ]


def cell_of(name: str, results: str) -> str:
    """The arch string ``name`` is, the cell promoted under that name, or the final cell of the
    search run it names.

    Raises:
        UserError: a malformed arch string, an unknown run, a DARTS-space genotype name, or a
            run whose cell is not a NAS-Bench-201 arch string.
    """
    from sharpdarts.core import genotypes
    from sharpdarts.core.nb201_arch import parse_arch

    text = name.strip()
    if text.startswith("|") or text.endswith("|"):  # a cell; a run id or folder never is
        parse_arch(text)  # a malformed string says what one looks like
        return text
    if genotypes.NAME_RE.fullmatch(text):  # a run id never is one (it has a '-')
        try:
            cell = genotypes.get(text)
        except KeyError:
            cell = None  # not a registry name: a run folder, perhaps
        except ValueError as exc:
            raise UserError(one_line(exc)) from None
        if cell is not None and not isinstance(cell, str):
            raise UserError(
                f"{text} is {genotypes.SPACES['darts']}, not a NAS-Bench-201 cell: name an arch "
                "string, a promoted NAS-Bench-201 cell (`sharpdarts genotype list --space "
                "nb201`) or a NAS-Bench-201 search run."
            )
        if cell is not None:
            return cell
    from sharpdarts.store import reader, store

    run = store.find_run(results, text)
    info = reader.read_info(run.path)
    final = info.get("final") if isinstance(info.get("final"), dict) else {}
    cell = final.get("genotype", info.get("genotype"))
    if not isinstance(cell, str):
        raise UserError(
            f"run {run.run_id} ({info.get('experiment')}) has no NAS-Bench-201 cell: its "
            f"run.json records no arch string as its genotype."
        )
    parse_arch(cell)
    return cell


def _records(history: list) -> list[dict]:
    """metrics.jsonl of a search of the table: one record per evaluated cell."""
    from sharpdarts.core.nb201_search import best

    return [
        {
            "epoch": step,
            "arch": item.arch,
            "valid_acc": item.valid_acc,
            "seconds": item.seconds,
            "simulated_seconds": item.total_seconds,
            "best_arch": best(history[:step]).arch,
        }
        for step, item in enumerate(history, start=1)
    ]


def _benchmark(args):
    from sharpdarts.store.nb201_benchmark import open_benchmark

    return open_benchmark(args.benchmark or os.environ.get(BENCHMARK_ENV) or None)


def cmd_query(args) -> int:
    arch = cell_of(args.arch, args.results)
    print(json.dumps(_benchmark(args).query(arch, hp=args.hp), indent=1))
    return 0


def _config_text(args, method: str, benchmark) -> str:
    """The search's settings as run.json's config (its hash is part of the run's key)."""
    lines = [
        f"method = {method}",
        f"benchmark = {benchmark.path.name}",
        f"dataset = {args.dataset}",
        "hp = 12",
        f"time_budget = {args.time_budget:g}",
    ]
    if method == "rea":
        lines += [f"population_size = {args.population}", f"sample_size = {args.sample_size}"]
    return "\n".join(lines) + "\n"


def cmd_search(args) -> int:
    """Random search or REA against the benchmark, recorded as a run folder."""
    import random

    from sharpdarts.core import io, nb201_search
    from sharpdarts.store import store

    if args.time_budget <= 0:
        raise UserError(f"--time-budget is a positive number of seconds; got {args.time_budget}.")
    if args.nb201_command == "rea" and min(args.population, args.sample_size) < 1:
        raise UserError("--population and --sample-size are at least 1.")
    benchmark = _benchmark(args)
    dataset = SEARCH_DATASETS[args.dataset]
    method = args.nb201_command
    command = ["sharpdarts", "nb201", method, "--benchmark", str(benchmark.path)]
    command += ["--seed", str(args.seed), "--dataset", args.dataset]
    command += ["--time-budget", f"{args.time_budget:g}"]
    if method == "rea":
        command += ["--population", str(args.population), "--sample-size", str(args.sample_size)]
    rng = random.Random(args.seed)

    def simulate(arch: str) -> tuple[float, float]:
        index = benchmark.index(arch)
        trial = rng.choice(benchmark.trial_seeds(index, dataset, "12"))
        return benchmark.simulate(index, dataset, "12", trial)

    # The search of the table takes a moment: it runs before its folder is made, so that a
    # user error leaves nothing behind, and a resumed run starts again from its seed.
    ops = benchmark.ops()
    if method == "random":
        history = nb201_search.random_search(simulate, ops, rng, args.time_budget)
    else:
        history = nb201_search.regularized_evolution(
            simulate, ops, rng, args.time_budget, args.population, args.sample_size
        )
    if not history:
        raise UserError(
            f"--time-budget {args.time_budget:g} s pays for no cell of {benchmark.path.name}."
        )
    found = nb201_search.best(history)
    final = {
        "genotype": found.arch,
        "best_valid_acc": found.valid_acc,
        "best_epoch": history.index(found) + 1,
        "archs_evaluated": len(history),
        "search_seconds": history[-1].total_seconds,
        "search_dataset": dataset,
        **benchmark.table_figures(found.arch),
    }
    run, decision = store.start_run(
        args.results,
        f"nb201/search_{'random' if method == 'random' else 'rea'}",
        args.seed,
        _config_text(args, method, benchmark),
        command=command,
        kind="search",
        extra={"benchmark": {"file": benchmark.path.name, "package": benchmark.package}},
    )
    if decision == "skip":
        print(f"already completed: {run.path}")
        return 0
    with run.guard():
        io.write_jsonl(run.metrics_path, _records(history))
        run.finish(final, last_epoch=len(history))
    print(run.path)
    print(json.dumps(final, indent=1))
    return 0


def _add_benchmark(p) -> None:
    p.add_argument(
        "--benchmark",
        default=None,
        metavar="PATH",
        help=f"the benchmark file or archive folder (default ${BENCHMARK_ENV}); "
        "see docs/nb201_benchmark.md",
    )


def add_nb201_parser(sub, default_results: str) -> None:
    """Adds ``nb201`` and its commands to the ``sharpdarts`` subcommands ``sub``."""
    p = sub.add_parser("nb201", help="NAS-Bench-201: query the benchmark, RS and REA baselines")
    nsub = p.add_subparsers(dest="nb201_command", required=True)
    q = nsub.add_parser("query", help="the benchmark's figures of a cell or a search run's cell")
    q.add_argument(
        "arch", metavar="ARCH_OR_RUN", help="an arch string, a promoted name, a run id or folder"
    )
    _add_benchmark(q)
    q.add_argument(
        "--hp", default="200", choices=["200", "12"], help="training epochs (default 200)"
    )
    q.add_argument("--results", default=default_results)
    q.set_defaults(func=cmd_query)
    for name, text in (
        ("random", "random search against the benchmark (no training)"),
        ("rea", "regularised evolution against the benchmark (no training)"),
    ):
        s = nsub.add_parser(name, help=text)
        _add_benchmark(s)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--dataset", default="cifar10", choices=list(SEARCH_DATASETS))
        s.add_argument(
            "--time-budget",
            "--time_budget",
            dest="time_budget",
            type=float,
            default=12000.0,
            metavar="SECONDS",
            help="simulated training seconds to spend (default 12000, as the benchmark's)",
        )
        if name == "rea":
            s.add_argument("--population", type=int, default=10, help="population size (10)")
            s.add_argument(
                "--sample-size",
                "--sample_size",
                dest="sample_size",
                type=int,
                default=3,
                help="members drawn per tournament (3)",
            )
        s.add_argument("--results", default=default_results)
        s.set_defaults(func=cmd_search)


__all__ = ["add_nb201_parser", "cell_of"]
