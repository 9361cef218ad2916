"""Relaxations: how a search's architecture parameters become each edge's op weights.

A relaxation maps alphas (edges x ops) and a temperature ``tau`` to op weights of the same
shape. DARTS takes a softmax; the methods that followed it changed this one map:

- ``softmax``: DARTS.
- ``sigmoid``: FairDARTS (each op weighted on its own, no competition between ops).
- ``gumbel_hard``: GDAS, a hard Gumbel-softmax sample with a straight-through estimator; it
  also returns the sampled op of each edge, so that only that op runs in the forward pass.
- ``gumbel_soft``: SNAS, a soft Gumbel-softmax sample.
- ``dirichlet``: DrNAS, a reparameterised Dirichlet sample with concentration ``elu(alpha) + 1``.

The random draws are made as the authors' code makes them (the same torch calls in the same
order), so one torch seed gives one sample in both; tests/test_relaxation.py pins figures
computed with the authors' code. docs/family.md names the sources.

Each relaxation also has a ``readout``: the deterministic weights a genotype is read from
(softmax for all but FairDARTS, which reads its sigmoids).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import gin
import torch
import torch.nn.functional as F

from sharpdarts.registry import Registry


class Relaxed(NamedTuple):
    """Op weights of one cell type, and for hard samples the op each edge runs.

    Attributes:
        weights: (edges, ops) op weights.
        index: (edges, 1) long tensor, the sampled op of each edge (hard samples); else None.
    """

    weights: torch.Tensor
    index: torch.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class Relaxation:
    """One relaxation: its sampling map and the weights genotypes are read from.

    Attributes:
        relax: ``(alphas, tau) -> Relaxed``; draws from torch's global generator if it samples.
        readout: ``alphas -> weights`` read by the derivation rule (deterministic).
        uses_tau: the map depends on the temperature.
        samples: the map draws random numbers.
        hard: the map returns a sampled op per edge, the only op that runs.
    """

    relax: Callable[[torch.Tensor, float], Relaxed]
    readout: Callable[[torch.Tensor], torch.Tensor]
    uses_tau: bool = False
    samples: bool = False
    hard: bool = False


# Users add a relaxation with ``RELAXATIONS.register('name')(Relaxation(...))`` and name it in a
# config: ``SearchNetwork.relaxation = 'name'``.
RELAXATIONS: Registry[Relaxation] = Registry(
    "relaxation",
    "RELAXATIONS",
    hint="Relaxations are registered with RELAXATIONS.register('name')(Relaxation(...)).",
)


def _softmax(alphas: torch.Tensor) -> torch.Tensor:
    return F.softmax(alphas, dim=-1)


def softmax(alphas: torch.Tensor, tau: float = 1.0) -> Relaxed:
    """DARTS: ``softmax(alpha)`` over each edge's ops (``tau`` unused)."""
    return Relaxed(F.softmax(alphas, dim=-1))


def sigmoid(alphas: torch.Tensor, tau: float = 1.0) -> Relaxed:
    """FairDARTS: ``sigmoid(alpha)``, each op on its own (``tau`` unused)."""
    return Relaxed(torch.sigmoid(alphas))


def gumbel_hard(alphas: torch.Tensor, tau: float) -> Relaxed:
    """GDAS: a hard Gumbel-softmax sample with a straight-through estimator.

    As GDAS's code (xautodl ``search_model_gdas_nasnet.py``, ``get_gumbel_prob``): Gumbel
    noise ``-log(Exp(1))`` is added to ``log_softmax(alpha)``, divided by ``tau`` and
    softmaxed to ``probs``; the weights are ``one_hot(argmax) - probs.detach() + probs``, so
    the sampled op's weight is 1 and every other's 0 in value while the gradient is that of
    ``probs``. A draw with an infinite Gumbel or a non-finite ``probs`` is drawn again, the
    whole matrix at once.
    """
    while True:
        gumbels = -torch.empty_like(alphas).exponential_().log()
        logits = (alphas.log_softmax(dim=1) + gumbels) / tau
        probs = F.softmax(logits, dim=1)
        index = probs.max(-1, keepdim=True)[1]
        one_hot = torch.zeros_like(logits).scatter_(-1, index, 1.0)
        hard = one_hot - probs.detach() + probs
        if not (torch.isinf(gumbels).any() or torch.isinf(probs).any() or probs.isnan().any()):
            return Relaxed(hard, index)


