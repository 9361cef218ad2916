"""The ``sharpdarts`` command: run named experiments, build tables, show and promote genotypes.

Every user mistake (an unknown name, a bad gin binding, a missing dataset) ends with a
one-paragraph message and exit status 2, before anything is written; a run that fails
exits 1. See DESIGN.md for the contract of each subcommand.
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path

import gin

from sharpdarts import configurables  # noqa: F401  (torch classes for gin)
from sharpdarts import data as data_lib
from sharpdarts import engine, genotypes, runs
from sharpdarts import models, multichannel  # noqa: F401  (registers the networks with gin)
from sharpdarts.errors import UserError

REPO_DIR = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = REPO_DIR / "experiments"
SMOKE_GIN = REPO_DIR / "gin" / "smoke.gin"
DEFAULT_RESULTS = "results"

log = logging.getLogger("sharpdarts")


# ---- Experiments ---------------------------------------------------------------------------
def experiment_names() -> list[str]:
    """Every named experiment: the .gin files under experiments/, without the suffix."""
    return sorted(p.relative_to(EXPERIMENTS_DIR).with_suffix("").as_posix()
                  for p in EXPERIMENTS_DIR.rglob("*.gin"))


def resolve_experiment(name: str) -> tuple[str, Path]:
    """An experiment name (``cifar10/sharpdarts``) or a path to any .gin file."""
    path = Path(name)
    if path.suffix == ".gin" and path.is_file():
        try:
            return path.resolve().relative_to(EXPERIMENTS_DIR).with_suffix("").as_posix(), path
        except ValueError:
            return path.stem, path
    candidate = EXPERIMENTS_DIR / f"{name}.gin"
    if candidate.is_file():
        return name, candidate
    close = difflib.get_close_matches(name, experiment_names(), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"Unknown experiment '{name}'.{hint} `sharpdarts list` shows every "
                    "experiment; a path to a .gin file also works.")


def describe_experiments() -> list[dict]:
    """Each experiment with its table and row, read from the table definitions (data)."""
    from sharpdarts import results

    rows = {}
    paper = results.paper_tables()
    for r in paper.itertuples():
        if isinstance(r.experiment, str):
            without = " (without AutoAugment)" if r.table == "cifar10" and r.autoaugment == "no" else ""
            rows[r.experiment] = (r.table, f"{r.architecture}{without}")
    prefixes = {}
    for table, definition in results.load_table_defs().items():
        for name in definition.get("rows", {}).get("experiments", []):
            rows.setdefault(name, (table, name.split("/")[-1]))
        if "experiment_prefix" in definition.get("rows", {}):
            prefixes[definition["rows"]["experiment_prefix"]] = table
    out = []
    for name in experiment_names():
        header = [line[1:].strip() for line in
                  (EXPERIMENTS_DIR / f"{name}.gin").read_text().splitlines() if line.startswith("#")]
        table = next((t for prefix, t in prefixes.items() if name.startswith(prefix)), "-")
        table, row = rows.get(name, (table, "-"))
        out.append({"experiment": name, "table": table, "row": row,
                    "summary": header[0] if header else ""})
    return out


# ---- Gin -------------------------------------------------------------------------------------
def _parse_config(files: list[Path], bindings: list[str]) -> None:
    """Parses gin files and bindings; a gin error becomes a UserError naming file and line."""
    gin.clear_config()
    gin.add_config_file_search_path(str(REPO_DIR))
    for path in files:
        try:
            gin.parse_config_file(str(path))
        except Exception as exc:  # gin reports syntax and name errors in several types
            raise UserError(f"The gin config {path} could not be read: {_gin_error(exc)}") from None
    for binding in bindings:
        try:
            gin.parse_config(binding)
        except Exception as exc:
            raise UserError(f"The binding --gin_param \"{binding}\" is not valid: "
                            f"{_one_line(exc)}") from None


def _gin_error(exc: BaseException) -> str:
    """A gin parse error with its line: gin's own messages name it, tokenizer errors do not."""
    import tokenize

    if isinstance(exc, tokenize.TokenError) and len(exc.args) == 2:
        message, (line, _) = exc.args
        return f"line {line}: {message} (an unclosed bracket or quote above?)"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"line {exc.lineno}: {exc.msg}: {(exc.text or '').strip()}"
    return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split())


