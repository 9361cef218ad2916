"""The one epoch loop that every job fits with.

A job is *built* first (:class:`Job`: model, optimizer, schedule, loaders, criterion, ...,
everything before the first epoch) and then *fitted* by :func:`fit`: resume from the run's
checkpoint, then per epoch the job's training steps, its evaluation, the schedule step, the
finite-loss check, one metrics line, the checkpoint (in that order) and a barrier between the
processes. A job supplies only what differs: its training step, its evaluation record, its
extra checkpoint state and its final metrics.

A run can also checkpoint inside an epoch (on a preemption signal, or every so many batches or
minutes: :mod:`sharpdarts.engine.preemption`). That checkpoint holds the place in the epoch
too: the batches done, the epoch's partial loss and accuracy sums, and the training loader's
generator as the epoch began; the resumed run draws the epoch's order again, skips the batches
done without loading them and logs the epoch as an uninterrupted run would. A training loader
whose length is not known before its epoch ends (the language models' BPTT windows, of random
lengths) keeps its own place instead: ``state_dict()`` / ``load_state_dict()`` (where the next
batch starts) and ``exhausted`` (whether the batch just given was the epoch's last); the job
keeps what it carries from batch to batch (:meth:`Job.inside_state`, the hidden state).
"""

from __future__ import annotations

import abc
import logging
import math
import time
import warnings
from typing import Any

import gin
import torch
from torch import nn
from tqdm import tqdm

from sharpdarts.core import run_folder
from sharpdarts.engine import checkpoint as checkpoint_lib
from sharpdarts.engine.context import (
    Context,
    average_over_processes,
    barrier,
    no_batch_error,
    reduce_sum,
    rng_state,
    set_rng_state,
    unwrap,
)
from sharpdarts.engine.preemption import Interrupted, Preemption
from sharpdarts.engine.progress import Progress

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Totals:
    """Running sums on the device, read (one host sync) at the end of the epoch."""

    def __init__(self, device):
        self.values = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Adds one batch's mean loss (weighted by its size) and its top-1 / top-5 hits."""
        n = target.size(0)
        top5 = logits.topk(min(5, logits.size(1)), dim=1).indices
        hits = top5.eq(target.view(-1, 1))
        self.values += torch.stack(
            [
                loss.detach().double() * n,
                hits[:, 0].sum().double(),
                hits.any(dim=1).sum().double(),
                torch.tensor(float(n), dtype=torch.float64, device=loss.device),
            ]
        )

    def result(self, ctx: Context) -> dict:
        """Mean loss and top-1 / top-5 accuracy (percent) over every process's batches."""
        loss, top1, top5, n = reduce_sum(self.values.clone(), ctx).tolist()
        n = max(n, 1.0)
        return {"loss": loss / n, "acc": 100.0 * top1 / n, "acc_top5": 100.0 * top5 / n}


def progress(loader, desc: str, ctx: Context, show: bool):
    """A tqdm bar over a loader on rank 0 when asked for, else the plain loader."""
    return tqdm(
        loader, desc=desc, leave=False, dynamic_ncols=True, disable=not (show and ctx.is_main)
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, criterion: nn.Module, ctx: Context, show_progress: bool = False
) -> dict:
    """Loss, top-1 and top-5 accuracy (percent) of a model over a loader (this process's
    shard of it under DDP: the totals are summed over the processes at the end)."""
    # The bare network: DDP's forward may synchronise, and the shards differ in batch count.
    model = unwrap(model)
    model.eval()
    totals = Totals(ctx.device)
    for x, y in progress(loader, "eval", ctx, show_progress):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        with ctx.autocast():
            out = model(x)
            logits = out[0] if isinstance(out, tuple) else out
            loss = criterion(logits.float(), y)
        totals.add(loss, logits, y)
    return totals.result(ctx)


