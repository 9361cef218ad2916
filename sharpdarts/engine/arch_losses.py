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
