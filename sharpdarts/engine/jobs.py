"""The jobs an experiment runs, and the pieces both gradient jobs share.

``experiment.job`` names the job: ``@search`` (:mod:`sharpdarts.engine.search_job`),
``@train`` (:mod:`sharpdarts.engine.train_job`), ``@evaluate_checkpoint``
(:mod:`sharpdarts.engine.evaluation`), the language-model jobs
(:mod:`sharpdarts.engine.lm_jobs`) or the random search
(:mod:`sharpdarts.engine.random_search`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gin
import torch

from sharpdarts.core.optimizers import resolve_optimizer
from sharpdarts.core.schedules import resolve_schedule


def weights_tools(params, learning_rate: float, epochs: int, optimizer, lr_schedule, ctx):
    """The optimizer, its per-epoch schedule and the AMP gradient scaler."""
    weight_optimizer = resolve_optimizer(optimizer)(params, learning_rate)
    scheduler = resolve_schedule(lr_schedule)(weight_optimizer, epochs)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.amp_dtype == torch.float16)
    return weight_optimizer, scheduler, scaler


@gin.configurable
def experiment(job: Callable[..., Any] = gin.REQUIRED) -> Callable[..., Any]:
    """The job an experiment runs: ``experiment.job = @search`` (or ``@train``)."""
    return job
