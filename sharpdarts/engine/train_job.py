"""The training job: ``train(...)``, the original ``train.py`` and the ImageNet trainer.

A fixed network with auxiliary loss, drop path, label smoothing and the lr scaled by the
global batch. :func:`train` is a gin configurable that *builds* its job and then *fits* it
with the one epoch loop of :mod:`sharpdarts.engine.loop` (``build_only=True`` returns the built
job). Its parameters are declared once, as the fields of :class:`TrainParams` (see
:mod:`sharpdarts.engine.job_params`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from sharpdarts.core import validate
from sharpdarts.core.metrics import count_parameters, multiply_adds
from sharpdarts.engine.checkpoint import init_weights_from
from sharpdarts.engine.context import make_context, seed_everything
from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import loaders
from sharpdarts.engine.data.shards import rank_seed
from sharpdarts.engine.evaluation import extra_test_errors
from sharpdarts.engine.job_params import REQUIRED, UNCHECKED, job_entry, param
from sharpdarts.engine.jobs import weights_tools
from sharpdarts.engine.loop import Job, evaluate, weight_step
from sharpdarts.engine.preemption import midepoch_checkpoints
from sharpdarts.errors import UserError


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
        self.optimizer, self.scheduler, self.scaler = weights_tools(
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