def gumbel_soft(alphas: torch.Tensor, tau: float) -> Relaxed:
    """SNAS: a soft Gumbel-softmax sample, ``softmax((alpha + g) / tau)``.

    As SNAS's code (``SNAS/model_search.py``, ``_get_categ_mask``): ``u ~ U[0, 1)`` and
    ``g = -log(-log u)``, added to the unnormalised ``alpha`` (SNAS's ``log_alpha``).
    """
    u = torch.zeros_like(alphas).uniform_()
    return Relaxed(F.softmax((alphas + (-((-(u.log())).log()))) / tau, dim=-1))


def dirichlet(alphas: torch.Tensor, tau: float = 1.0) -> Relaxed:
    """DrNAS: a reparameterised sample of ``Dirichlet(elu(alpha) + 1)`` for each edge.

    As DrNAS's code (``utils.process_step_matrix``): one ``rsample`` per edge, edge by edge,
    so that the draws follow the authors' order (``tau`` unused).
    """
    rows = [torch.distributions.Dirichlet(F.elu(row) + 1).rsample() for row in alphas.unbind(0)]
    return Relaxed(torch.stack(rows))


RELAXATIONS.register("softmax")(Relaxation(softmax, _softmax))
RELAXATIONS.register("sigmoid")(Relaxation(sigmoid, torch.sigmoid))
RELAXATIONS.register("gumbel_hard")(
    Relaxation(gumbel_hard, _softmax, uses_tau=True, samples=True, hard=True)
)
RELAXATIONS.register("gumbel_soft")(Relaxation(gumbel_soft, _softmax, uses_tau=True, samples=True))
RELAXATIONS.register("dirichlet")(Relaxation(dirichlet, _softmax, samples=True))


def get_relaxation(relaxation: str | Relaxation) -> Relaxation:
    """Resolves a relaxation given by name or passes a :class:`Relaxation` through.

    Raises:
        UnknownNameError: (a KeyError) an unknown name, with close matches.
    """
    if isinstance(relaxation, Relaxation):
        return relaxation
    return RELAXATIONS[relaxation]


def linear_tau(epoch: int, epochs: int, tau_max: float = 10.0, tau_min: float = 0.1) -> float:
    """GDAS's temperature: ``tau_max`` at the first epoch down to ``tau_min`` at the last.

    As GDAS's search script (xautodl ``exps/NAS-Bench-201-algos/GDAS.py``):
    ``tau_max - (tau_max - tau_min) * epoch / (epochs - 1)``, ``epoch`` counted from 0.
    """
    if epochs <= 1:
        return float(tau_max)
    return tau_max - (tau_max - tau_min) * epoch / (epochs - 1)


def snas_tau(
    epoch: int, epochs: int, tau_max: float = 1.0, tau_min: float = 0.03, horizon: int = 150
) -> float:
    """SNAS's temperature in epoch ``epoch`` (from 0): linear from ``tau_max`` to ``tau_min``.

    As SNAS's ``utils.Temp_Scheduler`` and search loop: the scheduler is stepped at the start
    of each epoch, so epoch ``e`` runs at ``(1 - (e + 1) / horizon) * (tau_max - tau_min) +
    tau_min``, floored at ``tau_min``; their code fixes the horizon at 150 epochs whatever the
    run's length (``epochs`` is unused).
    """
    return max((1 - (epoch + 1) / horizon) * (tau_max - tau_min) + tau_min, tau_min)


TauSchedule = Callable[[int, int], float]


@gin.configurable
def linear_tau_schedule(tau_max: float = 10.0, tau_min: float = 0.1) -> TauSchedule:
    """:func:`linear_tau` with its temperatures bound now, when the search is built
    (``search.tau_schedule = @linear_tau_schedule()``), so the run sees the bindings used."""
    return functools.partial(linear_tau, tau_max=tau_max, tau_min=tau_min)


@gin.configurable
def snas_tau_schedule(
    tau_max: float = 1.0, tau_min: float = 0.03, horizon: int = 150
) -> TauSchedule:
    """:func:`snas_tau` with its settings bound when the search is built."""
    return functools.partial(snas_tau, tau_max=tau_max, tau_min=tau_min, horizon=horizon)
