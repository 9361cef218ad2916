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
from sharpdarts.nn import spaces as spaces_lib
from sharpdarts.nn.cells import SearchCell, edge_softmax, num_edges
from sharpdarts.nn.ops import PRIMITIVES_OF_KNOWN_OPS, resolve_ops
from sharpdarts.nn.relaxation import get_relaxation
from sharpdarts.nn.weighting import get_weighting


class Sample:
    """The relaxation's op weights of a supernet's latest forward pass, and its input's height
    and width: what a loss term of the sample itself reads (SNAS's resource constraint,
    ``engine.arch_losses.ResourceConstraint``, uses the same draw as the forward pass).

    A deep copy or a pickle of the network holds an empty one: the weights carry their
    autograd graph, which neither can copy.

    Attributes:
        normal, reduce: (edges, ops) op weights before the weighting scheme, or None before
            the first forward pass.
        image_size: ``(height, width)`` of the input, or None.
    """

    def __init__(self, normal=None, reduce=None, image_size=None):
        self.normal, self.reduce, self.image_size = normal, reduce, image_size

    def __deepcopy__(self, memo) -> Sample:
        return Sample()

    def __reduce__(self):
        return (Sample, ())


@gin.configurable
@validate.params(
    C=validate.WIDTH,
    layers=validate.DEPTH,
    steps=validate.COUNT,
    multiplier=validate.COUNT,
    stem_multiplier=validate.COUNT,
    primitives=PRIMITIVES_OF_KNOWN_OPS.or_none(),
    space=spaces_lib.SPACE.or_none(),
    partial_channels=validate.COUNT,
    tau=validate.Real("a temperature > 0", low=0.0, low_open=True),
    drop_path_prob=validate.Real("a probability in [0, 1)", low=0.0, high=1.0, high_open=True),
    alpha_std=validate.NON_NEGATIVE,
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
        space: a search space (``nn.spaces``): each edge's ops, e.g. RobustDARTS's 's1' .. 's4';
            when given it replaces ``primitives`` (so that one binding moves any method's
            search to a space). The alphas have one column per op of an edge; genotypes read
            them spread over :attr:`primitives`, the space's ops, and leave out
            ``skip_primitive`` only where the space has it (RobustDARTS's rule).
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
        drop_path_prob: drop path on every edge's mixed output in training mode, before the
            node sum (SNAS's search: 0.3, constant; ``SNAS/model_search.py`` ``Cell.forward``,
            whose identity test never matches a mixed op); the ``drop_path_prob`` attribute.
            0: none (DARTS).
        alpha_mean, alpha_std: the alphas start as ``alpha_mean + alpha_std * N(0, 1)``
            (DARTS: 0 and 1e-3; SNAS: 1 and 0.01, its ``--loc_mean`` and ``--loc_std``).

    The architecture parameters ``alphas_normal`` and ``alphas_reduce`` (edges x ops), and with
    edge normalization ``betas_normal`` and ``betas_reduce`` (edges), are returned by
    :meth:`arch_parameters`; :meth:`weights` returns all other parameters. :attr:`sample` holds
    the op weights of the latest forward pass (a :class:`Sample`).
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
        space: str | Sequence[str] | None = None,
        drop_path_prob: float = 0.0,
        alpha_mean: float = 0.0,
        alpha_std: float = 1e-3,
    ):
        super().__init__()
        self.space = spaces_lib.get_space(
            space if space is not None else primitives or "PRIMITIVES"
        )
        self._space_bound = space is not None
        self.primitives, op_dict = resolve_ops(self.space.columns, op_dict)
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
        # Each edge's op names, the alphas' columns (read back by genotypes and logs).
        self._space_edges = {r: self.space.cell(r, num_edges(steps)) for r in (False, True)}
        shape = (num_edges(steps), self._alpha_columns())
        self.alphas_normal = nn.Parameter(alpha_mean + alpha_std * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(alpha_mean + alpha_std * torch.randn(shape))
        self.drop_path_prob = drop_path_prob
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
        self.sample = Sample()

    def _cell_primitives(self, reduction: bool) -> Sequence:
        """The ops of a cell's edges: one list for all, or one per edge (a per-edge space; a
        subclass may choose others, as ``nn.pdarts.PDartsNetwork``)."""
        if self.space.uniform:
            return self.primitives
        return self.space.cell(reduction, num_edges(self._steps))

    def _alpha_columns(self) -> int:
        """Columns of the alphas: ops per edge."""
        return self.space.width

    def _spread(self, weights: torch.Tensor, reduction: bool) -> torch.Tensor:
        """(edges, ops per edge) weights of a per-edge space spread over :attr:`primitives`
        (0 where an edge lacks the op); a uniform space's weights as they are."""
        if self.space.uniform:
            return weights
        columns = [
            [self.primitives.index(op) for op in ops] for ops in self._space_edges[reduction]
        ]
        index = torch.tensor(columns, device=weights.device)
        return weights.new_zeros(weights.shape[0], len(self.primitives)).scatter_(1, index, weights)

    @torch.no_grad()
    def logged_alphas(self) -> dict[str, list]:
        """The weights a search logs: the relaxation's readout (softmax, FairDARTS' sigmoid),
        masked after pruning (DrNAS), spread over :attr:`primitives` in a per-edge space, as
        float32 lists."""
        return {
            f"alphas_{half}": self._spread(
                self._masked(self.relaxation.readout(alphas.float()), half == "reduce"),
                half == "reduce",
            )
            .cpu()
            .tolist()
            for half, alphas in (("normal", self.alphas_normal), ("reduce", self.alphas_reduce))
        }

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
        return self._relaxed(op_weights)[0]

    def _relaxed(self, op_weights=None):
        """:meth:`relaxed`, and the op weights before the weighting scheme."""
        out, raw = [], []
        for i, alphas in enumerate((self.alphas_normal, self.alphas_reduce)):
            if op_weights is None:
                weights, index = self.relaxation.relax(alphas, self.tau)
                weights = self._masked(weights, reduction=i == 1)
            else:
                weights, index = op_weights[i], None
            raw.append(weights)
            out.append((self.weighting(weights), index))
        return tuple(out), raw

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
        (normal, reduce), raw = self._relaxed(op_weights)
        if not torch.compiler.is_compiling():  # a compiled weight step keeps no record
            self.sample = Sample(*raw, tuple(x.shape[-2:]))
        edges_normal, edges_reduce = self.edge_weights()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            (coefficients, index), edges = (
                (reduce, edges_reduce) if cell.reduction else (normal, edges_normal)
            )
            drop = {"drop_prob": self.drop_path_prob} if self.drop_path_prob else {}
            if index is None:
                s0, s1 = s1, cell(s0, s1, coefficients, edges, **drop)
            else:  # a hard sample: each edge runs its sampled op only
                s0, s1 = s1, cell(s0, s1, coefficients, edges, index, self.hard_all_weights, **drop)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))

    @torch.no_grad()
    def genotype(self, skip_primitive: str | None = "none") -> genotypes_lib.Genotype:
        """The cell genotype read from the relaxation's readout, softmax(alpha) but for
        FairDARTS's sigmoid (see genotypes.parse_cell).

        In a per-edge space the readout is spread over :attr:`primitives` first, 0 for the
        ops an edge lacks (never chosen: every readout is positive); each edge keeps its own
        order within them, so ties break as within the edge. With a ``space`` bound,
        ``skip_primitive`` is left out only if the space has it (RobustDARTS's
        ``Network.genotype``: 'none' is never chosen where an edge has it).

        With edge normalization each edge's row is scaled by its edge weight first (PC-DARTS:
        edges are ranked by ``beta * softmax(alpha)``; an edge's op choice is unchanged).
        """
        normal = self._spread(
            self._masked(self.relaxation.readout(self.alphas_normal), False), False
        )
        reduce = self._spread(self._masked(self.relaxation.readout(self.alphas_reduce), True), True)
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
            skip_primitive=(
                None
                if self._space_bound and skip_primitive not in self.primitives
                else skip_primitive
            ),
        )
