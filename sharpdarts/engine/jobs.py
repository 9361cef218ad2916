"""The jobs an experiment trains with: ``search`` and ``train`` (saved weights are measured by
:mod:`sharpdarts.engine.evaluation`).

``search(...)`` is the original ``train_search.py``: weight steps on one half of the training
set alternate with architecture steps on the other. ``train(...)`` is ``train.py`` and the
ImageNet trainer: a fixed network with auxiliary loss, drop path, label smoothing and the lr
scaled by the global batch. Each is a gin configurable that *builds* its job (model, optimizer,
schedule, loaders, architect, criterion: everything before the first epoch) and then *fits* it
with the one epoch loop of :mod:`sharpdarts.engine.loop`. ``build_only=True`` returns the
built job instead, so the runner can check the config before a run folder exists and then fit
with the very objects it built (``job.fit(run)``). Each job's parameters are declared once, as
the fields of its dataclass (:class:`SearchParams`, :class:`TrainParams`,
see :mod:`sharpdarts.engine.job_params`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gin
import torch
from torch import nn

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core import validate
from sharpdarts.core.metrics import count_parameters, multiply_adds
from sharpdarts.core.optimizers import resolve_optimizer
from sharpdarts.core.schedules import resolve_schedule
from sharpdarts.engine import collapse
from sharpdarts.engine.architect import Architect
from sharpdarts.engine.checkpoint import init_weights_from
from sharpdarts.engine.context import cycle, make_context, seed_everything
from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import loaders
from sharpdarts.engine.data.shards import rank_seed
from sharpdarts.engine.evaluation import extra_test_errors
from sharpdarts.engine.job_params import REQUIRED, UNCHECKED, job_entry, param
from sharpdarts.engine.loop import ArchitectureSearch, Job, evaluate, weight_step
from sharpdarts.engine.preemption import midepoch_checkpoints
from sharpdarts.errors import UserError


def _weights_tools(params, learning_rate: float, epochs: int, optimizer, lr_schedule, ctx):
    """The optimizer, its per-epoch schedule and the AMP gradient scaler."""
    weight_optimizer = resolve_optimizer(optimizer)(params, learning_rate)
    scheduler = resolve_schedule(lr_schedule)(weight_optimizer, epochs)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.amp_dtype == torch.float16)
    return weight_optimizer, scheduler, scaler


def _genotype(model, skip_primitive) -> dict | str:
    """The search model's genotype, JSON-ready: a cell genotype's dict, or the arch string of
    a NAS-Bench-201 search (already text)."""
    genotype = model.genotype(skip_primitive=skip_primitive)
    return genotype if isinstance(genotype, str) else genotypes_lib.to_dict(genotype)


def _alphas(model) -> dict:
    """The architecture weights, for the alpha heatmaps (and the grid's paths)."""
    if hasattr(model, "raw_weights"):  # the multi-channel grid: its weights and paths
        raw = model.raw_weights()
        return {
            "grid_weights": {"normal": raw.normal, "reduce": raw.reduce},
            "paths": {name: list(p) for name, p in model.paths().items()},
        }
    # A DARTS-space supernet has a normal and a reduction matrix, NAS-Bench-201's one.
    names = [n for n in ("alphas_normal", "alphas_reduce", "alphas") if hasattr(model, n)]
    # The weights genotypes are read from: softmax, or the relaxation's (FairDARTS' sigmoid).
    relaxation = getattr(model, "relaxation", None)
    readout = relaxation.readout if relaxation is not None else lambda a: torch.softmax(a, -1)
    with torch.no_grad():
        return {name: readout(getattr(model, name).float()).cpu().tolist() for name in names}


# ---- Search --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchParams:
    """The parameters of :func:`search` (``search.NAME`` in a config)."""

    epochs: int = param(validate.EPOCHS, REQUIRED, "search epochs.")
    batch_size: int = param(
        validate.BATCH_SIZE,
        REQUIRED,
        "images per step (per process), for both halves of the training set.",
    )
    network: Callable[..., nn.Module] = param(
        UNCHECKED,
        REQUIRED,
        "builds the supernet from ``num_classes`` and ``in_channels`` "
        "(e.g. ``@SearchNetwork``, ``@MultiChannelNetwork``).",
    )
    learning_rate: float = param(validate.LEARNING_RATE, 0.025, "the weights' initial lr.")
    optimizer: str | Callable = param(
        UNCHECKED, "sgd", "the weights' optimizer factory (``@sgd``) or its name in ``OPTIMIZERS``."
    )
    lr_schedule: str | Callable = param(
        UNCHECKED,
        "cosine_power_annealing",
        "the per-epoch schedule (``@cosine_power_annealing``, ...) or its name.",
    )
    grad_clip: float | None = param(
        validate.NON_NEGATIVE.or_none(), 5.0, "gradient norm clip of the weights."
    )
    train_portion: float = param(
        validate.PORTION,
        0.5,
        "share of the training set for the weights; the rest trains the "
        "architecture and measures the search accuracy (``valid_*``: held out from the weights, "
        "never the test set).",
    )
    skip_primitive: str | None = param(
        UNCHECKED, "none", "the op left out when reading the genotype ('none', as DARTS), or None."
    )
    workers: int = param(validate.WORKERS, 0, "loader worker processes.")
    show_progress: bool = param(UNCHECKED, True, "a tqdm bar per epoch.")
    tau_schedule: Callable[[int, int], float] | None = param(
        UNCHECKED,
        None,
        "the relaxation's temperature of each epoch, ``f(epoch from 0, epochs)`` "
        "(``@linear_tau_schedule()``: GDAS; ``@snas_tau_schedule()``), set on ``model.tau``; "
        "None: fixed.",
    )
    arch_warmup_epochs: int = param(
        validate.Int("an integer >= 0 (epochs)", low=0),
        0,
        "epochs at the start that train the weights only, no architecture step "
        "(DrNAS 10, PC-DARTS 15).",
    )
    arch_after_weights: bool = param(
        UNCHECKED,
        False,
        "each iteration steps the weights first, then the architecture (GDAS's order); "
        "False: the architecture first (DARTS).",
    )
    genotype_scorer: Callable[[Any], dict] | None = param(
        UNCHECKED,
        None,
        "figures of a genotype from outside the search, recorded with each epoch's genotype "
        "and in ``final`` (``@nb201_benchmark_scores()``: the NAS-Bench-201 benchmark's "
        "accuracies of the current cell); None: none.",
    )


class SearchJob(collapse.MeasuresCollapse, ArchitectureSearch, Job):
    """A built architecture search (see :func:`search`)."""

    name = "search"

    def __init__(self, seed: int, data: bundle_lib.DataBundle | None, params: SearchParams):
        self.params = p = params
        self.ctx = ctx = make_context()
        seed_everything(seed)
        bundle = bundle_lib.given_or_built(data, seed)
        weight_idx, arch_idx = loaders.search_split(bundle.train, p.train_portion)
        self.train_loader = loaders.make_loader(
            bundle.train,
            p.batch_size,
            indices=weight_idx,
            workers=p.workers,
            seed=seed,
            distributed=ctx.distributed,
            drop_last=True,
        )
        arch_loader = loaders.make_loader(
            bundle.train,
            p.batch_size,
            indices=arch_idx,
            workers=p.workers,
            seed=seed + 1,
            distributed=ctx.distributed,
            drop_last=True,
        )
        self.valid_loader = loaders.make_loader(
            bundle.train,
            p.batch_size,
            indices=arch_idx,
            workers=p.workers,
            seed=seed + 2,
            distributed=ctx.distributed,
            exact=True,
        )
        self.rng_loaders = [self.train_loader, arch_loader, self.valid_loader]
        self.arch_batches = cycle(arch_loader)
        self.model = p.network(
            num_classes=bundle.spec.num_classes, in_channels=bundle.spec.channels
        )
        self.model.to(ctx.device)
        self.criterion = nn.CrossEntropyLoss().to(ctx.device)
        self.optimizer, self.scheduler, self.scaler = _weights_tools(
            self.model.weights(), p.learning_rate, p.epochs, p.optimizer, p.lr_schedule, ctx
        )
        self.architect = Architect(self.model, criterion=self.criterion)
        self.train_arch = True  # set each epoch by start_epoch (the warm-up epochs: False)
        self.collapse = collapse.CollapseTracker(bundle.train, arch_idx, p.batch_size, seed)
        if ctx.distributed:  # the same initial network everywhere, then each rank's own noise
            seed_everything(rank_seed(seed, ctx.rank))
        self.step_model = ctx.compiled(self.model)
        self.epochs, self.show_progress = p.epochs, p.show_progress
        self.checkpointing = midepoch_checkpoints()
        self.best = {"valid_acc": -1.0, "epoch": 0, "genotype": None}
        self.last_valid_acc = None

    def run_fields(self) -> dict:
        return {
            "parameters": count_parameters(self.model),
            "primitives": getattr(self.model, "primitives", None),
        }

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)  # DARTS-ES's stop (collapse.MeasuresCollapse) first
        self.train_arch = epoch > self.params.arch_warmup_epochs
        if self.params.tau_schedule is not None:  # GDAS, SNAS: a function of the epoch alone
            self.model.tau = float(self.params.tau_schedule(epoch - 1, self.epochs))

    def extra_state(self) -> dict:
        return {**super().extra_state(), "tau": getattr(self.model, "tau", None)}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        if state.get("tau") is not None:
            self.model.tau = state["tau"]

    def train_step(self, x, y):
        ctx = self.ctx
        xa, ya = next(self.arch_batches)
        xa, ya = xa.to(ctx.device, non_blocking=True), ya.to(ctx.device, non_blocking=True)
        lr = self.optimizer.param_groups[0]["lr"]
        arch_step = self.train_arch
        if arch_step and not self.params.arch_after_weights:
            self.architect.step(x, y, xa, ya, eta=lr, weight_optimizer=self.optimizer)
        with ctx.autocast():
            logits = self.step_model(x)
            loss = self.criterion(logits.float(), y)
        # Under torchrun each rank searches on its own shard; the weights' gradients are
        # averaged like the architecture's (the architect), so every rank stays identical.
        weight_step(
            self.optimizer,
            self.scaler,
            loss,
            list(self.model.weights()),
            self.params.grad_clip,
            average=ctx.distributed,
        )
        if arch_step and self.params.arch_after_weights:
            self.architect.step(x, y, xa, ya, eta=lr, weight_optimizer=self.optimizer)
        return loss, logits

    def end_epoch(self, epoch: int) -> dict:
        valid = evaluate(self.model, self.valid_loader, self.criterion, self.ctx)
        genotype = _genotype(self.model, self.params.skip_primitive)
        if valid["acc"] > self.best["valid_acc"]:
            self.best.update(valid_acc=valid["acc"], epoch=epoch, genotype=genotype)
        self.last_valid_acc = valid["acc"]
        return {
            "valid_loss": valid["loss"],
            "valid_acc": valid["acc"],
            "genotype": genotype,
            **self._scores(genotype),
            **_alphas(self.model),
            # A NAS-Bench-201 arch string has no normal/reduce cells to count skips in.
            **self.collapse.measure(self, epoch, genotype if isinstance(genotype, dict) else {}),
        }

    def _scores(self, genotype) -> dict:
        """The scorer's figures of ``genotype`` (e.g. its benchmark accuracies), or none."""
        scorer = self.params.genotype_scorer
        return dict(scorer(genotype)) if scorer is not None else {}

    def final(self, trained: bool) -> dict:
        final = {
            "best_valid_acc": self.best["valid_acc"],
            "best_epoch": self.best["epoch"],
            "valid_acc": self.last_valid_acc,
            "genotype": _genotype(self.model, self.params.skip_primitive),
            "best_genotype": self.best["genotype"],
            "genotype_epoch": self.epochs,
            **self.collapse.final(),
        }
        final.update(self._scores(final["genotype"]))
        raw = getattr(self.model, "raw_weights", None)
        if raw is not None:
            final["raw_weights"] = genotypes_lib.to_dict(raw())
        return final