def _query(binding: str, default=None):
    try:
        return gin.query_parameter(binding)
    except (ValueError, KeyError):
        return default


def _resolve_genotype_macro(results: str) -> dict | None:
    """Checks the GENOTYPE macro and resolves ``run:RUN_ID``; returns its lineage for run.json."""
    value = _query("%GENOTYPE")
    if value is None:
        return None
    if isinstance(value, str) and value.startswith("run:"):
        run = runs.find_run(results, value[4:])
        final = run.info.get("final") or {}
        if "genotype" not in final:
            raise UserError(f"Run {run.run_id} has no final genotype (status "
                            f"{run.info.get('status')}); only a completed search run can be named "
                            "as GENOTYPE='run:RUN_ID'.")
        gin.bind_parameter("GENOTYPE/gin.macro.value", final["genotype"])
        return {"name": value, "source": "run", "run_id": run.run_id,
                "experiment": run.info.get("experiment"),
                "commit": (run.info.get("git") or {}).get("commit"),
                "epoch": final.get("genotype_epoch"), "genotype": final["genotype"]}
    if not isinstance(value, str):
        return {"name": None, "source": "config", "genotype": value}
    try:
        genotype = genotypes.get(value)
    except KeyError as exc:
        raise UserError(f"Unknown genotype: {_one_line(exc)} Names come from the registry "
                        "(`sharpdarts genotype show NAME`), experiments/genotypes.json (promoted "
                        "searches), or 'run:RUN_ID' for a search run's result.") from None
    return {"name": value, "source": "builtin" if genotypes.is_builtin(value) else "promoted",
            "lineage": genotypes.lineage(value), "genotype": genotypes.to_dict(genotype)}


def _resolve_init_from(results: str, smoke: bool) -> str | None:
    """Checks the INIT_FROM macro of a continuation and resolves ``run:RUN_ID`` to its folder."""
    try:
        value = gin.query_parameter("%INIT_FROM")
    except (ValueError, KeyError):
        return None
    if value is None:
        if smoke:
            return None  # a smoke run of a continuation starts from scratch
        raise UserError("This experiment continues a finished run: name it with --gin_param "
                        "\"INIT_FROM='run:RUN_ID'\" (or a checkpoint file).")
    path = runs.find_run(results, value[4:]).path if str(value).startswith("run:") else Path(value)
    if not path.exists():
        raise UserError(f"INIT_FROM names {path}, which does not exist.")
    gin.bind_parameter("INIT_FROM/gin.macro.value", str(path))
    return str(path)


def _apply_smoke() -> None:
    """Swaps the experiment's dataset for a small synthetic one of its shape and classes."""
    spec = data_lib.spec(_query("build_datasets.name", "cifar10"))
    gin.bind_parameter("build_datasets.name", "synthetic")
    gin.bind_parameter("build_datasets.synthetic_shape", tuple(spec.image_shape))
    gin.bind_parameter("build_datasets.synthetic_classes", spec.num_classes)


def _build_check(job, bundle) -> None:
    """Builds the network once so a bad binding or genotype is reported before a run starts."""
    reference = _query(f"{job.__name__}.network")
    if reference is None:
        raise UserError(f"The experiment does not bind {job.__name__}.network.")
    try:
        reference.scoped_configurable_fn(num_classes=bundle.spec.num_classes,
                                         in_channels=bundle.spec.channels)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"The network could not be built: {_one_line(exc)}") from None


