"""The search job: ``search(...)``, the original ``train_search.py`` and the DARTS family's.

Weight steps on one half of the training set alternate with architecture steps on the other
(DARTS); or, one-level (SNAS), one step on each training batch trains both.
:func:`search` is a gin configurable that *builds* its job (supernet, optimizer, schedule,
loaders, architect, criterion: everything before the first epoch) and then *fits* it with the
one epoch loop of :mod:`sharpdarts.engine.loop`; ``build_only=True`` returns the built job, so
the runner can check the config before a run folder exists and then fit with the very objects
it built (``job.fit(run)``). The family's options (a relaxation's temperature, DARTS-'s skip
coefficient, SDARTS' perturbation, P-DARTS' stages, DARTS-ES's stop) are parameters of
:class:`SearchParams`, declared once (see :mod:`sharpdarts.engine.job_params`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core import validate
from sharpdarts.core.metrics import count_parameters
from sharpdarts.engine import collapse
from sharpdarts.engine import stages as stages_lib
from sharpdarts.engine.architect import Architect
from sharpdarts.engine.context import cycle, make_context, seed_everything
from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import loaders
from sharpdarts.engine.data.shards import rank_seed
from sharpdarts.engine.job_params import REQUIRED, UNCHECKED, job_entry, param
from sharpdarts.engine.jobs import weights_tools
from sharpdarts.engine.loop import ArchitectureSearch, Job, evaluate, weight_step
from sharpdarts.engine.perturbation import check_model as check_perturbed_model
from sharpdarts.engine.preemption import midepoch_checkpoints
from sharpdarts.errors import UserError


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
    if hasattr(model, "logged_alphas"):  # the supernets: readout, masks, spaces spread
        return model.logged_alphas()
    # A DARTS-space supernet has a normal and a reduction matrix, NAS-Bench-201's one.
    names = [
        n
        for n in ("alphas_normal", "alphas_reduce", "alphas")
        if getattr(model, n, None) is not None
    ]
    # The weights genotypes are read from: softmax, or the relaxation's (FairDARTS' sigmoid).
    relaxation = getattr(model, "relaxation", None)
    readout = relaxation.readout if relaxation is not None else lambda a: torch.softmax(a, -1)
    with torch.no_grad():
        return {name: readout(getattr(model, name).float()).cpu().tolist() for name in names}


def _halves(bundle: bundle_lib.DataBundle, train_portion: float | None) -> tuple:
    """``(weights' set, architecture's set, search accuracy's set, weights' indices, the
    architecture's and the accuracy's indices)``: a split's sets, or DARTS's two parts of the
    training set (the accuracy measured on the architecture's, augmented, as DARTS does)."""
    if bundle.valid_augmented is None:
        weight_idx, arch_idx = loaders.search_split(bundle.train, train_portion or 0.5)
        return bundle.train, bundle.train, bundle.train, weight_idx, arch_idx
    if train_portion is not None:
        raise UserError(
            f"search.train_portion = {train_portion} would cut the training set in two, but the "
            "dataset's split (build_datasets.split) gives the search its halves already: bind "
            "only one."
        )
    return (
        bundle.train,
        bundle.valid_augmented,
        bundle.valid,
        list(range(len(bundle.train))),
        list(range(len(bundle.valid))),
    )


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
    train_portion: float | None = param(
        validate.Real("a share in (0, 1]", low=0.0, high=1.0, low_open=True).or_none(),
        None,
        "share of the training set for the weights; the rest trains the architecture and "
        "measures the search accuracy (``valid_*``: held out from the weights, never the test "
        "set, unless ``valid_set``); 1: all of it (``one_level``). None: 0.5, or, with a "
        "dataset split (``build_datasets.split``), the split's: the weights on its training "
        "images, the architecture on its validation images (augmented), the search accuracy "
        "on them (unaugmented), as xautodl's NAS-Bench-201 searches.",
    )
    one_level: bool = param(
        UNCHECKED,
        False,
        "SNAS's one-level update: one forward pass on each training batch, whose loss (plus "
        "the architect's ``extra_loss``) gives the weights and the alphas their gradients in "
        "one backward; the weights step with their optimizer and clip, the alphas with the "
        "architect's (``Architect.optimizer``, ``Architect.grad_clip``). No batch of the "
        "held-out part is read (``train_portion = 1.0`` trains on the whole training set). "
        "False: DARTS's alternating steps.",
    )
    valid_set: str = param(
        validate.Choice("'held_out' or 'test'", choices=("held_out", "test")),
        "held_out",
        "what ``valid_*`` (and ``best_*``) measure each epoch: 'held_out', the part of the "
        "training set that ``train_portion`` leaves out; 'test', the test set, as SNAS's "
        "``train_search.py`` does (its search holds nothing out; monitoring only: the "
        "genotype is the last epoch's).",
    )
    drop_last: bool = param(
        UNCHECKED,
        True,
        "drop each epoch's last incomplete batch of the weights' loader; False keeps it "
        "(SNAS's ``train_queue``).",
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
        "epochs at the start (of each stage, with ``stages``) that train the weights only, "
        "no architecture step (DrNAS 10, PC-DARTS 15, P-DARTS 10 a stage).",
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
    perturbation: Callable | None = param(
        UNCHECKED,
        None,
        "perturbs the op weights of every weight step (SDARTS: ``@RandomSmoothing()``, "
        "``@AdversarialPGD()``, engine/perturbation.py); None: softmax(alpha) unperturbed.",
    )
    skip_beta_schedule: Callable[[int, int], float] | None = param(
        UNCHECKED,
        None,
        "the auxiliary skip's coefficient of each epoch, ``f(epoch from 0, epochs)`` "
        "(DARTS-: ``@linear_beta_schedule()``), set on the network's ``auxiliary_skip``.",
    )
    selection: Callable[[Any], tuple[str, dict]] | None = param(
        UNCHECKED,
        None,
        "reads the genotype from held-out data instead of the architecture weights, after each "
        "epoch and once more at the end: ``f(job) -> (genotype, figures)`` (RSPS: "
        "``@random_selection()``, engine/rsps.py); None: the model's ``genotype()``.",
    )
    stages: stages_lib.Stages | None = param(
        UNCHECKED,
        None,
        "progressive stages (P-DARTS: ``@progressive_stages()``, with ``@PDartsNetwork``; "
        "DrNAS: ``@drnas_stages()``, with ``@DrNASNetwork`` or ``@NB201SearchNetwork``): "
        "``epochs`` and ``arch_warmup_epochs`` then count per stage; None: one stage.",
    )


class SearchJob(collapse.MeasuresCollapse, ArchitectureSearch, Job):
    """A built architecture search (see :func:`search`)."""

    name = "search"

    def __init__(self, seed: int, data: bundle_lib.DataBundle | None, params: SearchParams):
        self.params = p = params
        self.ctx = ctx = make_context()
        seed_everything(seed)
        bundle = bundle_lib.given_or_built(data, seed)
        weight_set, arch_set, accuracy_set, weight_idx, arch_idx = _halves(bundle, p.train_portion)
        if not arch_idx and (p.valid_set == "held_out" or not p.one_level):
            raise UserError(
                f"search.train_portion = {p.train_portion} holds no training image out for "
                "the alphas or for search.valid_set = 'held_out': a smaller portion, or "
                "search.one_level = True with search.valid_set = 'test' (SNAS)."
            )
        self.train_loader = loaders.make_loader(
            weight_set,
            p.batch_size,
            indices=weight_idx,
            workers=p.workers,
            seed=seed,
            distributed=ctx.distributed,
            drop_last=p.drop_last,
        )
        arch_loader = loaders.make_loader(
            arch_set,
            p.batch_size,
            indices=arch_idx,
            workers=p.workers,
            seed=seed + 1,
            distributed=ctx.distributed,
            drop_last=True,
        )
        self.valid_loader = loaders.make_loader(
            accuracy_set if p.valid_set == "held_out" else bundle.test,
            p.batch_size,
            indices=arch_idx if p.valid_set == "held_out" else None,
            workers=p.workers,
            seed=seed + 2,
            distributed=ctx.distributed,
            exact=True,
        )
        self.rng_loaders = [self.train_loader, arch_loader, self.valid_loader]
        self.arch_batches = cycle(arch_loader)
        self.seed, self.spec = seed, bundle.spec
        self.criterion = nn.CrossEntropyLoss().to(ctx.device)
        self.stage, self.edge_ops = 0, None  # a staged search's stage; P-DARTS' edges' ops
        if p.stages is None:
            self.build_supernet()
        else:
            p.stages.first_stage(self)
        self.train_arch = True  # set each epoch by start_epoch (the warm-up epochs: False)
        # The eigenvalue's batches come from the data the alphas learn from.
        if p.one_level:
            self.collapse = collapse.CollapseTracker(weight_set, weight_idx, p.batch_size, seed)
        else:
            self.collapse = collapse.CollapseTracker(arch_set, arch_idx, p.batch_size, seed)
        if ctx.distributed:  # the same initial network everywhere, then each rank's own noise
            seed_everything(rank_seed(seed, ctx.rank))
        self.epochs = p.epochs * (p.stages.count if p.stages else 1)
        self.show_progress = p.show_progress
        self.checkpointing = midepoch_checkpoints()
        self.best = {"valid_acc": -1.0, "epoch": 0, "genotype": None}
        self.last_valid_acc = None

    def build_supernet(self, **network_args) -> None:
        """The supernet, the weights' optimizer, schedule and scaler, and the architect (again
        at each stage of a staged search, with the stage's ``network_args``)."""
        p, ctx = self.params, self.ctx
        self.model = p.network(
            num_classes=self.spec.num_classes, in_channels=self.spec.channels, **network_args
        )
        self.model.to(ctx.device)
        if p.skip_beta_schedule is not None and getattr(self.model, "auxiliary_skip", None) is None:
            raise UserError(
                "search.skip_beta_schedule sets the coefficient of DARTS-'s auxiliary skip, but "
                "the network has none: bind SearchNetwork.auxiliary_skip = True."
            )
        if p.perturbation is not None:
            check_perturbed_model(self.model)
        # DrNAS's stages run one schedule over the whole search; P-DARTS' one per stage.
        epochs = p.epochs if p.stages is None else p.stages.schedule_epochs(p.epochs)
        self.optimizer, self.scheduler, self.scaler = weights_tools(
            self.model.weights(), p.learning_rate, epochs, p.optimizer, p.lr_schedule, ctx
        )
        self.architect = Architect(self.model, criterion=self.criterion)
        if p.one_level and (self.architect.order != 1 or p.perturbation is not None):
            raise UserError(
                "search.one_level trains the alphas on the gradient of the training batch's "
                "own loss: it takes neither Architect.order = 2 (an unrolled step on held-out "
                "data) nor search.perturbation (SDARTS's perturbed weight steps)."
            )
        self.step_model = ctx.compiled(self.model)

    def run_fields(self) -> dict:
        return {
            "parameters": count_parameters(self.model),
            "primitives": getattr(self.model, "primitives", None),
        }

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)  # first: DARTS-ES may stop the search here (MeasuresCollapse)
        # A staged search counts the warm-up in each stage: the epoch within its stage.
        self.train_arch = (epoch - 1) % self.params.epochs + 1 > self.params.arch_warmup_epochs
        if self.params.stages is not None:
            self.params.stages.start_epoch(self, epoch)
        if self.params.tau_schedule is not None:  # GDAS, SNAS: a function of the epoch alone
            self.model.tau = float(self.params.tau_schedule(epoch - 1, self.epochs))
        if self.params.skip_beta_schedule is not None:  # DARTS-
            beta = self.params.skip_beta_schedule(epoch - 1, self.epochs)
            self.model.auxiliary_skip.beta = float(beta)
        if self.params.perturbation is not None:  # SDARTS: the radius of this epoch
            self.params.perturbation.start_epoch(epoch - 1, self.epochs)

    def extra_state(self) -> dict:
        skip = getattr(self.model, "auxiliary_skip", None)
        staged = self.params.stages.state(self) if self.params.stages else {}
        return {
            **super().extra_state(),
            "tau": getattr(self.model, "tau", None),
            "skip_beta": None if skip is None else skip.beta,
            **staged,
        }

    def load_state(self, state: dict) -> None:
        if self.params.stages is not None:  # the checkpoint's stage's supernet first
            self.params.stages.restore(self, state)
        super().load_state(state)

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        if state.get("tau") is not None:
            self.model.tau = state["tau"]
        if state.get("skip_beta") is not None:
            self.model.auxiliary_skip.beta = state["skip_beta"]

    def train_step(self, x, y):
        if self.params.one_level:
            return self._one_level_step(x, y)
        ctx = self.ctx
        xa, ya = next(self.arch_batches)
        xa, ya = xa.to(ctx.device, non_blocking=True), ya.to(ctx.device, non_blocking=True)
        lr = self.optimizer.param_groups[0]["lr"]
        arch_step = self.train_arch
        if arch_step and not self.params.arch_after_weights:
            self.architect.step(x, y, xa, ya, eta=lr, weight_optimizer=self.optimizer)
        extra = {}
        if self.params.perturbation is not None:  # SDARTS: the weights see perturbed op weights
            perturb = self.params.perturbation
            extra["op_weights"] = perturb(self.model, x, y, self.criterion, ctx.autocast)
        with ctx.autocast():
            logits = self.step_model(x, **extra)
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

    def _one_level_step(self, x, y):
        """SNAS's step (``search.one_level``): one forward pass, one backward, both steps."""
        ctx, arch_step = self.ctx, self.train_arch
        # The extra term reads the forward pass's sample, which a compiled pass does not keep.
        model = self.model if self.architect.extra_loss is not None else self.step_model
        with ctx.autocast():
            logits = model(x)
            loss = self.criterion(logits.float(), y)
        total = self.architect.one_level_loss(loss) if arch_step else loss
        weight_step(
            self.optimizer,
            self.scaler,
            total,
            list(self.model.weights()),
            self.params.grad_clip,
            average=ctx.distributed,
            architect=self.architect if arch_step else None,
        )
        return loss, logits  # the error loss alone is logged, as SNAS's ``objs``

    def end_epoch(self, epoch: int) -> dict:
        valid = evaluate(self.model, self.valid_loader, self.criterion, self.ctx)
        genotype, selected = self._derive()
        if valid["acc"] > self.best["valid_acc"]:
            self.best.update(valid_acc=valid["acc"], epoch=epoch, genotype=genotype)
        self.last_valid_acc = valid["acc"]
        record = {
            "valid_loss": valid["loss"],
            "valid_acc": valid["acc"],
            "genotype": genotype,
            **selected,
            **self._scores(genotype),
            **_alphas(self.model),
            **self.collapse.measure(self, epoch, genotype),
        }
        if self.params.stages is not None:  # after a stage's last epoch: the next stage
            self.params.stages.end_epoch(self, epoch)
        return record

    def _derive(self) -> tuple[dict | str, dict]:
        """The genotype now, and the selection's figures (none without ``selection``)."""
        if self.params.selection is not None:  # RSPS: the best of random cells, on data
            return self.params.selection(self)
        return _genotype(self.model, self.params.skip_primitive), {}

    def _scores(self, genotype) -> dict:
        """The scorer's figures of ``genotype`` (e.g. its benchmark accuracies), or none."""
        scorer = self.params.genotype_scorer
        return dict(scorer(genotype)) if scorer is not None else {}

    def final(self, trained: bool) -> dict:
        genotype, selected = self._derive()
        final = {
            "best_valid_acc": self.best["valid_acc"],
            "best_epoch": self.best["epoch"],
            "valid_acc": self.last_valid_acc,
            "genotype": genotype,
            **selected,
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