def weight_step(
    optimizer,
    scaler,
    loss: torch.Tensor,
    params,
    grad_clip: float | None,
    average: bool = False,
    architect=None,
) -> None:
    """One optimizer step on the weights: backward (scaled for fp16), clip, step. ``average``:
    average the gradients over the processes first (a model that DDP does not wrap).

    ``architect``: a one-level step (SNAS): the same backward gives the alphas their gradients;
    after the weights' clip the architect clips and steps them (``step_on_gradients``), then
    the weights step (SNAS steps the weights first: the same, neither step reads the other).
    """
    optimizer.zero_grad(set_to_none=True)
    arch = []
    if architect is not None:
        architect.optimizer.zero_grad(set_to_none=True)
        arch = list(architect.model.arch_parameters())
    scaler.scale(loss).backward()
    if average:
        params = [p for p in params if p.grad is not None]
        both = params + [a for a in arch if a.grad is not None]
        for p, g in zip(both, average_over_processes([p.grad for p in both])):
            p.grad = g
    if grad_clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(params, grad_clip)
    if architect is not None:
        architect.step_on_gradients(scaler)
    scaler.step(optimizer)
    scaler.update()


def check_finite(loss: float, epoch: int) -> None:
    """Stops a run whose training loss is NaN or infinite (before it is checkpointed)."""
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"the training loss became {loss} in epoch {epoch}; the last "
            "good checkpoint is kept (try a lower learning rate)"
        )


class Job(abc.ABC):
    """A built job: everything its epochs need exists already.

    Subclasses set the attributes below in their constructor and implement the abstract
    hooks (``train_step``, ``end_epoch``, ``final``); the others have working defaults.

    Attributes:
        name: the job's name ('search', 'train'), in progress bars and logs.
        ctx: where it runs.
        epochs: the epoch count.
        model: the module stepped (DDP-wrapped when distributed).
        optimizer, scheduler, scaler: the weights' optimizer, lr schedule and AMP scaler.
        train_loader: the batches of one epoch.
        rng_loaders: the loaders whose generator states the checkpoint keeps.
        show_progress: a tqdm bar per epoch.
        checkpointing: when to checkpoint inside epochs
            (:func:`~sharpdarts.engine.preemption.midepoch_checkpoints`).
    """

    name = "job"
    ctx: Context
    epochs: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    train_loader: Any
    rng_loaders: list
    show_progress: bool = False
    resumed_position: dict | None = None  # the place in an epoch of a mid-epoch checkpoint
    checkpointing: dict | None = None  # midepoch_checkpoints() as built; None: its defaults

    @property
    def network(self) -> nn.Module:
        """The network itself (inside DDP, if wrapped): its state is what is saved."""
        return unwrap(self.model)

    # ---- hooks ------------------------------------------------------------------------------
    def run_fields(self) -> dict:
        """Fields for run.json, written when fitting starts."""
        return {}

    def start_epoch(self, epoch: int) -> None:
        """Before an epoch's first step (e.g. the drop path ramp)."""

    @abc.abstractmethod
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on a batch; returns (loss, logits)."""

    @abc.abstractmethod
    def end_epoch(self, epoch: int) -> dict:
        """The epoch's evaluation: the fields it adds to the metrics line."""

    def extra_state(self) -> dict:
        """Checkpoint state beyond model, optimizer, schedule, scaler and random states."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restores what :meth:`extra_state` saved."""

    def inside_state(self) -> dict:
        """What a mid-epoch checkpoint keeps beyond the epoch-end state: what the job carries
        from one batch to the next (the language models' hidden state). Called on every
        process (it may gather from them), after the batch."""
        return {}

    def load_inside_state(self, state: dict) -> None:
        """Restores :meth:`inside_state` in the resumed epoch (after :meth:`start_epoch`)."""

    @abc.abstractmethod
    def final(self, trained: bool) -> dict:
        """The run's final metrics; ``trained`` is False when every epoch was done already."""

    # ---- state --------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        """Everything needed to continue after ``epoch`` exactly as an uninterrupted run."""
        return {
            "epoch": epoch,
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(self.rng_loaders),
            **self.extra_state(),
        }

    def load_state(self, state: dict) -> None:
        """Restores a :meth:`state` (the optimizer before the schedule, which sets its lr)."""
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.load_extra_state(state)
        set_rng_state(state["rng"], self.rng_loaders)
        self.resumed_position = state.get("position")

    def fit(self, run=None, restart: bool = False) -> dict:
        """Runs the remaining epochs, recording into ``run`` (see :func:`fit`)."""
        return fit(self, run, restart=restart)


