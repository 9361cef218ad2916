"""Weight optimizers as injectable components, and the one place torch classes meet gin.

An optimizer factory takes the parameters to optimise and the initial learning rate (the job
computes it: ``train.learning_rate``, scaled by the global batch where configured) and returns
a ``torch.optim.Optimizer``; everything else is the factory's own gin binding::

    train.optimizer = @sgd
    sgd.momentum = 0.9
    sgd.weight_decay = 3e-4

Factories are also found by name in :data:`OPTIMIZERS` (``train.optimizer = 'sgd'``). To add
one, decorate a function ``(params, lr, **settings) -> Optimizer`` with
``@OPTIMIZERS.register('name')`` above ``@gin.configurable``.

``gin.torch`` is not imported (it needs distutils, gone in Python 3.12); the few torch classes
a config may name are registered here instead, under their ``torch`` module names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import gin
import torch

from sharpdarts.core import validate
from sharpdarts.registry import Registry

OptimizerFactory = Callable[..., torch.optim.Optimizer]

OPTIMIZERS: Registry[OptimizerFactory] = Registry(
    "optimizer", "OPTIMIZERS", hint="Bind one with e.g. train.optimizer = @sgd."
)

gin.external_configurable(torch.optim.SGD, module="torch.optim")
gin.external_configurable(torch.optim.Adam, module="torch.optim")
gin.external_configurable(torch.optim.AdamW, module="torch.optim")
gin.external_configurable(torch.nn.CrossEntropyLoss, module="torch.nn")


@OPTIMIZERS.register("sgd")
@gin.configurable(denylist=["params", "lr"])
@validate.params(
    momentum=validate.Real("a number in [0, 1)", low=0.0, high=1.0, high_open=True),
    weight_decay=validate.NON_NEGATIVE,
)
def sgd(
    params: Iterable[torch.nn.Parameter],
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 3e-4,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD with momentum, the optimizer of DARTS and sharpDARTS (both searches and training).

    Args:
        params: the parameters (or param groups) to optimise.
        lr: the initial learning rate; the schedule sets it every epoch.
        momentum: momentum factor (0.9 in the original).
        weight_decay: L2 penalty (3e-4 on CIFAR-10, 1e-4 on ImageNet).
        nesterov: Nesterov momentum (off in the original).
    """
    return torch.optim.SGD(
        params, lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )


@OPTIMIZERS.register("adamw")
@gin.configurable(denylist=["params", "lr"])
@validate.params(weight_decay=validate.NON_NEGATIVE)
def adamw(
    params: Iterable[torch.nn.Parameter],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 1e-2,
) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay), for experiments beyond the paper.

    Args:
        params: the parameters (or param groups) to optimise.
        lr: the initial learning rate; the schedule sets it every epoch.
        betas: the running-average coefficients of the gradient and its square.
        weight_decay: decoupled weight decay.
    """
    return torch.optim.AdamW(params, lr, betas=tuple(betas), weight_decay=weight_decay)


def resolve_optimizer(optimizer: str | OptimizerFactory) -> OptimizerFactory:
    """A factory given by name (a key of :data:`OPTIMIZERS`) or passed through as a callable."""
    return optimizer if callable(optimizer) else OPTIMIZERS[optimizer]
