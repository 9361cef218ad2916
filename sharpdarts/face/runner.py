"""The runner: wires an experiment's config, the engine's jobs and the run store.

The command line's `run` and `evaluate` call :func:`run_experiment` and :func:`evaluate`;
helpers here also resolve genotype and run references for the other commands.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import gin

# Imported for their gin registrations (optimizers, schedules, jobs, networks).
import sharpdarts.core.optimizers  # noqa: F401
import sharpdarts.core.schedules  # noqa: F401
import sharpdarts.engine.lm_search  # noqa: F401
import sharpdarts.engine.random_search  # noqa: F401
import sharpdarts.engine.rsps  # noqa: F401
import sharpdarts.engine.search_job  # noqa: F401
import sharpdarts.engine.train_job  # noqa: F401
import sharpdarts.nn.models  # noqa: F401
import sharpdarts.nn.multichannel.networks  # noqa: F401
import sharpdarts.nn.nb201  # noqa: F401
import sharpdarts.store.nb201_benchmark  # noqa: F401
from sharpdarts.core import config, run_folder, validate
from sharpdarts.engine import checkpoint, context, evaluation, jobs, loop
from sharpdarts.engine import lm_jobs as engine_lm
from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import specs
from sharpdarts.errors import UserError, one_line
from sharpdarts.face import experiments, failures, quickskip, tensorboard, threads
from sharpdarts.face.experiments import resolve_experiment
from sharpdarts.store import genotype_store, store

# ---- Gin -------------------------------------------------------------------------------------
_SEARCH_PATHS_ADDED: set[str] = set()


def _parse_config(files: list[Path], bindings: list[str], clear: bool = True) -> None:
    """Parses gin files and bindings; a gin error becomes a UserError naming file and line."""
    if clear:
        gin.clear_config()
    # gin keeps its search path across clear_config: add each root once, the project's first.
    for root in experiments.gin_search_paths():
        if root not in _SEARCH_PATHS_ADDED:
            gin.add_config_file_search_path(root)
            _SEARCH_PATHS_ADDED.add(root)
    # A config's `import my_ops` finds the user's module beside the .gin or in the project.
    experiments.make_user_code_importable(files)
    for path in files:
        try:
            gin.parse_config_file(str(path))
        except Exception as exc:  # gin reports syntax and name errors in several types
            raise UserError(f"The gin config {path} could not be read: {_gin_error(exc)}") from None
    for binding in bindings:
        try:
            gin.parse_config(binding)
        except Exception as exc:
            raise UserError(
                f'The binding --gin_param "{binding}" is not valid: {one_line(exc)}'
            ) from None


def _gin_error(exc: BaseException) -> str:
    """A gin parse error with its line: gin's own messages name it, tokenizer errors do not."""
    import tokenize

    if isinstance(exc, tokenize.TokenError) and len(exc.args) == 2:
        message, (line, _) = exc.args
        return f"line {line}: {message} (an unclosed bracket or quote above?)"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"line {exc.lineno}: {exc.msg}: {(exc.text or '').strip()}"
    return one_line(exc)


def _query(binding: str, default=None):
    try:
        return gin.query_parameter(binding)
    except (ValueError, KeyError):
        return default


def _resolve_genotype_macro(results: str) -> dict | None:
    """Checks the GENOTYPE macro against its network's search space and resolves ``run:RUN_ID``
    and promoted NAS-Bench-201 names (``genotype_store.training_genotype``); returns the record
    for run.json."""
    # NAS-Bench-201's network takes GENOTYPE through NB201Network.arch; every other network
    # takes a DARTS-space genotype.
    space = "nb201" if _query("NB201Network.arch") is not None else "darts"
    bind, record = genotype_store.training_genotype(_query("%GENOTYPE"), results, space)
    if bind is not None:
        gin.bind_parameter("GENOTYPE/gin.macro.value", bind)
    return record


