"""SDARTS' perturbations: the op weights of each weight step, perturbed around softmax(alpha).

SDARTS (Chen & Hsieh, ICML 2020) trains the supernet's weights on perturbed architectures, so
that the weights do well in a neighbourhood of the alphas and the validation loss is smooth
around them. Before each weight step (after the architecture step, which is not perturbed) the
op weights ``w = softmax(alpha)`` of both cell types are perturbed in an L-infinity ball of
radius epsilon and projected back onto the simplex; the weight step's forward uses the
perturbed weights (``SearchNetwork.forward(x, op_weights=...)``) and the alphas are unchanged:

- :class:`RandomSmoothing` (SDARTS-RS): ``w + U[-epsilon, epsilon]``.
- :class:`AdversarialPGD` (SDARTS-ADV): a projected sign-gradient ascent on the training loss
  from a random start, kept only if it raised the loss.

As their ``attacker/perturb.py`` (``Random_alpha``, ``Linf_PGD_alpha``) and
``sota/cnn/train_search.py`` (``--perturb_alpha random | pgd_linf``, ``--epsilon_alpha 0.3``);
the projection is their ``Network.clip`` (``sota/cnn/model_search.py``). Epsilon grows
linearly over the search: ``0.03 + (epsilon - 0.03) * epoch / epochs``, ``epoch`` from 0.
The random draws are theirs (one ``uniform_`` per cell type, normal first), so one torch seed
gives one perturbation in both; tests/test_sdarts.py pins figures computed with their code.
docs/family.md names the sources.

A search uses one with ``search.perturbation = @RandomSmoothing()`` (or ``@AdversarialPGD()``).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import gin
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.errors import UserError
from sharpdarts.nn import relaxation as relaxation_lib

Weights = tuple[torch.Tensor, torch.Tensor]


def check_model(model: nn.Module) -> None:
    """Refuses a network a perturbation cannot serve: it needs a supernet of normal and
    reduction alphas that takes ``op_weights`` (``SearchNetwork``) with the softmax relaxation
    (SDARTS perturbs ``softmax(alpha)`` and projects onto the simplex).

    Raises:
        UserError: naming what is missing.
    """
    relaxation = getattr(model, "relaxation", None)
    if not hasattr(model, "alphas_reduce") or relaxation is None:
        raise UserError(
            f"search.perturbation (SDARTS) perturbs the op weights of a SearchNetwork; "
            f"{type(model).__name__} has none to perturb."
        )
    if relaxation.relax is not relaxation_lib.softmax:
        raise UserError(
            "search.perturbation (SDARTS) perturbs softmax(alpha): it needs "
            "SearchNetwork.relaxation = 'softmax'."
        )


def clip_to_simplex(weights: torch.Tensor) -> torch.Tensor:
    """SDARTS' ``Network.clip``: each row clamped to [0, 1] and divided by its sum; a row
    clamped to all zeros puts 1 on its largest entry before the clamp."""
    top = weights.argmax(-1)
    out = weights.clamp(0, 1)
    dead = out.sum(-1) == 0
    if dead.any():
        rows = dead.nonzero().flatten()
        out[rows, top[rows]] = 1.0
    return out / out.sum(-1, keepdim=True)


def softmax_weights(model: nn.Module) -> Weights:
    """The unperturbed op weights ``softmax(alpha)`` of normal and reduction cells (no graph)."""
    with torch.no_grad():
        return tuple(F.softmax(a, dim=-1) for a in (model.alphas_normal, model.alphas_reduce))


def _uniform_noise(weights: Weights, epsilon: float) -> Weights:
    """``w + U[-epsilon, epsilon]``, clipped, normal then reduce (their draw order)."""
    return tuple(
        clip_to_simplex(w + torch.zeros_like(w).uniform_(-epsilon, epsilon)) for w in weights
    )


class _Perturbation:
    """The epsilon schedule shared by both perturbations.

    Args:
        epsilon: the radius in the last epochs (``--epsilon_alpha``, 0.3).
        epsilon_start: the radius in the first epoch (0.03 in their script).
    """

    def __init__(self, epsilon: float = 0.3, epsilon_start: float = 0.03):
        self.epsilon_max = float(epsilon)
        self.epsilon_start = float(epsilon_start)
        self.epsilon = self.epsilon_start  # the current radius: set each epoch

    def epsilon_at(self, epoch: int, epochs: int) -> float:
        """The radius of epoch ``epoch`` (from 0): ``start + (max - start) * epoch / epochs``."""
        return self.epsilon_start + (self.epsilon_max - self.epsilon_start) * epoch / epochs

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Sets the radius of epoch ``epoch`` (from 0)."""
        self.epsilon = self.epsilon_at(epoch, epochs)


