"""Staged searches: the stages of a search, a procedure hook of the search.

A staged search runs ``search.epochs`` epochs per stage; in the first
``search.arch_warmup_epochs`` epochs of each stage only the weights train. What happens
between stages is the stages object's (``search.stages``, a :class:`Stages`):

- :class:`ProgressiveStages` (P-DARTS, Chen et al. ICCV 2019): each stage builds a fresh
  supernet (``PDartsNetwork``: deeper each stage, each edge with only the ops it kept), with
  fresh weights, alphas, weight optimizer and schedule, and a fresh architect. After a stage
  every edge keeps its strongest ops (``nn.pdarts.drop_ops``), and the rate of the dropout
  after skip connections starts again from the stage's own. The final cell is the network's
  derivation ('pdarts': at most two skip connections in the normal cell).
- :class:`DirichletStages` (DrNAS, Chen et al. ICLR 2021), on the DARTS space
  (``DrNASNetwork``) and on NAS-Bench-201's (``NB201SearchNetwork(method='drnas')``): one
  supernet changed in place. After a stage every edge keeps its largest alphas, the rest are
  masked out, and the partial channels widen (K falls; ``nn.drnas``); the weights' optimizer
  keeps its state (the momentum grown with the weights), one learning rate schedule spans the
  whole search (restarted at the boundary as their code runs, unless ``restart_lr=False``),
  and the architect keeps its alphas and its Adam state. The final cell is read from the
  masked softmax. The two spaces differ only in their settings (K, ops kept, epochs), which
  their experiments bind.

docs/family.md and docs/nb201.md give the sources. A stages object's :meth:`Stages.state`
goes into the search's checkpoint (``stage``, and P-DARTS' ``edge_ops``), so a search killed
in any stage resumes with the same network.

The search job calls the object's :meth:`~Stages.first_stage`, :meth:`~Stages.start_epoch`,
:meth:`~Stages.end_epoch`, :meth:`~Stages.restore` and :meth:`~Stages.state`, and builds its
weights' schedule over :meth:`~Stages.schedule_epochs`; it provides
``build_supernet(**network_args)`` (model, optimizers, schedule, architect), ``model``,
``step_model``, ``optimizer``, ``scheduler``, ``ctx``, ``params`` (``stages``, ``network``,
``epochs``, ``arch_warmup_epochs``), ``seed``, ``best``, ``stage`` and ``edge_ops``.
"""

from __future__ import annotations

import abc
import inspect
import math
from typing import Any, Sequence

import gin
import torch

from sharpdarts.errors import UserError
from sharpdarts.nn.drnas import grow_optimizer
from sharpdarts.nn.pdarts import HALVES, EdgeOps, drop_ops


class Stages(abc.ABC):
    """What a staged search does at its start, each epoch and between its stages
    (``search.stages``; :class:`ProgressiveStages`, :class:`DirichletStages`)."""

    count: int  # the number of stages

    def schedule_epochs(self, epochs: int) -> int:
        """The epochs one weights' schedule spans, ``epochs`` being a stage's (by default a
        stage's: each stage starts its own)."""
        return epochs

    @abc.abstractmethod
    def first_stage(self, job) -> None:
        """Builds the first stage's supernet (``job.build_supernet``)."""

    def start_epoch(self, job, epoch: int) -> None:
        """Before ``epoch`` (from 1, counted over all stages); nothing by default."""

    def end_epoch(self, job, epoch: int) -> None:
        """After ``epoch``'s evaluation, before the loop steps the schedule: after a stage's
        last epoch (but the final stage's), :meth:`advance` into the next stage."""
        stage, local = stage_of(job, epoch)
        if local == job.params.epochs and stage + 1 < self.count:
            self.advance(job, stage)

    @abc.abstractmethod
    def advance(self, job, stage: int) -> None:
        """After the last epoch of ``stage`` (from 0; not the last stage): into the next."""

    @abc.abstractmethod
    def restore(self, job, state: dict[str, Any]) -> None:
        """Before a checkpoint is loaded: the supernet (and its tools) of its stage."""

    def state(self, job) -> dict[str, Any]:
        """What the search's checkpoint keeps of the stage."""
        return {"stage": job.stage}


@gin.configurable("progressive_stages")
class ProgressiveStages(Stages):
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

    def first_stage(self, job) -> None:
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

    def start_epoch(self, job, epoch: int) -> None:
        """Sets the skip dropout rate of the epoch."""
        stage, local = stage_of(job, epoch)
        warmup = job.params.arch_warmup_epochs
        job.model.skip_dropout = self.dropout_rate(stage, local - 1, job.params.epochs, warmup)

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
        """Before a checkpoint is loaded: the supernet of its stage."""
        stage = int(state.get("stage", 0))
        if stage != job.stage:
            _enter(job, stage, state["edge_ops"])

    def state(self, job) -> dict[str, Any]:
        return {"stage": job.stage, "edge_ops": job.edge_ops}