# ---- run ---------------------------------------------------------------------------------
def cmd_run(args) -> int:
    experiment, path = resolve_experiment(args.experiment)
    files = [path] + ([SMOKE_GIN] if args.smoke else [])
    _parse_config(files, args.gin_param)
    if args.smoke:
        _apply_smoke()
    genotype_info = _resolve_genotype_macro(args.results)
    init_from = _resolve_init_from(args.results, args.smoke)
    try:
        job = engine.experiment()
    except Exception as exc:
        raise UserError(f"{path} does not say which job to run (experiment.job = @search or "
                        f"@train): {_one_line(exc)}") from None
    bundle = data_lib.build_datasets(root=args.data)
    _build_check(job, bundle)
    config_text = gin.config_str()
    paper_experiment = not (args.smoke or experiment.startswith("demo/"))
    extra = {"gin_params": list(args.gin_param), "smoke": bool(args.smoke),
             "experiment_file": str(path)}
    if genotype_info is not None:
        extra["genotype"] = genotype_info
    if init_from is not None:
        extra["init_from"] = init_from
    # Under torchrun every process runs this command; rank 0 alone keeps the run folder.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    is_main = int(os.environ.get("RANK", "0")) == 0
    if world_size > 1 and job is engine.search:
        raise UserError("The search runs in one process (as the original's did): its architecture "
                        "steps are not averaged across processes. Start it without torchrun.")
    if world_size > 1:
        engine.make_context()  # joins the process group before the ranks agree on what to do
        extra["world_size"] = world_size
        if torch_cuda_available():
            extra["device_count"] = world_size
    try:
        return _run_job(args, experiment, job, bundle, config_text, extra, paper_experiment, is_main)
    finally:
        if world_size > 1:
            engine.close_process_group()


def _run_job(args, experiment, job, bundle, config_text, extra, paper_experiment, is_main) -> int:
    """Starts (rank 0) and runs the job; every rank follows rank 0's decision."""
    run, decision = None, None
    if is_main:
        run, decision = runs.start_run(
            args.results, experiment, args.seed, config_text, command=sys.argv[:],
            kind=job.__name__, allow_dirty=args.allow_dirty or not paper_experiment, extra=extra)
    decision = engine.broadcast_object(decision)
    if decision == "skip":
        if is_main:
            print(f"already completed: {run.path}")
        return 0
    if not is_main:
        try:
            job(run=None, seed=args.seed, data=bundle)
        except engine.NonFiniteLossError:
            return 1  # rank 0 reports it
        return 0
    print(f"{'resuming' if decision == 'resume' else 'running'} {experiment} (seed {args.seed}) "
          f"in {run.path}", flush=True)
    with run.guard():
        try:
            final = job(run=run, seed=args.seed, data=bundle)
        except engine.NonFiniteLossError as exc:
            run.fail(str(exc), resumable=False)
            print(f"run failed: {exc}", file=sys.stderr)
            return 1
        run.finish(final)
    print(run.path)
    return 0


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# ---- evaluate -------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    protocol = REPO_DIR / "gin" / "protocols" / f"train_{args.dataset}.gin"
    network = "NetworkCIFAR" if args.dataset == "cifar10" else "NetworkImageNet"
    target = Path(args.checkpoint)
    if not target.exists():
        target = runs.find_run(args.results, args.checkpoint).path
    if target.is_dir() and not (target / "checkpoint.pt").exists():
        raise UserError(f"{target} holds no checkpoint.pt to evaluate.")
    bindings = [f"GENOTYPE = '{args.arch}'", "EPOCHS = 1", "BATCH_SIZE = 128",
                "experiment.job = @evaluate_checkpoint",
                f"evaluate_checkpoint.network = @{network}"] + list(args.gin_param)
    _parse_config([protocol], bindings)
    genotype_info = _resolve_genotype_macro(args.results)
    bundle = data_lib.build_datasets(root=args.data)
    _build_check(engine.evaluate_checkpoint, bundle)
    config_text = gin.config_str() + f"\n# checkpoint: {target.resolve()}\n"
    run, decision = runs.start_run(
        args.results, f"evaluate/{args.dataset}", 0, config_text, command=sys.argv[:],
        kind="evaluate", extra={"checkpoint": str(target.resolve()), "genotype": genotype_info})
    if decision != "skip":
        with run.guard():
            run.finish(engine.evaluate_checkpoint(run=run, checkpoint=target, data=bundle))
    print(json.dumps(run.info.get("final"), indent=1))
    print(run.path)
    return 0


