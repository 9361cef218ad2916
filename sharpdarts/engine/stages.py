"""Staged searches: a stage schedule, a procedure hook of the search.

A staged search runs ``search.epochs`` epochs per stage; in the first
``search.arch_warmup_epochs`` epochs of each stage only the weights train. What happens
between stages is the schedule's (``search.stages``):

- :class:`ProgressiveStages` (P-DARTS, Chen et al. ICCV 2019): each stage builds a fresh
  supernet (``PDartsNetwork``: deeper each stage, each edge with only the ops it kept), with
  fresh weights, alphas, weight optimizer and schedule, and a fresh architect. After a stage
  every edge keeps its strongest ops (``nn.pdarts.drop_ops``), and the rate of the dropout
  after skip connections starts again from the stage's own. The final cell is the network's
  derivation ('pdarts': at most two skip connections in the normal cell).
- :class:`DirichletStages` (DrNAS, Chen et al. ICLR 2021): one supernet (``DrNASNetwork``)
  changed in place. After a stage every edge keeps its largest alphas, the rest are masked
  out, and the partial channels widen (K falls); the weights' optimizer keeps its state (the
  momentum grown with the weights), the learning rate schedule runs on over the whole search,
  and the architect keeps its alphas and its Adam state. The final cell is read from the
  masked softmax by DARTS's rule.

docs/family.md gives the sources. A schedule's :meth:`state` goes into the search's
checkpoint (``stage``, and P-DARTS' ``edge_ops``), so a search killed in any stage resumes
with the same network.

The search job calls :func:`first_stage`, :func:`start_epoch`, :func:`end_epoch`,
:func:`restore` and :func:`state`; it provides ``build_supernet(**network_args)`` (model,
optimizers, schedule, architect), ``model``, ``optimizer``, ``params`` (``stages``,
``network``, ``epochs``, ``arch_warmup_epochs``), ``seed``, ``best``, ``scheduler``, ``stage``
and ``edge_ops``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Sequence

import gin
import torch

from sharpdarts.errors import UserError
from sharpdarts.nn.drnas import grow_optimizer
from sharpdarts.nn.pdarts import HALVES, EdgeOps, drop_ops


class StageSchedule:
    """What a staged search does at its start, each epoch and between stages (subclasses:
    :class:`ProgressiveStages`, :class:`DirichletStages`)."""

    count: int  # the number of stages

    def schedule_epochs(self, epochs: int) -> int:
        """The length of the weights' lr schedule built with a supernet, for ``epochs`` a
        stage: one stage (the schedule restarts each stage)."""
        return epochs

    def first(self, job) -> None:
        """Builds the first stage's supernet."""
        raise NotImplementedError

    def start_epoch(self, job, stage: int, epoch: int) -> None:
        """Before ``epoch`` (from 0) of ``stage``; nothing by default."""

    def advance(self, job, stage: int) -> None:
        """After the last epoch of ``stage`` (not the last stage): into the next."""
        raise NotImplementedError

    def restore(self, job, state: dict[str, Any]) -> None:
        """Before a checkpoint of a later stage is loaded: that stage's supernet."""
        raise NotImplementedError

    def state(self, job) -> dict[str, Any]:
        """What the checkpoint keeps of the stage."""
        return {"stage": job.stage}


