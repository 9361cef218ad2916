"""The DARTS supernet: every edge of every cell mixes the primitives, under the DARTS family's
relaxations (softmax, sigmoid, Gumbel, Dirichlet), weighting schemes, partial channels, edge
normalisation and DARTS-'s auxiliary skip.

Its public path is :mod:`sharpdarts.nn.models` (``sharpdarts.nn.models.SearchNetwork``, the
contract in docs/api.md); module names follow the original search network's, so its
checkpoints keep the original keys plus the architecture parameters.
"""

from __future__ import annotations

from typing import Sequence

import gin
import torch
from torch import nn

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core import validate
from sharpdarts.nn import auxiliary_skip as auxiliary_skip_lib
from sharpdarts.nn import derivation as derivation_lib
from sharpdarts.nn.cells import SearchCell, edge_softmax, num_edges
from sharpdarts.nn.ops import PRIMITIVES_OF_KNOWN_OPS, resolve_ops
from sharpdarts.nn.relaxation import get_relaxation
from sharpdarts.nn.weighting import get_weighting


@gin.configurable
@validate.params(
    C=validate.WIDTH,
    layers=validate.DEPTH,
    steps=validate.COUNT,
    multiplier=validate.COUNT,
    stem_multiplier=validate.COUNT,
    primitives=PRIMITIVES_OF_KNOWN_OPS.or_none(),
    partial_channels=validate.COUNT,
    tau=validate.Real("a temperature > 0", low=0.0, low_open=True),
)
class SearchNetwork(nn.Module):
    """The DARTS supernet: every edge of every cell mixes all primitives.

    Args:
        C: initial channels (16 in the paper's searches).
        num_classes: classes.
        layers: cells (8); reductions at layers//3 and 2*layers//3.
        steps: intermediate nodes per cell (4).
        multiplier: states concatenated into a cell's output (the last ``multiplier``).
        stem_multiplier: stem width is stem_multiplier * C.
        in_channels: image channels.
        primitives: a primitive set name (e.g. 'DARTS_PRIMITIVES') or a list; None is PRIMITIVES.
        op_dict: op table (name or mapping); None is OPS.
        weighting: 'scalar', 'max_w' or a callable mapping softmax weights to coefficients.
        partial_channels: PC-DARTS partial channel connections (changes the math, on purpose):
            only 1/K of each edge's channels go through its ops; see ``cells.MixedOp``.
            1 (the default): off, the DARTS supernet.
        edge_normalization: PC-DARTS edge normalization (changes the math, on purpose): each
            edge's output is scaled by a softmax of per-edge ``betas_normal`` /
            ``betas_reduce`` over the inputs of its node; genotypes rank edges and ops by
            ``beta * softmax(alpha)``.
        channels_last: keep parameters and activations in the channels-last memory format
            (the same math, faster: docs/speed.md); False: NCHW.
        relaxation: how alphas become op weights, a ``relaxation.RELAXATIONS`` name
            ('softmax' for DARTS, 'sigmoid', 'gumbel_hard', 'gumbel_soft', 'dirichlet'); the
            weighting scheme applies to its weights. With 'gumbel_hard' only each edge's
            sampled op runs.
        tau: the relaxation's temperature (the ``tau`` attribute; a schedule may set it).
        hard_all_weights: with a hard sample, add the unsampled ops' weights as scalars (GDAS's
            NAS-Bench-201 cell) rather than only the sampled op's (its DARTS-space cell).
        derivation: the genotype rule, a ``derivation.DERIVATIONS`` name ('darts', 'gdas').
        auxiliary_skip: DARTS-'s auxiliary skip on every edge, scaled by ``skip_beta``
            (changes the math, on purpose; see ``nn.auxiliary_skip``); its coefficient is
            the ``auxiliary_skip`` attribute's ``beta``, which a search's schedule sets.
        skip_beta: the auxiliary skips' initial coefficient.

    The architecture parameters ``alphas_normal`` and ``alphas_reduce`` (edges x ops), and with
    edge normalization ``betas_normal`` and ``betas_reduce`` (edges), are returned by
    :meth:`arch_parameters`; :meth:`weights` returns all other parameters.
    """

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        in_channels: int = 3,
        primitives: str | Sequence[str] | None = None,
        op_dict=None,
        weighting="scalar",
        partial_channels: int = 1,
        edge_normalization: bool = False,
        channels_last: bool = True,
        relaxation="softmax",
        tau: float = 1.0,
        hard_all_weights: bool = False,
        derivation: str = "darts",
        auxiliary_skip: bool = False,
        skip_beta: float = 1.0,
    ):
        super().__init__()
        self.primitives, op_dict = resolve_ops(primitives or "PRIMITIVES", op_dict)
        self.relaxation = get_relaxation(relaxation)
        self.tau = tau
        self.hard_all_weights = hard_all_weights
        derivation_lib.DERIVATIONS[derivation]  # an unknown rule fails now, not at the end
        self.derivation = derivation
        if self.relaxation.hard and (partial_channels > 1 or edge_normalization):
            raise ValueError(
                f"relaxation {relaxation!r} runs one sampled op per edge; it does not combine "
                "with partial_channels > 1 or edge_normalization"
            )
        self._steps = steps
        self._multiplier = multiplier
        self._layers = layers
        self.weighting = get_weighting(weighting)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_curr),
        )
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = SearchCell(
                steps,
                multiplier,
                C_prev_prev,
                C_prev,
                C_curr,
                reduction,
                reduction_prev,
                self._cell_primitives(reduction),
                op_dict,
                partial_channels,
            )
            reduction_prev = reduction
            self.cells.append(cell)
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        shape = (num_edges(steps), self._alpha_columns())
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        self.edge_normalization = edge_normalization
        if edge_normalization:
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(shape[0]))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(shape[0]))
        # After the alphas, so the rest of the network is initialised as without the skips.
        self.auxiliary_skip = (
            auxiliary_skip_lib.attach(self.cells, skip_beta) if auxiliary_skip else None
        )
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _cell_primitives(self, reduction: bool) -> Sequence:
        """The ops of a cell's edges: one list for all (a subclass may give each edge its own
        list, as ``nn.pdarts.PDartsNetwork``)."""
        del reduction
        return self.primitives

    def _alpha_columns(self) -> int:
        """Columns of the alphas: ops per edge."""
        return len(self.primitives)

    def _masked(self, weights: torch.Tensor, reduction: bool) -> torch.Tensor:
        """Op weights of the normal or reduction cells once ops are pruned away (DrNAS,
        ``nn.drnas``); here none are."""
        del reduction
        return weights

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters, trained by the architect."""
        if self.edge_normalization:
            return [self.alphas_normal, self.alphas_reduce, self.betas_normal, self.betas_reduce]
        return [self.alphas_normal, self.alphas_reduce]

    def weights(self) -> list[nn.Parameter]:
        """Every parameter but the architecture's, trained by the weight optimizer."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixing coefficients of normal and reduction cells: the relaxation's weights
        under the weighting scheme (a sampling relaxation draws a new sample)."""
        (normal, _), (reduce, _) = self.relaxed()
        return normal, reduce

    def relaxed(self, op_weights=None) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
        """``((coefficients, index), (coefficients, index))`` of normal and reduction cells;
        ``index`` is a hard sample's op per edge, else None. Draws normal before reduce, as
        the authors' code does. ``op_weights``: given ``(normal, reduce)`` op weights used in
        place of the relaxation's (SDARTS' perturbed weights, ``engine.perturbation``)."""
        out = []
        for i, alphas in enumerate((self.alphas_normal, self.alphas_reduce)):
            if op_weights is None:
                weights, index = self.relaxation.relax(alphas, self.tau)
                weights = self._masked(weights, reduction=i == 1)
            else:
                weights, index = op_weights[i], None
            out.append((self.weighting(weights), index))
        return tuple(out)

    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """Edge normalization's (edges,) weights of normal and reduction cells (or Nones)."""
        if not self.edge_normalization:
            return None, None
        return (
            edge_softmax(self.betas_normal, self._steps),
            edge_softmax(self.betas_reduce, self._steps),
        )

    def forward(self, x: torch.Tensor, op_weights=None) -> torch.Tensor:
        """Logits; ``op_weights``: see :meth:`relaxed`."""
        normal, reduce = self.relaxed(op_weights)
        edges_normal, edges_reduce = self.edge_weights()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            (coefficients, index), edges = (
                (reduce, edges_reduce) if cell.reduction else (normal, edges_normal)
            )
            if index is None:
                s0, s1 = s1, cell(s0, s1, coefficients, edges)
            else:  # a hard sample: each edge runs its sampled op only
                s0, s1 = s1, cell(s0, s1, coefficients, edges, index, self.hard_all_weights)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))

    @torch.no_grad()
    def genotype(self, skip_primitive: str | None = "none") -> genotypes_lib.Genotype:
        """The cell genotype read from the relaxation's readout, softmax(alpha) but for
        FairDARTS's sigmoid (see genotypes.parse_cell).

        With edge normalization each edge's row is scaled by its edge weight first (PC-DARTS:
        edges are ranked by ``beta * softmax(alpha)``; an edge's op choice is unchanged).
        """
        normal = self._masked(self.relaxation.readout(self.alphas_normal), reduction=False)
        reduce = self._masked(self.relaxation.readout(self.alphas_reduce), reduction=True)
        edges_normal, edges_reduce = self.edge_weights()
        if edges_normal is not None:
            normal = normal * edges_normal[:, None]
            reduce = reduce * edges_reduce[:, None]
        return derivation_lib.derive(
            self.derivation,
            normal.cpu().numpy(),
            reduce.cpu().numpy(),
            self.primitives,
            steps=self._steps,
            multiplier=self._multiplier,
            skip_primitive=skip_primitive,
        )
