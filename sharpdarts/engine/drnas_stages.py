"""DrNAS's progressive search on NAS-Bench-201 (Chen et al., ICLR 2021): a stage hook.

Their ``201-space/train_search_progressive.py`` (github.com/xiangning-chen/DrNAS, commit
f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0) searches one supernet in two stages of 50 epochs:
partial channels K = 4 with all five ops per edge, then K = 2 with three. Between the stages,
in this order, after the schedule's step of the stage's last epoch:

1. ``model.pruning(3)``: each edge keeps its three largest alphas (the others set to 0 and
   masked out of every later Dirichlet draw; :meth:`NB201SearchNetwork.prune`);
2. ``model.wider(2)``: every conv op widens to ``C // 2`` channels, copying channels drawn
   from the global random stream (:meth:`NB201SearchNetwork.wider`; under torchrun, where
   each process has its own stream, from one seeded by the run's seed and the stage);
3. a new SGD over the (new) weights with the run's initial learning rate, each momentum
   buffer carried over, a widened weight's grown by the same copied channels
   (``net2wider.configure_optimizer``);
4. a new cosine schedule (over all 100 epochs) loaded with the old one's state
   (``configure_scheduler``). Loading a schedule's state leaves the optimizer's learning rate
   as it is, so the second stage's first epoch runs at the initial rate, and torch's cosine,
   computed recursively from the last rate, goes on from there: the second stage anneals from
   the initial rate to the minimum (``restart_lr=True``; docs/nb201.md on torch versions).
   Their loading of the old schedule suggests they meant it to go on unbroken
   (``restart_lr=False``: the new optimizer takes the old one's current rate).

The architect (its Adam and its state) and the alphas go on unchanged, as theirs (its
``pruning``, which would clear the pruned alphas' Adam state, is commented out). The first
``search.arch_warmup_epochs`` epochs of each stage train the weights only (their
``epoch >= 10``, ``epoch`` counted within the stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gin
import torch

from sharpdarts.core.nb201_arch import OPS
from sharpdarts.engine.jobs import weights_tools
from sharpdarts.engine.stages import FirstEpochOfStage, Stages, stage_of
from sharpdarts.errors import UserError
from sharpdarts.nn.nb201_search import grow


@gin.configurable("drnas_stages")
class DrNASStages(Stages):
    """DrNAS's stages (``search.stages = @drnas_stages()``, with ``@NB201SearchNetwork``
    and ``NB201SearchNetwork.method = 'drnas'``).

    Args:
        partial_channels: K of each stage (their ``ks = [4, 2]``).
        keep_ops: ops each edge keeps from the start of each stage after the first (their
            ``num_keeps = [5, 3]``: all five, then 3).
        restart_lr: True: the next stage starts at the initial learning rate, as their code
            runs (see the module); False: the schedule goes on unbroken.
    """

    def __init__(
        self,
        partial_channels: Sequence[int] = (4, 2),
        keep_ops: Sequence[int] = (3,),
        restart_lr: bool = True,
    ):
        self.partial_channels = tuple(int(k) for k in partial_channels)
        self.keep_ops = tuple(int(n) for n in keep_ops)
        self.restart_lr = bool(restart_lr)
        falling = all(a >= b for a, b in zip(self.partial_channels, self.partial_channels[1:]))
        keeps = (len(OPS), *self.keep_ops)
        if (
            not self.partial_channels
            or min(self.partial_channels) < 1
            or not falling
            or len(self.keep_ops) != len(self.partial_channels) - 1
            or any(not 1 <= b < a for a, b in zip(keeps, keeps[1:]))
        ):
            raise UserError(
                f"drnas_stages is refused: partial_channels {list(partial_channels)} must be "
                f"K >= 1 per stage, never growing, and keep_ops {list(keep_ops)} one count per "
                f"stage after the first, each below the last (from the {len(OPS)} ops), >= 1."
            )

    @property
    def count(self) -> int:
        """The number of stages."""
        return len(self.partial_channels)

    def schedule_epochs(self, epochs: int) -> int:
        """One schedule over every stage (their ``CosineAnnealingLR(sum(train_epochs))``)."""
        return epochs * self.count

    def first_stage(self, job) -> None:
        """The supernet with the first stage's K (from the search's random stream)."""
        job.build_supernet(partial_channels=self.partial_channels[0])
        if not callable(getattr(job.model, "prune", None)) or job.model.method != "drnas":
            raise UserError(
                "search.stages = @drnas_stages() needs the DrNAS supernet: bind search.network "
                "= @NB201SearchNetwork and NB201SearchNetwork.method = 'drnas'."
            )

    def end_epoch(self, job, epoch: int) -> None:
        """After a stage's last epoch (but the final stage's): the schedule's step (theirs
        comes before the pruning), then the next stage's supernet and optimizer."""
        stage, local = stage_of(job, epoch)
        if local != job.params.epochs or stage + 1 >= self.count:
            return
        job.scheduler.step()
        if job.ctx.distributed:  # every process must copy the same channels: a shared draw
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(job.seed * 1000 + stage + 1)
                self.advance(job, stage + 1)
        else:  # theirs: the copies drawn from the run's random stream
            self.advance(job, stage + 1)
        # The loop's own step after this epoch only puts the new schedule in place.
        job.scheduler = FirstEpochOfStage(job, job.scheduler)

    def advance(self, job, stage: int) -> None:
        """From ``stage - 1`` to ``stage``: prune, widen, and the weights' optimizer and
        schedule carried over (see the module)."""
        model, p = job.model, job.params
        model.prune(self.keep_ops[stage - 1])
        grown = model.wider(self.partial_channels[stage])
        old_optimizer, old_scheduler = job.optimizer, job.scheduler
        job.optimizer, job.scheduler, _ = weights_tools(
            model.weights(),
            p.learning_rate,
            self.schedule_epochs(p.epochs),
            p.optimizer,
            p.lr_schedule,
            job.ctx,
        )
        for param in job.optimizer.param_groups[0]["params"]:
            old, growth = grown.get(param, (param, ()))
            if old in old_optimizer.state:
                job.optimizer.state[param] = {
                    k: grow(v, growth) if torch.is_tensor(v) and v.shape == old.shape else v
                    for k, v in old_optimizer.state[old].items()
                }
        job.scheduler.load_state_dict(old_scheduler.state_dict())
        if not self.restart_lr:
            for new, old in zip(job.optimizer.param_groups, old_optimizer.param_groups):
                new["lr"] = old["lr"]
        job.stage = stage
        job.step_model = job.ctx.compiled(model)

    def restore(self, job, state: dict[str, Any]) -> None:
        """Before a checkpoint is loaded: the supernet's shapes, optimizer and schedule of its
        stage (their values come from the checkpoint; the copied channels' draws are made
        aside, leaving the random streams as the checkpoint will set them)."""
        stage = int(state.get("stage", 0))
        if stage == job.stage:
            return
        with torch.random.fork_rng(devices=[]):
            if stage < job.stage:  # back to the first stage's supernet (and architect)
                job.stage = 0
                self.first_stage(job)
            while job.stage < stage:
                self.advance(job, job.stage + 1)