@gin.configurable("progressive_stages")
class ProgressiveStages(StageSchedule):
    """P-DARTS's stages (``search.stages = @progressive_stages()``).

    Args:
        layers: cells of each stage's supernet (P-DARTS: 5, 11, 17; their ``--layers 5``
            and ``--add_layers 6 --add_layers 12``).
        keep_ops: ops each edge keeps at the start of each stage after the first (P-DARTS:
            5, 3, from 8; their ``num_to_drop`` 3, 2). The final cell takes each edge's best.
        skip_dropout: each stage's initial dropout rate after skip connections (P-DARTS'
            README: 0.1, 0.4, 0.7; their code's default 0).
        dropout_decay: after the warm-up, epoch e of a stage (from 0) has the rate
            ``rate * exp(-(e - warmup) * dropout_decay)``; during it,
            ``rate * (epochs - e - 1) / epochs`` (their ``scale_factor`` 0.2).
    """

    def __init__(
        self,
        layers: Sequence[int] = (5, 11, 17),
        keep_ops: Sequence[int] = (5, 3),
        skip_dropout: Sequence[float] = (0.0, 0.0, 0.0),
        dropout_decay: float = 0.2,
    ):
        self.layers = tuple(int(n) for n in layers)
        self.keep_ops = tuple(int(n) for n in keep_ops)
        self.skip_dropout = tuple(float(p) for p in skip_dropout)
        self.dropout_decay = float(dropout_decay)
        if not self.layers or any(n < 3 for n in self.layers):
            raise UserError(
                f"progressive_stages.layers = {list(layers)} is refused: each stage needs a "
                "supernet of at least 3 cells (normal, reduction, reduction)."
            )
        if len(self.keep_ops) != len(self.layers) - 1 or len(self.skip_dropout) != len(self.layers):
            raise UserError(
                f"progressive_stages is refused: {len(self.layers)} stages (layers) need "
                f"{len(self.layers) - 1} keep_ops (got {len(self.keep_ops)}) and "
                f"{len(self.layers)} skip_dropout rates (got {len(self.skip_dropout)})."
            )
        if any(not 0.0 <= p < 1.0 for p in self.skip_dropout) or any(
            a <= b for a, b in zip((math.inf, *self.keep_ops), self.keep_ops)
        ):
            raise UserError(
                "progressive_stages is refused: skip_dropout rates must be in [0, 1) and "
                f"keep_ops must fall stage by stage (got {list(self.skip_dropout)}, "
                f"{list(self.keep_ops)})."
            )

    @property
    def count(self) -> int:
        """The number of stages."""
        return len(self.layers)

    def check_network(self, network) -> None:
        """Refuses a supernet that has no stages (``search.network`` without ``edge_ops``)."""
        try:
            accepted = inspect.signature(network).parameters
        except (TypeError, ValueError):  # no signature to read: the build will tell
            return
        if "edge_ops" not in accepted:
            raise UserError(
                f"search.stages is refused with search.network = {network!r}: a staged search "
                "needs a supernet whose edges keep their own ops, such as @PDartsNetwork."
            )

    def network_args(self, stage: int, edge_ops: EdgeOps | None) -> dict:
        """The supernet's arguments in ``stage`` (from 0)."""
        return {
            "layers": self.layers[stage],
            "edge_ops": edge_ops,
            "skip_dropout": self.skip_dropout[stage],
        }

    def dropout_rate(self, stage: int, epoch: int, epochs: int, warmup: int) -> float:
        """The skip dropout rate of ``epoch`` (from 0) of a stage of ``epochs``
        (their ``train_search.py``: it decays linearly over the warm-up, then from the
        stage's rate again, exponentially)."""
        rate = self.skip_dropout[stage]
        if epoch < warmup:
            return rate * (epochs - epoch - 1) / epochs
        return rate * math.exp(-(epoch - warmup) * self.dropout_decay)

    def first(self, job) -> None:
        """The first stage's supernet (from the search's random stream, as an unstaged
        search), after checking that the supernet has stages and enough ops to drop."""
        self.check_network(job.params.network)
        job.build_supernet(**self.network_args(0, None))
        ops = len(job.model.primitives)
        if self.keep_ops and self.keep_ops[0] >= ops:
            raise UserError(
                f"progressive_stages.keep_ops = {list(self.keep_ops)} is refused: the "
                f"supernet has {ops} ops per edge, so the first stage must keep fewer."
            )

    def start_epoch(self, job, stage: int, epoch: int) -> None:
        """Sets the skip dropout rate of the epoch."""
        warmup = job.params.arch_warmup_epochs
        job.model.skip_dropout = self.dropout_rate(stage, epoch, job.params.epochs, warmup)

    def advance(self, job, stage: int) -> None:
        """Each edge keeps its strongest ops, and the next stage's supernet replaces this
        one."""
        model = job.model
        alphas = {"normal": model.alphas_normal, "reduce": model.alphas_reduce}
        with torch.no_grad():
            weights = {
                h: model.relaxation.readout(alphas[h]).double().cpu().numpy() for h in HALVES
            }
        keep = self.keep_ops[stage]
        _enter(job, stage + 1, {h: drop_ops(model.edge_ops[h], weights[h], keep) for h in HALVES})
        job.scheduler = _FirstEpochOfStage(job, job.scheduler)

    def restore(self, job, state: dict[str, Any]) -> None:
        _enter(job, int(state["stage"]), state["edge_ops"])

    def state(self, job) -> dict[str, Any]:
        return {"stage": job.stage, "edge_ops": job.edge_ops}


