"""DARTS-'s auxiliary skip connection: a skip on every edge of the supernet, scaled by beta.

DARTS- (Chu et al., ICLR 2021) adds to every mixed op's output an extra skip connection of its
input, ``beta * skip(x)``, outside the architecture's choice (no alpha weighs it), with beta
decaying to 0 over the search. The skip absorbs the residual shortcut's advantage that pushes
DARTS to choose skip connections. As their ``src/search/model_search.py`` ``MixedOp``
(``--auxiliary_skip``, ``--auxiliary_operation skip``): the identity on stride-1 edges and a
``FactorizedReduce(C, C, affine=False)`` on the stride-2 edges of a reduction cell, whose
convolutions are trained with the other weights. Its state-dict key is theirs,
``cells.N._ops.K.auxiliary_op``.

``SearchNetwork(auxiliary_skip=True)`` attaches the skips; a search sets beta each epoch from
``search.skip_beta_schedule`` (``@linear_beta_schedule()``). docs/family.md gives the sources.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import gin
import torch
from torch import nn

from sharpdarts.nn.ops import FactorizedReduce, Identity


class AuxiliarySkip:
    """The coefficient shared by every auxiliary skip of a network (a plain object, not a
    module, so that each mixed op can hold it without registering it).

    Attributes:
        beta: the skips' coefficient; a search's schedule sets it each epoch.
    """

    def __init__(self, beta: float = 1.0):
        self.beta = float(beta)

    def __call__(self, x: torch.Tensor, out: torch.Tensor, op: nn.Module) -> torch.Tensor:
        """``out + op(x) * beta``: a mixed op's output with its auxiliary skip added."""
        return out + op(x) * self.beta


def attach(cells: Iterable[nn.Module], beta: float = 1.0) -> AuxiliarySkip:
    """Adds an auxiliary skip to every mixed op of ``cells`` (``SearchCell`` modules).

    Each mixed op gets ``auxiliary_op`` (a registered module: the identity, or a non-affine
    ``FactorizedReduce`` on stride-2 edges) and ``auxiliary``, the shared coefficient.

    Returns:
        The shared :class:`AuxiliarySkip`, whose ``beta`` scales every skip.
    """
    skip = AuxiliarySkip(beta)
    for cell in cells:
        for mixed in cell._ops:
            C = mixed.channels
            mixed.auxiliary_op = (
                FactorizedReduce(C, C, affine=False) if mixed._stride == 2 else Identity()
            )
            mixed.auxiliary = skip
    return skip


def linear_beta(
    epoch: int,
    epochs: int,
    beta: float = 1.0,
    start: int = 0,
    stop: int | None = None,
    horizon: int | None = None,
) -> float:
    """DARTS-'s linear decay of beta in epoch ``epoch`` (counted from 0).

    As their ``utils.DecayScheduler`` (``decay_type='linear'``), stepped with the epoch before
    each epoch: ``beta * (horizon - epoch) / (horizon - start)`` from epoch ``start`` to
    ``stop``, ``beta`` before ``start`` and the value at ``stop`` after it. Their flags:
    ``--skip_beta 1 --decay linear``, ``--decay_start_epoch 0``, ``--decay_stop_epoch 50``,
    ``--decay_max_epoch 50`` (the horizon), with 50 search epochs: beta is 1 in the first epoch
    and 0.02 in the last. None for ``stop`` and ``horizon`` is the run's epoch count.
    """
    horizon = epochs if horizon is None else horizon
    stop = horizon if stop is None else stop
    if epoch < start:
        return float(beta)
    return beta * (horizon - min(epoch, stop)) / (horizon - start)


BetaSchedule = Callable[[int, int], float]


@gin.configurable
def linear_beta_schedule(
    beta: float = 1.0, start: int = 0, stop: int | None = None, horizon: int | None = None
) -> BetaSchedule:
    """:func:`linear_beta` with its settings bound when the search is built
    (``search.skip_beta_schedule = @linear_beta_schedule()``)."""
    return functools.partial(linear_beta, beta=beta, start=start, stop=stop, horizon=horizon)