def _resolve_init_from(results: str, smoke: bool) -> str | None:
    """Checks the INIT_FROM macro of a continuation and resolves ``run:RUN_ID`` to its folder."""
    try:
        value = gin.query_parameter("%INIT_FROM")
    except (ValueError, KeyError):
        return None
    if value is None:
        if smoke:
            return None  # a smoke run of a continuation starts from scratch
        raise UserError(
            "This experiment continues a finished run: name it with --gin_param "
            "\"INIT_FROM='run:RUN_ID'\" (or a checkpoint file)."
        )
    path = store.find_run(results, value[4:]).path if str(value).startswith("run:") else Path(value)
    if not path.exists():
        raise UserError(f"INIT_FROM names {path}, which does not exist.")
    gin.bind_parameter("INIT_FROM/gin.macro.value", str(path))
    return str(path)


def _apply_smoke() -> None:
    """Swaps the experiment's dataset for a small synthetic one of its shape and classes."""
    spec = specs.spec(_query("build_datasets.name", "cifar10"))
    if spec.modality == "text":  # a language model: a small synthetic corpus
        gin.bind_parameter("build_datasets.name", "synthetic_text")
        return
    gin.bind_parameter("build_datasets.name", "synthetic")
    gin.bind_parameter("build_datasets.synthetic_shape", tuple(spec.image_shape))
    gin.bind_parameter("build_datasets.synthetic_classes", spec.num_classes)


def _parse_experiment(path: Path, bindings: list[str], smoke: bool) -> set:
    """Parses an experiment (with gin/smoke.gin under --smoke, then the command line's
    bindings); returns the bindings that only smoke.gin made, which may go unused: smoke.gin
    shrinks every kind of network, and an experiment builds only one."""
    _parse_config([path], [])
    if not smoke:
        _parse_config([], bindings, clear=False)
        return set()
    before_smoke = config.bound_keys()
    _parse_config([experiments.smoke_gin()], [], clear=False)
    smoke_only = config.bound_keys() - before_smoke  # the experiment's own stay checked
    _parse_config([], bindings, clear=False)
    _apply_smoke()
    # What the command line binds is the user's own: it must take effect, smoke or not.
    return smoke_only - {key for binding in bindings for key in config.keys_of(binding)}


def _build(job, **kwargs):
    """Builds a job (before any run folder exists); a bad config becomes a UserError."""
    try:
        return job(build_only=True, **kwargs)
    except UserError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"The experiment could not be built: {one_line(exc)}") from None
    except RuntimeError as exc:  # gin's "Required bindings ... not provided": a config gap
        if "Required bindings" not in str(exc):
            raise
        raise UserError(
            f"The experiment could not be built: {one_line(exc)} (an include or "
            "a binding is missing from the .gin file)."
        ) from None


def check_options(args) -> None:
    """Refuses a bad seed, data root or results root (before anything is read or written)."""
    if getattr(args, "seed", None) is not None:
        validate.check_value("--seed", args.seed, validate.SEED)
    validate.check_value("--results", args.results, validate.FOLDER)
    if args.data is not None:
        validate.check_value("--data", args.data, validate.FOLDER)


# ---- run ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Configured:
    """An experiment's config, parsed and resolved (gin holds it), before anything is built.

    Attributes:
        experiment: the experiment's name.
        path: its .gin file.
        job: the job it runs (``search``, ``train``).
        smoke_only: bindings only gin/smoke.gin made, which may go unused.
        config_text: the config as asked (saved as config.gin).
        extra: run.json fields (command-line bindings, genotype lineage, init_from).
        allow_unused: binding names the user allows to go unused (``--allow-unused``).
    """

    experiment: str
    path: Path
    job: Any
    smoke_only: set
    config_text: str
    extra: dict
    allow_unused: tuple[str, ...] = ()