# ---- list / table / genotype / info ------------------------------------------------------
def cmd_list(args) -> int:
    items = describe_experiments()
    width = max(len(i["experiment"]) for i in items)
    for item in items:
        row = item["row"] if item["row"] != "-" else item["summary"]
        print(f"{item['experiment']:<{width}}  {item['table']:<14} {row}")
    return 0


def cmd_table(args) -> int:
    from sharpdarts import results

    table = results.build_table(args.name, results.load_runs(args.results))
    print(results.format_table(table, args.format))
    return 0


def cmd_tables(args) -> int:
    """Every table as markdown, and each experiment's figures, into one folder."""
    import warnings

    from sharpdarts import plots, results

    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = results.load_runs(args.results)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for name in results.table_names():
        path = out / f"{name}.md"
        path.write_text(results.format_table(results.build_table(name, frame), "markdown") + "\n")
        print(path)
    if frame.empty:
        return 0
    done = frame[frame["status"] == "completed"]
    for experiment, group in done.groupby("experiment"):
        stem = out / "figures" / experiment.replace("/", "-")
        folders = [Path(p) for p in group["path"]]
        print(plots.plot_curves(folders, f"{stem}-curves.svg"))
        if (group["kind"] == "search").all():
            best = group.sort_values("best_valid_acc", ascending=False).iloc[0]
            genotype = plots.genotype_for(best["path"], prefer="best_genotype")
            if genotype.layout == "cell":
                print(plots.plot_genotype(genotype, f"{stem}-genotype.svg", title=experiment))
                print(plots.plot_alphas(best["path"], f"{stem}-alphas.svg"))
            else:
                print(plots.plot_grid(best["path"], f"{stem}-grid.svg", path=list(genotype.normal)))
    return 0


def _genotype_of(name_or_run: str, results: str, best: bool = False):
    """A registry name, or a run (id, path or run:ID) whose final (or best) genotype is wanted."""
    try:
        return genotypes.get(name_or_run), genotypes.lineage(name_or_run)
    except KeyError as exc:
        registry_error = exc
    try:
        run = runs.find_run(results, name_or_run)
    except UserError:
        raise UserError(f"'{name_or_run}' is neither a genotype nor a run: "
                        f"{_one_line(registry_error)}") from None
    final = run.info.get("final") or {}
    key = "best_genotype" if best else "genotype"
    if not final.get(key):
        raise UserError(f"Run {run.run_id} has no {key.replace('_', ' ')} (status "
                        f"{run.info.get('status')}).")
    epoch = final.get("best_epoch") if best else final.get("genotype_epoch")
    lineage = {"run_id": run.run_id, "experiment": run.info.get("experiment"),
               "commit": (run.info.get("git") or {}).get("commit"),
               "dirty": (run.info.get("git") or {}).get("dirty"), "epoch": epoch,
               "which": key, "seed": run.info.get("seed")}
    return genotypes.from_dict(final[key]), lineage


def cmd_genotype_show(args) -> int:
    genotype, lineage = _genotype_of(args.name, args.results, args.best)
    print(json.dumps({"genotype": genotypes.to_dict(genotype), "lineage": lineage}, indent=1))
    return 0


def cmd_genotype_promote(args) -> int:
    genotype, lineage = _genotype_of(args.run, args.results, args.best)
    if not lineage or "run_id" not in lineage:
        raise UserError(f"'{args.run}' is a builtin genotype, not a run; promote a search run.")
    try:
        genotypes.promote(args.name, genotype, lineage, replace=args.replace)
    except ValueError as exc:
        raise UserError(f"Cannot promote as {args.name}: {_one_line(exc)}") from None
    print(f"promoted {lineage['run_id']} (epoch {lineage['epoch']}) as {args.name} in "
          f"{genotypes.user_registry_path()}")
    return 0