@gin.configurable("drnas_stages")
class DirichletStages(StageSchedule):
    """DrNAS's stages on the DARTS space (``search.stages = @drnas_stages()``, with
    ``@DrNASNetwork``).

    Args:
        partial_channels: K of each stage (DrNAS: 6, 4; their ``ks``).
        keep_ops: ops each edge keeps at the start of each stage after the first, by its
            largest alphas (DrNAS: 4 of 7; their ``num_keeps`` 7, 4, the 7 never applied).

        restart_lr: False (the default): the weights' lr schedule runs on over every stage, as
            their code means it to (one ``CosineAnnealingLR`` over the sum of the stages'
            epochs, its state carried into each stage's schedule by ``configure_scheduler``).
            True: what their code does under the PyTorch it runs on (1.4 or 1.5: the later
            ones key the optimizer's state by position, which their ``configure_optimizer``
            cannot read): the new stage's SGD starts at the initial lr again, and torch's
            recursive cosine scales on from it, so the second of two equal stages runs at
            twice the cosine's lr (docs/family.md).
    """

    def __init__(
        self,
        partial_channels: Sequence[int] = (6, 4),
        keep_ops: Sequence[int] = (4,),
        restart_lr: bool = False,
    ):
        self.partial_channels = tuple(int(k) for k in partial_channels)
        self.keep_ops = tuple(int(n) for n in keep_ops)
        self.restart_lr = bool(restart_lr)
        if (
            not self.partial_channels
            or len(self.keep_ops) != len(self.partial_channels) - 1
            or any(k < 1 for k in self.partial_channels)
            or any(a < b for a, b in zip(self.partial_channels, self.partial_channels[1:]))
            or any(a <= b for a, b in zip((math.inf, *self.keep_ops), self.keep_ops))
            or any(n < 1 for n in self.keep_ops)
        ):
            raise UserError(
                f"drnas_stages is refused: partial_channels = {list(partial_channels)} (one K "
                f"per stage, each >= 1, never growing) and keep_ops = {list(keep_ops)} (one "
                "count >= 1 per stage after the first, falling stage by stage)."
            )

    @property
    def count(self) -> int:
        """The number of stages."""
        return len(self.partial_channels)

    def schedule_epochs(self, epochs: int) -> int:
        return epochs * self.count

    def first(self, job) -> None:
        """The first stage's supernet (K of the first stage), after checking that it can be
        pruned and widened and has ops to prune."""
        job.build_supernet(partial_channels=self.partial_channels[0])
        if not callable(getattr(job.model, "prune", None)):
            raise UserError(
                f"search.stages = @drnas_stages() is refused with search.network = "
                f"{job.params.network!r}: DrNAS's stages prune and widen the supernet in place, "
                "which @DrNASNetwork does."
            )
        reason = job.model.unwidenable() if len(set(self.partial_channels)) > 1 else None
        if reason is not None:
            raise UserError(
                f"drnas_stages.partial_channels = {list(self.partial_channels)} is refused: "
                f"DrNAS's widening copies channels of ops that keep the edge's width (as "
                f"DARTS_OPS, SearchNetwork.op_dict = 'DARTS_OPS'), but {reason}."
            )
        ops = job.model.alphas_normal.shape[1]
        if self.keep_ops and self.keep_ops[0] >= ops:
            raise UserError(
                f"drnas_stages.keep_ops = {list(self.keep_ops)} is refused: the supernet has "
                f"{ops} ops per edge, so the first stage must keep fewer."
            )

    def advance(self, job, stage: int) -> None:
        """Prunes each edge to its largest alphas, widens the partial channels and grows the
        weights' optimizer state with the weights (their ``configure_optimizer``)."""
        job.model.prune(self.keep_ops[stage])
        width = self.partial_channels[stage + 1]
        if job.ctx.distributed:  # each process has its own stream: the same copies everywhere
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(job.seed * 1000 + stage + 1)
                growth = job.model.wider(width)
        else:  # the search's own stream, as their code draws the copied channels
            growth = job.model.wider(width)
        grow_optimizer(job.optimizer, growth)
        if self.restart_lr:
            job.scheduler = _InitialLrAfterStep(job, job.scheduler)
        job.stage = stage + 1
        # The best epoch is chosen within the last stage: the pruned ops leave the genotypes.
        job.best.update(valid_acc=-1.0, epoch=0, genotype=None)

    def restore(self, job, state: dict[str, Any]) -> None:
        """Widens the supernet to the checkpoint's stage; the checkpoint then gives the
        weights, masks and optimizer state (the copied channels drawn here are overwritten,
        and drawn aside from the search's random streams)."""
        stage = int(state["stage"])
        with torch.random.fork_rng(devices=[]):
            for s in range(job.stage, stage):
                grow_optimizer(job.optimizer, job.model.wider(self.partial_channels[s + 1]))
        job.stage = stage