class ArchitectureSearch:
    """A :class:`Job` mixin for searches: checkpoints the architect (its alphas' optimizer)
    and the best epoch so far (``self.architect``, ``self.best``), so resume is exact."""

    architect: Any
    best: dict

    def extra_state(self) -> dict:
        state = {"architect": self.architect.state_dict(), "best": dict(self.best)}
        batches = getattr(self, "arch_batches", None)  # the architecture's endless batches
        if hasattr(batches, "state_dict"):
            state["arch_batches"] = batches.state_dict()
        return state

    def load_extra_state(self, state: dict) -> None:
        self.architect.load_state_dict(state["architect"])
        self.best.update(state["best"])
        if "arch_batches" in state:  # checkpoints from before it was kept go on as they did
            self.arch_batches.load_state_dict(state["arch_batches"])


def _keeps_place(loader) -> bool:
    """Whether a training loader keeps its own place in the epoch (module docstring)."""
    return hasattr(loader, "load_state_dict") and hasattr(loader, "exhausted")


def _resumable(job: Job) -> bool:
    """Whether the job's training batches can start partway through an epoch."""
    if _keeps_place(job.train_loader):
        return True
    sampler = getattr(job.train_loader, "sampler", None)
    return (
        hasattr(sampler, "skip_next") and getattr(job.train_loader, "generator", None) is not None
    )


def _is_last(loader, batches: int, total: int | None) -> bool:
    """Whether the batch just done (the epoch's ``batches``-th) was its last: by the
    epoch's ``total`` when known up front, else as the loader says."""
    return batches == total if total is not None else bool(loader.exhausted)


def _start_inside(job: Job, position: dict, totals: Totals) -> tuple[int, float, float]:
    """Puts the epoch back where a mid-epoch checkpoint left it: the training loader draws the
    epoch's order again and skips the batches done; the totals go on from the checkpoint's
    (summed over the processes when saved, so they continue on rank 0 only). Returns the
    batches done, the epoch's lr and the seconds it had taken."""
    done = int(position["batch"])
    if "loader" in position:  # a loader that keeps its own place
        job.train_loader.load_state_dict(position["loader"])
    else:
        job.train_loader.generator.set_state(position["train_generator"])
        job.train_loader.sampler.skip_next(done * job.train_loader.batch_size)
    job.load_inside_state(position.get("job", {}))
    if job.ctx.is_main:
        totals.values.copy_(position["totals"])
    return done, float(position["lr"]), float(position["seconds"])


def _save_inside(
    job: Job, run, path, epoch: dict, batch: int, totals: Totals, state: dict | None = None
) -> None:
    """Writes a mid-epoch checkpoint: the state after ``batch`` batches of the epoch (or
    ``state``, taken then), as the checkpoint of the epoch before plus its place in this one.
    ``epoch``: ``number``, ``lr``, ``tic`` (its start) and ``train_generator`` (as it began)."""
    ctx = job.ctx
    partial = reduce_sum(totals.values.clone(), ctx)  # every process, before rank 0 saves
    inside = job.inside_state()  # likewise
    if ctx.is_main:
        number = epoch["number"]
        state = dict(state or job.state(number - 1))
        state["position"] = {
            "epoch": number,
            "batch": batch,
            "lr": epoch["lr"],
            "seconds": time.time() - epoch["tic"],
            "train_generator": epoch["train_generator"],
            "totals": partial,
            "job": inside,
        }
        if _keeps_place(job.train_loader):
            state["position"]["loader"] = job.train_loader.state_dict()
        state = checkpoint_lib.prepare(state)
        checkpoint_lib.record_checkpoint(run, number - 1, state.sha256, batch=batch)
        checkpoint_lib.save_checkpoint(path, state)
        log.info("%s epoch %d: checkpointed after batch %d", job.name, number, batch)
    barrier(ctx)


def _evaluate(job: Job, run, path, epoch: dict, batches: int, totals, preemption) -> dict:
    """The epoch's evaluation (``job.end_epoch``). A signal that stops it checkpoints the
    epoch's batches, all done (the state from before the evaluation), and is handed on; if
    its handler returns, the evaluation starts again from that state."""
    # Cheap: the tensors are referenced, not copied, and the evaluation changes none of them.
    before = job.state(epoch["number"] - 1) if preemption.stops_evaluation else None
    try:
        with preemption.interruptible():
            return job.end_epoch(epoch["number"])
    except Interrupted:
        _save_inside(job, run, path, epoch, batches, totals, state=before)
        preemption.saved()
        preemption.pass_on()
        job.load_state(before)
        return job.end_epoch(epoch["number"])