def cmd_info(args) -> int:
    from sharpdarts.metrics import count_parameters, multiply_adds
    from sharpdarts.models import NetworkCIFAR, NetworkImageNet

    genotype, _ = _genotype_of(args.name, args.results)
    try:
        if args.dataset == "cifar10":
            net, shape = NetworkCIFAR(36, 10, 20, True, genotype, C_mid=args.C_mid), (3, 32, 32)
        else:
            net, shape = NetworkImageNet(48, 1000, 14, True, genotype, C_mid=args.C_mid), (3, 224, 224)
    except ValueError as exc:
        raise UserError(f"{args.name} does not build: {_one_line(exc)}") from None
    print(json.dumps({"genotype": args.name, "dataset": args.dataset,
                      "parameters": count_parameters(net),
                      "parameters_with_auxiliary": count_parameters(net, auxiliary=True),
                      "multiply_adds": multiply_adds(net, shape)}, indent=1))
    return 0


# ---- plot ----------------------------------------------------------------------------------
def _run_folder(name: str, results: str) -> Path:
    path = Path(name)
    return path if (path / "run.json").is_file() else runs.find_run(results, name).path


def cmd_plot_genotype(args) -> int:
    from sharpdarts import plots

    genotype, _ = _genotype_of(args.name, args.results, args.best)
    written = plots.plot_genotype(genotype, args.out, separate=args.separate, title=args.title)
    print("\n".join(str(p) for p in (written if isinstance(written, list) else [written])))
    return 0


def cmd_plot_lr(args) -> int:
    from sharpdarts import plots

    print(plots.plot_lr(args.out, args.epochs, args.max_lr, args.min_lr, args.exponent_order,
                        warmup_epochs=args.warmup_epochs, log=args.log))
    return 0


def cmd_plot_curves(args) -> int:
    from sharpdarts import plots

    print(plots.plot_curves([_run_folder(r, args.results) for r in args.runs], args.out))
    return 0


def cmd_plot_alphas(args) -> int:
    from sharpdarts import plots

    print(plots.plot_alphas(_run_folder(args.run, args.results), args.out))
    return 0


def cmd_plot_grid(args) -> int:
    from sharpdarts import plots

    try:
        source = _run_folder(args.source, args.results)
    except UserError:
        source = args.source  # a raw-weights genotype name
    print(plots.plot_grid(source, args.out))
    return 0


def _add_plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="figures: genotype cells, lr schedules, curves, alphas, grid")
    psub = p.add_subparsers(dest="plot_command", required=True)
    g = psub.add_parser("genotype", help="the cells of a genotype or a search run (graphviz)")
    g.add_argument("name", help="a genotype name, a run id or a run folder")
    g.add_argument("--out", required=True, help="output file: .svg, .pdf or .png")
    g.add_argument("--separate", action="store_true", help="one file per cell")
    g.add_argument("--best", action="store_true", help="a search run's best-validation genotype")
    g.add_argument("--title", default=None)
    g.add_argument("--results", default=DEFAULT_RESULTS)
    g.set_defaults(func=cmd_plot_genotype)
    g = psub.add_parser("lr", help="cosine power annealing vs cosine and exponential curves")
    g.add_argument("--epochs", type=int, required=True)
    g.add_argument("--max_lr", type=float, required=True)
    g.add_argument("--min_lr", type=float, required=True)
    g.add_argument("--exponent_order", type=float, nargs="+", default=[10.0],
                   help="one or more exponent orders (one curve each)")
    g.add_argument("--warmup_epochs", type=int, default=None)
    g.add_argument("--log", action="store_true", help="logarithmic y axis")
    g.add_argument("--out", required=True)
    g.set_defaults(func=cmd_plot_lr)
    g = psub.add_parser("curves", help="accuracy, loss and lr per epoch of runs (seeds banded)")
    g.add_argument("runs", nargs="+", help="run ids or run folders")
    g.add_argument("--out", required=True)
    g.add_argument("--results", default=DEFAULT_RESULTS)
    g.set_defaults(func=cmd_plot_curves)
    g = psub.add_parser("alphas", help="a search run's architecture weights per edge and op")
    g.add_argument("run", help="a run id or run folder")
    g.add_argument("--out", required=True)
    g.add_argument("--results", default=DEFAULT_RESULTS)
    g.set_defaults(func=cmd_plot_alphas)
    g = psub.add_parser("grid", help="a multi-channel search's grid weights and chosen path")
    g.add_argument("source", help="a multi-channel search run, or MULTI_CHANNEL_MAX_W / _SCALAR")
    g.add_argument("--out", required=True)
    g.add_argument("--results", default=DEFAULT_RESULTS)
    g.set_defaults(func=cmd_plot_grid)