class _FirstEpochOfStage:
    """Stands in for a new stage's schedule from the stage's start until the loop steps the
    schedule at the end of the previous stage's last epoch: that step only puts the schedule
    in place, so the new stage's first epoch has its first learning rate."""

    def __init__(self, job, scheduler):
        self.job, self.scheduler = job, scheduler

    def step(self) -> None:
        self.job.scheduler = self.scheduler

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()


class _InitialLrAfterStep:
    """The schedule until the loop steps it at the end of a DrNAS stage: that step runs, then
    every lr goes back to its initial value (their new stage's SGD), and the schedule is
    itself again; its next steps scale from there (torch's cosine is recursive)."""

    def __init__(self, job, scheduler):
        self.job, self.scheduler = job, scheduler

    def step(self) -> None:
        self.scheduler.step()
        for group in self.job.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.job.scheduler = self.scheduler

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()


def first_stage(job) -> None:
    """Builds the first stage's supernet (the stage schedule's :meth:`StageSchedule.first`)."""
    job.params.stages.first(job)


def stage_of(job, epoch: int) -> tuple[int, int]:
    """``(stage, epoch within it from 1)`` of the search's ``epoch`` (from 1)."""
    return (epoch - 1) // job.params.epochs, (epoch - 1) % job.params.epochs + 1


def _enter(job, stage: int, edge_ops: EdgeOps | None) -> None:
    """Builds the supernet and its tools of ``stage`` (P-DARTS): fresh weights and alphas,
    drawn from a generator seeded by the search's seed and the stage (the same on every
    process, and the same after a resume), leaving the search's random streams as they were."""
    job.stage, job.edge_ops = stage, edge_ops
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed * 1000 + stage)
        job.build_supernet(**job.params.stages.network_args(stage, edge_ops))
    # The best epoch is chosen within the last stage: earlier stages search other networks.
    job.best.update(valid_acc=-1.0, epoch=0, genotype=None)


def start_epoch(job, epoch: int) -> None:
    """Before an epoch: the stage schedule's :meth:`StageSchedule.start_epoch`."""
    stage, local = stage_of(job, epoch)
    job.params.stages.start_epoch(job, stage, local - 1)


def end_epoch(job, epoch: int) -> None:
    """After a stage's last epoch (but the final stage's): into the next stage."""
    stage, local = stage_of(job, epoch)
    if local == job.params.epochs and stage + 1 < job.params.stages.count:
        job.params.stages.advance(job, stage)


def restore(job, state: dict[str, Any]) -> None:
    """Before a checkpoint is loaded: the supernet of its stage."""
    if int(state.get("stage", 0)) != job.stage:
        job.params.stages.restore(job, state)


def state(job) -> dict[str, Any]:
    """What the search's checkpoint keeps of its stage."""
    return job.params.stages.state(job)