@gin.configurable("drnas_stages")
class DirichletStages(Stages):
    """DrNAS's stages (``search.stages = @drnas_stages()``), on the DARTS space (with
    ``@DrNASNetwork``) and on NAS-Bench-201's (with ``@NB201SearchNetwork`` and
    ``NB201SearchNetwork.method = 'drnas'``). The defaults are the DARTS space's; each
    experiment binds its own (NAS-Bench-201: ``(4, 2)`` and ``(3,)``).

    Args:
        partial_channels: K of each stage (their ``ks``: DARTS space 6, 4; NAS-Bench-201
            4, 2).
        keep_ops: ops each edge keeps from the start of each stage after the first, by its
            largest alphas (their ``num_keeps``: DARTS space 4 of 7; NAS-Bench-201 3 of 5;
            the first count, all the ops, never applied).
        restart_lr: True (the default: their code's behaviour): the new stage's SGD starts at
            the initial learning rate again, and torch's recursive cosine scales on from it
            (their ``configure_optimizer`` builds a new SGD at ``args.learning_rate``;
            ``configure_scheduler`` loads the old schedule's state, which leaves that rate
            as it is). So the second of two equal stages runs at twice the cosine's rate.
            False: the schedule runs on unbroken over every stage, as the loading of the old
            schedule's state suggests they meant (docs/family.md, docs/nb201.md).
    """

    def __init__(
        self,
        partial_channels: Sequence[int] = (6, 4),
        keep_ops: Sequence[int] = (4,),
        restart_lr: bool = True,
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
        """One schedule over every stage (their ``CosineAnnealingLR`` over the sum of the
        stages' epochs)."""
        return epochs * self.count

    def first_stage(self, job) -> None:
        """The first stage's supernet (K of the first stage, from the search's random
        stream), after checking that it can be pruned and widened and has ops to prune."""
        job.build_supernet(partial_channels=self.partial_channels[0])
        model = job.model
        # NB201SearchNetwork has one class for every method; only DrNAS's prunes and widens.
        if (
            not callable(getattr(model, "prune", None))
            or getattr(model, "method", "drnas") != "drnas"
        ):
            raise UserError(
                f"search.stages = @drnas_stages() is refused with search.network = "
                f"{job.params.network!r}: DrNAS's stages prune and widen the supernet in place, "
                "which @DrNASNetwork does on the DARTS space, and on NAS-Bench-201's "
                "@NB201SearchNetwork with NB201SearchNetwork.method = 'drnas'."
            )
        unwidenable = getattr(model, "unwidenable", None)
        reason = unwidenable() if unwidenable and len(set(self.partial_channels)) > 1 else None
        if reason is not None:
            raise UserError(
                f"drnas_stages.partial_channels = {list(self.partial_channels)} is refused: "
                f"DrNAS's widening copies channels of ops that keep the edge's width (as "
                f"DARTS_OPS, SearchNetwork.op_dict = 'DARTS_OPS'), but {reason}."
            )
        ops = model.arch_parameters()[0].shape[-1]
        if self.keep_ops and self.keep_ops[0] >= ops:
            raise UserError(
                f"drnas_stages.keep_ops = {list(self.keep_ops)} is refused: the supernet has "
                f"{ops} ops per edge, so the first stage must keep fewer."
            )

    def _grow(self, job, stage: int) -> None:
        """Into ``stage`` (from ``stage - 1``): prunes each edge to its largest alphas, widens
        the partial channels and grows the weights' optimizer state with the weights (their
        ``pruning``, ``wider`` and ``configure_optimizer``)."""
        job.model.prune(self.keep_ops[stage - 1])
        growth = job.model.wider(self.partial_channels[stage])
        grow_optimizer(job.optimizer, growth)
        job.stage = stage
        job.step_model = job.ctx.compiled(job.model)  # the widened shapes

    def advance(self, job, stage: int) -> None:
        """Into the next stage; the learning rate restarts (``restart_lr``) when the loop
        steps the schedule after this epoch."""
        if job.ctx.distributed:  # each process has its own stream: the same copies everywhere
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(job.seed * 1000 + stage + 1)
                self._grow(job, stage + 1)
        else:  # the search's own stream, as their code draws the copied channels
            self._grow(job, stage + 1)
        if self.restart_lr:
            job.scheduler = _InitialLrAfterStep(job, job.scheduler)
        # The best epoch is chosen within the last stage: the pruned ops leave the genotypes.
        job.best.update(valid_acc=-1.0, epoch=0, genotype=None)

    def restore(self, job, state: dict[str, Any]) -> None:
        """Before a checkpoint is loaded: the supernet's shapes and optimizer of its stage
        (the checkpoint then gives the weights, masks, optimizer state and schedule; the
        copied channels drawn here are overwritten, and drawn aside from the search's random
        streams)."""
        stage = int(state.get("stage", 0))
        if stage == job.stage:
            return
        with torch.random.fork_rng(devices=[]):
            if stage < job.stage:  # back to the first stage's supernet (and tools)
                job.stage = 0
                self.first_stage(job)
            while job.stage < stage:
                self._grow(job, job.stage + 1)


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
