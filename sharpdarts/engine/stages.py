"""Progressive search stages: a procedure hook of the search, and P-DARTS's stages.

A staged search (``search.stages``) runs ``search.epochs`` epochs per stage; what happens
between the stages is the stages object's (:class:`Stages`): P-DARTS's :class:`ProgressiveStages`
here, DrNAS's (pruning and widening one supernet in place) in :mod:`sharpdarts.engine.drnas_stages`.
The search job calls the object's :meth:`~Stages.first_stage`, :meth:`~Stages.start_epoch`,
:meth:`~Stages.end_epoch` and :meth:`~Stages.restore`, and builds its weights' schedule over
:meth:`~Stages.schedule_epochs`; it provides ``build_supernet(**network_args)`` (model,
optimizers, schedule, architect), ``model``, ``optimizer``, ``scheduler``, ``architect``,
``ctx``, ``params`` (``stages``, ``network``, ``epochs``, ``arch_warmup_epochs``, the weights'
optimizer settings), ``seed``, ``best``, ``stage`` and ``edge_ops``. The stage (and P-DARTS'
``edge_ops``) are part of the search's checkpoint, so a search killed in any stage resumes
with the same network.

P-DARTS (Chen et al., ICCV 2019): each stage builds a fresh supernet (``PDartsNetwork``: deeper
each stage, and each edge with only the ops it kept), with fresh weights, alphas, weight
optimizer and schedule, and a fresh architect; in its first ``search.arch_warmup_epochs``
epochs only the weights train. After a stage every edge keeps its strongest ops
(``nn.pdarts.drop_ops``), and the rate of the dropout after skip connections starts again from
the stage's own. The final cell is the network's derivation ('pdarts': at most two skip
connections in the normal cell). docs/family.md gives the sources.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Sequence

import gin
import torch

from sharpdarts.errors import UserError
from sharpdarts.nn.pdarts import HALVES, EdgeOps, drop_ops


class Stages:
    """What a staged search does between its stages (``search.stages``); see the module."""

    count: int  # the number of stages

    def schedule_epochs(self, epochs: int) -> int:
        """The epochs one weights' schedule spans, ``epochs`` being a stage's (P-DARTS: a
        stage's, each stage starting its own)."""
        return epochs

    def first_stage(self, job) -> None:
        """Builds the first stage's supernet (``job.build_supernet``)."""
        raise NotImplementedError

    def start_epoch(self, job, epoch: int) -> None:
        """Before ``epoch`` (from 1, counted over all stages)."""

    def end_epoch(self, job, epoch: int) -> None:
        """After ``epoch``'s evaluation, before the loop steps the schedule: after a stage's
        last epoch (but the final stage's), the next stage begins."""
        raise NotImplementedError

    def restore(self, job, state: dict[str, Any]) -> None:
        """Before a checkpoint is loaded: the supernet (and its tools) of its stage."""
        raise NotImplementedError


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
        """Builds the first stage's supernet (from the search's random stream, as an unstaged
        search), after checking that the supernet has stages and enough ops to drop."""
        self.check_network(job.params.network)
        job.build_supernet(**self.network_args(0, None))
        ops = len(job.model.primitives)
        if self.keep_ops and self.keep_ops[0] >= ops:
            raise UserError(
                f"progressive_stages.keep_ops = {list(self.keep_ops)} is refused: the supernet "
                f"has {ops} ops per edge, so the first stage must keep fewer."
            )

    def start_epoch(self, job, epoch: int) -> None:
        """Sets the skip dropout rate of the epoch."""
        stage, local = stage_of(job, epoch)
        warmup = job.params.arch_warmup_epochs
        job.model.skip_dropout = self.dropout_rate(stage, local - 1, job.params.epochs, warmup)

    def end_epoch(self, job, epoch: int) -> None:
        """After a stage's last epoch (but the final stage's): each edge keeps its strongest
        ops, and the next stage's supernet replaces this one."""
        stage, local = stage_of(job, epoch)
        if local != job.params.epochs or stage + 1 >= self.count:
            return
        model = job.model
        alphas = {"normal": model.alphas_normal, "reduce": model.alphas_reduce}
        with torch.no_grad():
            weights = {
                h: model.relaxation.readout(alphas[h]).double().cpu().numpy() for h in HALVES
            }
        edge_ops = {
            h: drop_ops(model.edge_ops[h], weights[h], self.keep_ops[stage]) for h in HALVES
        }
        enter(job, stage + 1, edge_ops)
        job.scheduler = FirstEpochOfStage(job, job.scheduler)

    def restore(self, job, state: dict[str, Any]) -> None:
        """Before a checkpoint is loaded: the supernet of its stage."""
        stage = int(state.get("stage", 0))
        if stage != job.stage:
            enter(job, stage, state["edge_ops"])


class FirstEpochOfStage:
    """Stands in for a new stage's schedule from the stage's start until the loop steps the
    schedule at the end of the previous stage's last epoch: that step only puts the schedule
    in place, so the new stage's first epoch has its first learning rate."""

    def __init__(self, job, scheduler):
        self.job, self.scheduler = job, scheduler

    def step(self) -> None:
        self.job.scheduler = self.scheduler

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()


def stage_of(job, epoch: int) -> tuple[int, int]:
    """``(stage, epoch within it from 1)`` of the search's ``epoch`` (from 1)."""
    return (epoch - 1) // job.params.epochs, (epoch - 1) % job.params.epochs + 1


def enter(job, stage: int, edge_ops: EdgeOps | None) -> None:
    """Builds the supernet and its tools of ``stage``: fresh weights and alphas, drawn from a
    generator seeded by the search's seed and the stage (the same on every process, and the
    same after a resume), leaving the search's random streams as they were."""
    job.stage, job.edge_ops = stage, edge_ops
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed * 1000 + stage)
        job.build_supernet(**job.params.stages.network_args(stage, edge_ops))
    # The best epoch is chosen within the last stage: earlier stages search other networks.
    job.best.update(valid_acc=-1.0, epoch=0, genotype=None)