def configure(
    name: str, gin_params: list[str], smoke: bool, results: str, allow_unused: tuple[str, ...] = ()
) -> Configured:
    """Parses and resolves an experiment's config (``sharpdarts run``'s first step).

    ``allow_unused`` names bindings that may take no effect at build time: the check after the
    build refuses every other unused binding (see :mod:`sharpdarts.core.config`).
    """
    experiment, path = resolve_experiment(name)
    smoke_only = _parse_experiment(path, gin_params, smoke)
    genotype_info = _resolve_genotype_macro(results)
    init_from = _resolve_init_from(results, smoke)
    try:
        job = jobs.experiment()
    except Exception as exc:
        raise UserError(
            f"{path} does not say which job to run (experiment.job = @search or "
            f"@train): {one_line(exc)}"
        ) from None
    extra = {"gin_params": list(gin_params), "smoke": bool(smoke), "experiment_file": str(path)}
    if genotype_info is not None:
        extra["genotype"] = genotype_info
    if init_from is not None:
        extra["init_from"] = init_from
    if allow_unused:
        extra["allow_unused"] = list(allow_unused)
    job_record = os.environ.get("SHARPDARTS_SWEEP_JOB")  # set by a sweep's scheduler job
    if job_record:
        extra["scheduler"] = json.loads(job_record)  # job id, array index, host
    return Configured(
        experiment, path, job, smoke_only, gin.config_str(), extra, tuple(allow_unused)
    )


def build_checked(configured: Configured, seed: int, data_root: str | None):
    """Builds the job (datasets, model, optimizer, schedule, loaders, ...) and refuses the
    config if any binding took no effect; nothing is written."""
    validate.check_config()  # bad values are refused by binding name before anything is built
    bundle = bundle_lib.build_datasets(root=data_root)
    built = _build(configured.job, seed=seed, data=bundle)
    config.check_bindings_used(configured.smoke_only, allowed=configured.allow_unused)
    return built


def run_experiment(args) -> int:
    """``sharpdarts run``: parse, build, check every binding, then start and fit the run."""
    check_options(args)
    # --allow-unused BINDING (repeatable) is the documented escape from the binding check.
    configured = configure(
        args.experiment,
        args.gin_param,
        args.smoke,
        args.results,
        tuple(getattr(args, "allow_unused", None) or ()),
    )
    job, extra = configured.job, configured.extra
    threads.check(getattr(args, "threads", None))
    # Lets a later `run` of the same request skip this run without importing torch.
    extra["request_key"] = quickskip.request_key(configured.path, args.gin_param, args.smoke)
    paper_experiment = not (args.smoke or configured.experiment.startswith("demo/"))
    # Under torchrun every process runs this command; rank 0 alone keeps the run folder.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    is_main = int(os.environ.get("RANK", "0")) == 0
    if world_size > 1:
        context.make_context()  # joins the process group before the ranks agree on what to do
        extra["world_size"] = world_size
        from sharpdarts.engine.data.shards import rank_seed  # each rank's own seed, recorded

        extra["rank_seeds"] = [rank_seed(args.seed, r) for r in range(world_size)]
        if torch_cuda_available():
            extra["device_count"] = world_size
    try:
        built = build_checked(configured, args.seed, args.data)
        # After the build: --threads wins over a config's make_context.threads.
        extra["threads"] = threads.apply(getattr(args, "threads", None))
        return _run_job(
            args,
            configured.experiment,
            job,
            built,
            configured.config_text,
            extra,
            paper_experiment,
            is_main,
        )
    finally:
        if world_size > 1:
            context.close_process_group()