def fit(job: Job, run=None, restart: bool = False) -> dict:
    """Fits a built job: resume, then the remaining epochs; returns the final metrics.

    Args:
        job: the built job.
        run: the run folder to record into (rank 0), or None to record nothing and keep no
            checkpoint. Duck-typed: ``write_text``, ``update``, ``checkpoint_path``,
            ``truncate_metrics``, ``log_epoch`` and ``info``.
        restart: when every checkpoint of the run is damaged, start again from epoch 1
            instead of raising :class:`~sharpdarts.engine.checkpoint.NoGoodCheckpointError`.
    """
    ctx = job.ctx
    if run is not None:
        run.write_text(run_folder.OPERATIVE_CONFIG, gin.operative_config_str())
        run.update(**job.run_fields())
    path = checkpoint_lib.run_checkpoint_path(run, ctx)
    start = checkpoint_lib.resume(run, path, ctx, job.load_state, restart=restart)
    position, job.resumed_position = job.resumed_position, None
    shown = Progress(job.name, job.epochs, start, job.show_progress, ctx.is_main)
    preemption = Preemption(ctx, job.checkpointing, enabled=path is not None and _resumable(job))
    with preemption:
        for epoch in range(start, job.epochs + 1):
            tic = time.time()
            lr = job.optimizer.param_groups[0]["lr"]
            job.start_epoch(epoch)
            if hasattr(job.train_loader.sampler, "set_epoch"):
                job.train_loader.sampler.set_epoch(epoch)
            job.model.train()
            totals = Totals(ctx.device)
            done = 0
            if position is not None:  # resumed from a checkpoint inside this epoch
                done, lr, seconds = _start_inside(job, position, totals)
                tic, position = tic - seconds, None
            generator = getattr(job.train_loader, "generator", None) if preemption.enabled else None
            began = {
                "number": epoch,
                "lr": lr,
                "tic": tic,
                "train_generator": generator.get_state() if generator is not None else None,
            }
            # The language models' windows have no length: they say when they are done.
            total = None
            if preemption.enabled and not _keeps_place(job.train_loader):
                total = done + len(job.train_loader)
            batches = done
            for x, y in shown.bar(job.train_loader, epoch):
                x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
                loss, logits = job.train_step(x, y)
                totals.add(loss, logits, y)
                shown.step(batches - done, loss)
                batches += 1
                if preemption.enabled and preemption.due(
                    batches, _is_last(job.train_loader, batches, total)
                ):
                    _save_inside(job, run, path, began, batches, totals)
                    preemption.saved()
                    preemption.pass_on()
            if batches == 0:  # an epoch of no batch would record a loss of 0 and go on
                raise no_batch_error(job.train_loader)
            trained = totals.result(ctx)
            check_finite(trained["loss"], epoch)
            evaluation = _evaluate(job, run, path, began, batches, totals, preemption)
            with warnings.catch_warnings():
                if done == batches:  # resumed after the epoch's last batch: no step here, rightly
                    warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
                job.scheduler.step()
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": trained["loss"],
                "train_acc": trained["acc"],
                **evaluation,
                "seconds": time.time() - tic,
            }
            # Log first, then checkpoint: a kill between the two leaves an epoch logged past
            # the checkpoint, which resume truncates and redoes; the other order would lose
            # its line.
            if run is not None:
                run.log_epoch(record)
            if path is not None and ctx.is_main:
                # The checksum goes into run.json before the file exists: a file on disk whose
                # hash is not recorded is damaged, whatever point a kill interrupted.
                state = checkpoint_lib.prepare(job.state(epoch))
                checkpoint_lib.record_checkpoint(run, epoch, state.sha256)
                checkpoint_lib.save_checkpoint(path, state)
            barrier(ctx)  # nobody runs ahead of the checkpoint it may have to resume from
            preemption.saved()
            shown.epoch_done(epoch, record)
            log.info(
                "%s epoch %d: %s",
                job.name,
                epoch,
                {k: v for k, v in record.items() if isinstance(v, float)},
            )
            # A signal during the epoch's end: the checkpoint just written is the place.
            if preemption.signalled():
                preemption.pass_on()
    return job.final(trained=start <= job.epochs)