# ---- The parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sharpdarts", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="every named experiment with its table and row")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run one experiment (prints its run folder)")
    p.add_argument("experiment", help="a name under experiments/ (e.g. cifar10/sharpdarts) or a .gin path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gin_param", action="append", default=[], metavar="BINDING",
                   help="a gin binding, e.g. EPOCHS=5 (repeatable)")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="the results store (default results/)")
    p.add_argument("--data", default=None, help="dataset root (default $SHARPDARTS_DATA or data/)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny widths, 2 epochs, synthetic data: any experiment in seconds on a CPU")
    p.add_argument("--allow-dirty", "--allow_dirty", dest="allow_dirty", action="store_true",
                   help="run a paper experiment from a tree with uncommitted changes (marked so)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("table", help="print a results table")
    p.add_argument("name", help="cifar10, imagenet, search, demo")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv"])
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("tables", help="every table (markdown) and each experiment's figures")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--out", default=None, help="output folder (default RESULTS/tables)")
    p.set_defaults(func=lambda a: cmd_tables(argparse.Namespace(
        results=a.results, out=a.out or str(Path(a.results) / "tables"))))

    p = sub.add_parser("genotype", help="show or promote genotypes")
    gsub = p.add_subparsers(dest="genotype_command", required=True)
    g = gsub.add_parser("show", help="a registry genotype or a run's genotype, with its lineage")
    g.add_argument("name", help="a genotype name, a run id or a run folder")
    g.add_argument("--best", action="store_true", help="a search run's best-validation genotype")
    g.add_argument("--results", default=DEFAULT_RESULTS)
    g.set_defaults(func=cmd_genotype_show)
    g = gsub.add_parser("promote", help="add a search run's genotype to experiments/genotypes.json")
    g.add_argument("run", help="a run id or run folder")
    g.add_argument("name", help="the registry name (letters, digits, underscores)")
    g.add_argument("--best", action="store_true", help="promote the best-validation genotype")
    g.add_argument("--replace", action="store_true", help="replace a promoted genotype of that name")
    g.add_argument("--results", default=DEFAULT_RESULTS)
    g.set_defaults(func=cmd_genotype_promote)

    p = sub.add_parser("info", help="parameters and multiply-adds of a genotype's network")
    p.add_argument("name", help="a genotype name or a search run")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "imagenet"])
    p.add_argument("--C_mid", type=int, default=None, help="middle width of choke ops (32)")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("evaluate", help="test error of saved weights (ours or the original code's)")
    p.add_argument("checkpoint", help="a checkpoint file, a run folder or a run id")
    p.add_argument("--arch", required=True, help="the genotype the weights belong to")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "imagenet"])
    p.add_argument("--gin_param", action="append", default=[], metavar="BINDING")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--data", default=None)
    p.set_defaults(func=cmd_evaluate)

    _add_plot_parser(sub)
    return parser


def _print_user_error(exc: BaseException) -> None:
    text = _one_line(exc)
    # gin appends "In call to configurable ..." to errors raised inside configurables.
    text = text.split(" In call to configurable")[0]
    print(textwrap.fill(f"sharpdarts: error: {text}", width=100, break_long_words=False,
                        break_on_hyphens=False), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    # SIGTERM (a scheduler's kill) ends the run as 'interrupted', to be resumed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        return args.func(args) or 0
    except UserError as exc:
        _print_user_error(exc)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