@job_entry(SearchParams)
def search(
    run=None, seed: int = 0, data=None, build_only: bool = False, **params
) -> dict | SearchJob:
    """Architecture search: alternating architecture and weight steps (DARTS).

    Args:
        run: the run folder to record into (None: record nothing, keep no checkpoint).
        seed: seeds everything.
        data: the datasets, when the caller built them (else ``build_datasets()``).
        build_only: return the built :class:`SearchJob` (fit it with ``.fit(run)``).
        **params: :class:`SearchParams` (gin binds them).

    Returns:
        The final metrics (also written to the run), or the built job with ``build_only``.
    """
    job = SearchJob(seed, data, SearchParams(**params))
    return job if build_only else job.fit(run)


# ---- Training -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainParams:
    """The parameters of :func:`train` (``train.NAME`` in a config)."""

    epochs: int = param(validate.EPOCHS, REQUIRED, "training epochs.")
    batch_size: int = param(validate.BATCH_SIZE, REQUIRED, "images per step per process.")
    network: Callable[..., nn.Module] = param(
        UNCHECKED,
        REQUIRED,
        "builds the network from ``num_classes`` and ``in_channels`` "
        "(e.g. ``@NetworkCIFAR`` with ``NetworkCIFAR.genotype = %GENOTYPE``).",
    )
    learning_rate: float = param(
        validate.LEARNING_RATE,
        0.025,
        "initial lr, for a global batch of ``lr_reference_batch`` if given.",
    )
    optimizer: str | Callable = param(
        UNCHECKED, "sgd", "the optimizer factory (``@sgd``) or its name in ``OPTIMIZERS``."
    )
    lr_schedule: str | Callable = param(
        UNCHECKED,
        "cosine_power_annealing",
        "the per-epoch schedule (``@cosine_power_annealing``, ...) or its name.",
    )
    grad_clip: float | None = param(validate.NON_NEGATIVE.or_none(), 5.0, "gradient norm clip.")
    auxiliary_weight: float = param(
        validate.NON_NEGATIVE,
        0.4,
        "weight of the auxiliary head's loss (when the network has one).",
    )
    drop_path_prob: float = param(
        validate.PROBABILITY,
        0.2,
        "final drop path probability, ramped linearly from 0 over the epochs (0 for a "
        "network without drop path).",
    )
    label_smoothing: float = param(
        validate.PROBABILITY, 0.0, "cross-entropy label smoothing of the training loss (ImageNet)."
    )
    lr_reference_batch: int | None = param(
        validate.COUNT.or_none(),
        None,
        "scale the lr by global_batch / lr_reference_batch "
        "(256 for ImageNet), None for no scaling.",
    )
    init_from: str | None = param(
        UNCHECKED,
        None,
        "a checkpoint file or run folder to take the initial weights from "
        "(e.g. the README's 100-epoch ImageNet continuation at a lower lr).",
    )
    eval_batch_size: int | None = param(
        validate.BATCH_SIZE.or_none(), None, "batch size of evaluation (defaults to batch_size)."
    )
    valid_portion: float | None = param(
        validate.Real("a share in [0, 1)", low=0.0, high=1.0, high_open=True).or_none(),
        None,
        "share of the training set held out for validation (None: none; the paper's protocol "
        "trains on all of it and reports the final epoch; a dataset split, "
        "``build_datasets.split``, gives its own validation set instead).",
    )
    drop_last: bool = param(
        UNCHECKED, True, "drop each epoch's last incomplete training batch (NAS-Bench-201 keeps it)"
    )
    workers: int = param(validate.WORKERS, 0, "loader worker processes.")
    show_progress: bool = param(UNCHECKED, True, "a tqdm bar per epoch.")


