"""Architecture-loss terms: extra terms some DARTS-family methods add to the loss that the
architecture parameters minimise.

Each term is a callable ``term(model) -> 0-dim tensor`` of the model's architecture
parameters; ``Architect(extra_loss=...)`` adds it to the validation loss of every
architecture step (``Architect.extra_loss = @ZeroOneLoss()`` in a config). docs/family.md
gives each term's source; tests/test_family_exact.py pins them against the authors' code.
"""

from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Dirichlet, kl_divergence

from sharpdarts.nn import resource


@gin.configurable
class ZeroOneLoss:
    """FairDARTS' zero-one loss: ``-weight * mean((sigmoid(alpha) - 0.5) ** 2)``.

    It pushes each op's sigmoid weight away from 0.5, towards 0 or 1. As FairDARTS'
    ``separate_loss.ConvSeparateLoss`` on the sigmoids of the normal and then the reduction
    alphas, concatenated; the weight is their ``--aux_loss_weight``, 10 by default.

    Args:
        weight: the term's weight (10 in FairDARTS).
    """

    def __init__(self, weight: float = 10.0):
        self.weight = weight

    def __call__(self, model: nn.Module) -> torch.Tensor:
        sigmoids = torch.cat(
            [torch.sigmoid(model.alphas_normal), torch.sigmoid(model.alphas_reduce)]
        )
        # Their target is a scalar 0.5, broadcast: the same mean of squared differences.
        return self.weight * -F.mse_loss(sigmoids, torch.full_like(sigmoids, 0.5))


@gin.configurable
class DirichletKL:
    """DrNAS' KL regulariser: ``scale * sum KL(Dir(elu(alpha) + 1) || Dir(1))`` over edges.

    As DrNAS' ``Network._get_kl_reg`` (``DARTS-space/model_search.py``, ``--reg_type kl``):
    the reduction cell's sum first, then the normal cell's. DrNAS' default regulariser is
    instead an L2 weight decay on the alphas, ``--reg_scale`` 1e-3, the Adam
    ``weight_decay`` of the architect (``Architect.weight_decay``).

    Args:
        scale: the term's weight (``--reg_scale``; their script's default 1e-3 is for L2).
    """

    def __init__(self, scale: float = 1e-3):
        self.scale = scale

    def __call__(self, model: nn.Module) -> torch.Tensor:
        def kl(alphas: torch.Tensor) -> torch.Tensor:
            anchor = Dirichlet(torch.ones_like(alphas))
            return torch.sum(kl_divergence(Dirichlet(F.elu(alphas) + 1), anchor))

        return self.scale * (kl(model.alphas_reduce) + kl(model.alphas_normal))


@gin.configurable
class ResourceConstraint:
    """SNAS's resource constraint: the cost of the sampled ops, a term of the alphas.

    As SNAS's ``--resource_efficient --method reparametrization`` (SNAS-Series/SNAS-Series,
    ``SNAS/model_search.py`` ``Network.forward`` and ``SNAS/train_search.py``). Each edge's
    expected cost under the forward pass's own sample ``Z`` (the soft Gumbel weights, the same
    draw) is ``R = sum_k cost_k * Z_k``, for each of three costs of the edge's ops: parameters,
    FLOPs and memory accesses (``nn.resource``, counted at the cell's width and resolution).
    With ``log`` (their ``--log_penalty``, the README's searches) an edge's penalty is the mean
    over the three costs of ``log R``, where an ``R`` below 1 counts as 1 (its log 0, its
    gradient none); without, ``0.43 * (2 size + flops / 4000 + mac / 100)``. ``costs`` keeps one
    cost alone (their ``--separation``). The penalties are summed over the edges of every
    cell; the term is ``weight * (normal / normal_divisor + reduce_ratio * reduce /
    reduce_divisor)``. The costs are constants, so only the alphas get its gradient: in SNAS's
    one-level loss it moves the alphas only, as here on the architecture's loss.

    Args:
        weight: lambda (their ``--resource_lambda``): 1.5e-3 in both of the README's searches,
            8 and 20 cells (the 8-cell command's remark says 1e-2, the script's default for
            this method with the log penalty).
        log: the log penalty (``--log_penalty``).
        costs: 'all' (the three), 'size', 'flops' or 'mac' (``--separation``).
        normal_divisor, reduce_divisor: their script divides the normal cells' sum by 6 and
            the reduction cells' by 2 (the 8-cell supernet's counts; kept for 20 cells).
        reduce_ratio: the reduction cells' share (``--ratio``, 1).
    """

    def __init__(
        self,
        weight: float = 1.5e-3,
        log: bool = True,
        costs: str = "all",
        normal_divisor: float = 6.0,
        reduce_divisor: float = 2.0,
        reduce_ratio: float = 1.0,
    ):
        if costs != "all" and costs not in resource.COSTS:
            raise ValueError(f"costs must be 'all' or one of {resource.COSTS}, not {costs!r}")
        self.weight = weight
        self.log = log
        self.costs = costs
        self.normal_divisor = normal_divisor
        self.reduce_divisor = reduce_divisor
        self.reduce_ratio = reduce_ratio

    def _penalty(self, costs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Sum over cells and edges of the edges' penalties; costs (cells, edges, ops, 3)."""
        if not self.log and self.costs == "all":
            mixed = costs[..., 0] * 2 + costs[..., 1] / 4000 + costs[..., 2] / 100
            return ((mixed * weights) * 0.43).sum()
        expected = (costs * weights[None, :, :, None]).sum(-2)  # (cells, edges, 3)
        if self.costs != "all":
            expected = expected[..., resource.COSTS.index(self.costs)]
        if not self.log:
            return expected.sum()
        # Their in-place 'R[|R| < 1] = 1' before the log: those edges add 0 and no gradient.
        logs = torch.log(torch.where(expected.abs() < 1, torch.ones_like(expected), expected))
        return (logs.mean(-1) if self.costs == "all" else logs).sum()

    def __call__(self, model: nn.Module) -> torch.Tensor:
        sample = getattr(model, "sample", None)
        if sample is None or not hasattr(model, "cells"):
            raise ValueError(
                "ResourceConstraint counts the costs of the DARTS supernet's cells "
                f"(SearchNetwork); a {type(model).__name__} has none"
            )
        if sample.normal is None or sample.image_size is None:
            raise ValueError(
                "ResourceConstraint reads the op weights of the network's latest forward pass "
                "(its sample): run the network first"
            )
        normal_costs, reduce_costs = resource.supernet_costs(
            model, sample.image_size, like=sample.normal
        )
        normal = self._penalty(normal_costs, sample.normal)
        reduce = self._penalty(reduce_costs, sample.reduce)
        return self.weight * (
            normal / self.normal_divisor + self.reduce_ratio * reduce / self.reduce_divisor
        )