def _run_job(args, experiment, job, built, config_text, extra, paper_experiment, is_main) -> int:
    """Starts (rank 0) and fits the built job; every rank follows rank 0's decision."""
    run, decision = None, None
    if is_main:
        run, decision = store.start_run(
            args.results,
            experiment,
            args.seed,
            config_text,
            command=sys.argv[:],
            kind=getattr(job, "run_kind", job.__name__),
            allow_dirty=args.allow_dirty or not paper_experiment,
            extra=extra,
        )
    decision = context.broadcast_object(decision)
    if decision == "skip":
        if is_main:
            print(f"already completed: {run.path}")
        return 0
    if not is_main:
        try:
            built.fit(None)
        except loop.NonFiniteLossError:
            return 1  # rank 0 reports it
        return 0
    print(
        f"{'resuming' if decision == 'resume' else 'running'} {experiment} (seed {args.seed}) "
        f"in {run.path}",
        flush=True,
    )
    with run.guard(), tensorboard.Recording(run) as recorded:  # events beside metrics.jsonl
        try:
            final = built.fit(recorded, restart=bool(getattr(args, "restart", False)))
        except loop.NonFiniteLossError as exc:
            run.fail(str(exc), resumable=False)
            print(f"run failed: {exc}", file=sys.stderr)
            return 1
        except checkpoint.NoGoodCheckpointError as exc:
            run.interrupt(one_line(exc))  # kept as it was: --restart resumes this folder
            raise UserError(str(exc)) from None
        except UserError:
            raise
        except Exception as exc:  # no raw traceback: the run is failed, error.log keeps it
            raise failures.run_failed(run, exc, built) from exc
        run.finish(final)
    print(run.path)
    return 0


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# ---- evaluate -------------------------------------------------------------------------------
def evaluate(args) -> int:
    """``sharpdarts evaluate``: measure saved weights; one record per checkpoint content."""
    threads.check(getattr(args, "threads", None))
    check_options(args)
    if args.dataset in ("ptb", "wt2"):  # recurrent weights: test perplexity
        fragments = [
            experiments.gin_fragment(f"datasets/{args.dataset}"),
            experiments.gin_fragment(f"networks/rnn_{args.dataset}"),
        ]
        network, job = "RNNModel", engine_lm.lm_evaluate_checkpoint
    else:
        fragments = [
            experiments.gin_fragment(f"datasets/{args.dataset}"),
            experiments.gin_fragment(f"networks/{args.dataset}"),
        ]
        network = "NetworkCIFAR" if args.dataset == "cifar10" else "NetworkImageNet"
        job = evaluation.evaluate_checkpoint
    target = Path(args.checkpoint)
    if not target.exists():
        target = store.find_run(args.results, args.checkpoint).path
    checkpoint_file = run_folder.checkpoint_file(target)
    if target.is_dir() and not checkpoint_file.exists():
        raise UserError(f"{target} holds no {checkpoint_file.name} to evaluate.")
    sha256 = checkpoint.file_sha256(checkpoint_file)
    # The hash is a binding (not a comment): it is part of the config hash, so two
    # checkpoints make two records, and the job checks that the file still has it.
    scope = job.__name__
    bindings = [
        f"GENOTYPE = '{args.arch}'",
        f"{scope}.network = @{network}",
        f"{scope}.checkpoint_sha256 = '{sha256}'",
    ] + list(args.gin_param)
    _parse_config(fragments, bindings)
    genotype_info = _resolve_genotype_macro(args.results)
    validate.check_config()
    bundle = bundle_lib.build_datasets(root=args.data)
    built = _build(job, checkpoint=target, data=bundle)
    config.check_bindings_used(what="evaluation")
    used_threads = threads.apply(getattr(args, "threads", None))
    config_text = gin.config_str() + f"\n# checkpoint: {target.resolve()}\n"
    run, decision = store.start_run(
        args.results,
        f"evaluate/{args.dataset}",
        0,
        config_text,
        command=sys.argv[:],
        kind="evaluate",
        extra={
            "checkpoint": str(target.resolve()),
            "checkpoint_sha256": sha256,
            "genotype": genotype_info,
            "threads": used_threads,
        },
    )
    if decision != "skip":
        with run.guard():
            run.finish(built.fit(run))
    print(json.dumps(run.info.get("final"), indent=1))
    print(run.path)
    return 0