class TrainJob(Job):
    """A built training of a fixed network (see :func:`train`)."""

    name = "train"

    def __init__(self, seed: int, data: bundle_lib.DataBundle | None, params: TrainParams):
        self.params = p = params
        self.ctx = ctx = make_context()
        # Each process its own stream (cutout, drop path); DDP copies rank 0's initial weights.
        seed_everything(rank_seed(seed, ctx.rank))
        self.bundle = bundle = bundle_lib.given_or_built(data, seed)
        self.eval_batch_size = eval_bs = p.eval_batch_size or p.batch_size
        # The training set, or a part of it; the validation set: the dataset split's
        # (NAS-Bench-201's), a held-out part of the training set, or none. It chooses the best
        # epoch; the test set never does.
        train_idx, valid_set, valid_idx = None, bundle.valid, None
        if p.valid_portion:
            if valid_set is not None:
                raise UserError(
                    "train.valid_portion holds out part of the training set, but the dataset's "
                    "split (build_datasets.split) has a validation set already: bind only one."
                )
            train_idx, valid_idx = loaders.search_split(bundle.train, 1.0 - p.valid_portion)
            valid_set = bundle.train
        self.train_loader = loaders.make_loader(
            bundle.train,
            p.batch_size,
            shuffle=True,
            indices=train_idx,
            workers=p.workers,
            seed=seed,
            distributed=ctx.distributed,
            drop_last=p.drop_last,
        )
        self.valid_loader = None
        if valid_set is not None:
            self.valid_loader = loaders.make_loader(
                valid_set,
                eval_bs,
                indices=valid_idx,
                workers=p.workers,
                seed=seed + 2,
                distributed=ctx.distributed,
                exact=True,
            )
        self.test_loader = loaders.make_loader(
            bundle.test, eval_bs, workers=p.workers, distributed=ctx.distributed, exact=True
        )
        self.rng_loaders = [self.train_loader] + ([self.valid_loader] if self.valid_loader else [])
        model = p.network(num_classes=bundle.spec.num_classes, in_channels=bundle.spec.channels)
        # A network returns (logits, auxiliary logits) and has drop path (DARTS's), or returns
        # plain logits and has none (NAS-Bench-201's).
        self.has_drop_path = hasattr(model, "drop_path_prob")
        if p.drop_path_prob and not self.has_drop_path:
            raise UserError(
                f"{type(model).__name__} has no drop path: bind train.drop_path_prob = 0."
            )
        self.params_m = count_parameters(model) / 1e6
        self.madds_b = multiply_adds(model, bundle.spec.image_shape) / 1e9
        if p.init_from:
            init_weights_from(model, p.init_from)
        model.to(ctx.device)
        if ctx.distributed:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None
            )
        self.model = model
        learning_rate = p.learning_rate
        if p.lr_reference_batch:
            learning_rate = learning_rate * p.batch_size * ctx.world_size / p.lr_reference_batch
        self.criterion = nn.CrossEntropyLoss(label_smoothing=p.label_smoothing).to(ctx.device)
        self.eval_criterion = nn.CrossEntropyLoss().to(ctx.device)
        self.optimizer, self.scheduler, self.scaler = _weights_tools(
            model.parameters(), learning_rate, p.epochs, p.optimizer, p.lr_schedule, ctx
        )
        self.step_model = ctx.compiled(model)
        self.epochs, self.show_progress = p.epochs, p.show_progress
        self.checkpointing = midepoch_checkpoints()
        self.best = {"valid_acc": -1.0, "epoch": 0}
        self.test: dict | None = None
        self.valid: dict | None = None

    def run_fields(self) -> dict:
        return {"parameters": int(self.params_m * 1e6)}

    def start_epoch(self, epoch: int) -> None:
        # The original ramps drop path with the 0-based epoch: 0 in the first epoch.
        if self.has_drop_path:
            self.network.drop_path_prob = self.params.drop_path_prob * (epoch - 1) / self.epochs

    def train_step(self, x, y):
        auxiliary_weight = self.params.auxiliary_weight
        with self.ctx.autocast():
            out = self.step_model(x)
            logits, logits_aux = out if isinstance(out, tuple) else (out, None)
            loss = self.criterion(logits.float(), y)
            if logits_aux is not None and auxiliary_weight:
                loss = loss + auxiliary_weight * self.criterion(logits_aux.float(), y)
        weight_step(
            self.optimizer, self.scaler, loss, self.model.parameters(), self.params.grad_clip
        )
        return loss, logits

    def end_epoch(self, epoch: int) -> dict:
        record = {}
        if self.valid_loader is not None:
            self.valid = valid = evaluate(
                self.model, self.valid_loader, self.eval_criterion, self.ctx
            )
            if valid["acc"] > self.best["valid_acc"]:
                self.best.update(valid_acc=valid["acc"], epoch=epoch)
            record.update(
                valid_loss=valid["loss"], valid_acc=valid["acc"], valid_acc_top5=valid["acc_top5"]
            )
        self.test = evaluate(self.model, self.test_loader, self.eval_criterion, self.ctx)
        record.update(
            test_loss=self.test["loss"],
            test_acc=self.test["acc"],
            test_acc_top5=self.test["acc_top5"],
        )
        if self.has_drop_path:
            record["drop_path_prob"] = self.network.drop_path_prob
        return record

    def extra_state(self) -> dict:
        return {"best": dict(self.best)}

    def load_extra_state(self, state: dict) -> None:
        self.best.update(state["best"])

    def final(self, trained: bool) -> dict:
        """The final epoch's test errors (as the paper reports), never a best epoch on test."""
        if not trained or self.test is None:  # already trained: measure the final weights again
            self.test = evaluate(self.model, self.test_loader, self.eval_criterion, self.ctx)
        final = {
            "test_error_top1": 100.0 - self.test["acc"],
            "test_error_top5": 100.0 - self.test["acc_top5"],
            "params_m": self.params_m,
            "multiply_adds_b": self.madds_b,
        }
        if self.valid_loader is not None:
            if not trained or self.valid is None:
                self.valid = evaluate(self.model, self.valid_loader, self.eval_criterion, self.ctx)
            final.update(
                best_epoch=self.best["epoch"],
                best_valid_acc=self.best["valid_acc"],
                valid_acc=self.valid["acc"],
            )
        final.update(
            extra_test_errors(
                self.model,
                self.bundle,
                self.eval_batch_size,
                self.eval_criterion,
                self.ctx,
                self.params.workers,
            )
        )
        return final