@gin.configurable
class RandomSmoothing(_Perturbation):
    """SDARTS-RS: uniform noise on ``softmax(alpha)``, projected onto the simplex.

    As SDARTS' ``Random_alpha``. Call: ``(model, x, y, criterion) -> (normal, reduce)`` op
    weights (``x``, ``y`` and ``criterion`` are unused).
    """

    def __call__(self, model: nn.Module, x, y, criterion, autocast=None) -> Weights:
        return _uniform_noise(softmax_weights(model), self.epsilon)


@gin.configurable
class AdversarialPGD(_Perturbation):
    """SDARTS-ADV: an L-infinity PGD attack on ``softmax(alpha)`` maximising the training loss.

    As SDARTS' ``Linf_PGD_alpha``: the model in eval mode (batch norm on its running
    statistics) for the whole attack; a random start ``U[-epsilon, epsilon]`` (clipped);
    ``steps`` steps of ``w + (2 epsilon / steps) * sign(dL/dw)`` (their ``Linf_SGD`` on the
    negated loss), each projected to the epsilon ball around ``softmax(alpha)`` and clipped;
    the perturbed weights are kept only if the loss at them is at least the loss at
    ``softmax(alpha)``, else the unperturbed weights are returned.

    Args:
        epsilon, epsilon_start: see the radius schedule (0.3 and 0.03).
        steps: attack steps (7).
        random_start: start from a uniform draw in the ball (True).
    """

    def __init__(
        self,
        epsilon: float = 0.3,
        epsilon_start: float = 0.03,
        steps: int = 7,
        random_start: bool = True,
    ):
        super().__init__(epsilon, epsilon_start)
        self.steps = steps
        self.random_start = random_start

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        criterion: Callable,
        autocast: Callable | None = None,
    ) -> Weights:
        """The perturbed ``(normal, reduce)`` op weights for a weight step on ``(x, y)``.

        ``autocast``: the context of forward passes (the search's mixed precision), or None.
        """
        autocast = autocast or contextlib.nullcontext
        epsilon, lr = self.epsilon, 2 * self.epsilon / self.steps

        def loss_at(weights: Weights) -> torch.Tensor:
            with autocast():
                return criterion(model(x, op_weights=weights).float(), y)

        training = model.training
        model.eval()
        try:
            saved = softmax_weights(model)
            with torch.no_grad():
                loss_before = loss_at(saved)
            weights = _uniform_noise(saved, epsilon) if self.random_start else saved
            for _ in range(self.steps):
                weights = tuple(w.detach().requires_grad_() for w in weights)
                grads = torch.autograd.grad(loss_at(weights), weights)
                with torch.no_grad():
                    weights = tuple(
                        clip_to_simplex(s + (w + lr * g.sign() - s).clamp(-epsilon, epsilon))
                        for w, g, s in zip(weights, grads, saved)
                    )
            with torch.no_grad():
                loss_after = loss_at(weights)
            if loss_before > loss_after:  # the attack lowered the loss: no perturbation
                weights = saved
        finally:
            model.train(training)
        return tuple(w.detach() for w in weights)