@job_entry(TrainParams)
def train(
    run=None, seed: int = 0, data=None, build_only: bool = False, **params
) -> dict | TrainJob:
    """Trains a fixed network from scratch (CIFAR-10 ``train.py``, the ImageNet trainer).

    Every epoch is measured on the test set and logged as ``test_loss``, ``test_acc``,
    ``test_acc_top5``. The final metrics are the last epoch's; with ``valid_portion`` (or a
    dataset split's validation set) a
    held-out part of the training set is also measured (``valid_*``) and chooses
    ``best_epoch`` / ``best_valid_acc``.

    Args:
        run: the run folder to record into (None: record nothing, keep no checkpoint).
        seed: seeds everything.
        data: the datasets, when the caller built them (else ``build_datasets()``).
        build_only: return the built :class:`TrainJob` (fit it with ``.fit(run)``).
        **params: :class:`TrainParams` (gin binds them).

    Returns:
        The final metrics (also written to the run), or the built job with ``build_only``.
    """
    job = TrainJob(seed, data, TrainParams(**params))
    return job if build_only else job.fit(run)


# ---- Evaluation of saved weights ---------------------------------------------------------------
@gin.configurable
def experiment(job: Callable[..., Any] = gin.REQUIRED) -> Callable[..., Any]:
    """The job an experiment runs: ``experiment.job = @search`` (or ``@train``)."""
    return job
