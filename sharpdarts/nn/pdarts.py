"""P-DARTS's supernet options: each edge its own ops, dropout on skip connections.

P-DARTS (Chen et al., ICCV 2019; chenxin061/pdarts ``model_search.py``) searches in stages
(``engine.stages``). Between stages every edge drops its weakest ops, so each edge keeps its own
op list (their ``switches``) and the alphas have one column per op the edge still has (the
same count on every edge). A skip connection of stride 1 is followed by a dropout, whose rate
the stages set each epoch. docs/family.md gives the sources.

- :class:`PDartsNetwork`: ``SearchNetwork`` with ``edge_ops`` (each edge's ops),
  ``skip_dropout`` (the rate; 0 builds no dropout, as their ``p > 0`` test) and
  ``max_skips`` (the genotype rule's cap, ``derivation.pdarts_cell``).
- :func:`drop_ops`: the ops each edge keeps for the next stage, from its op weights.
"""

from __future__ import annotations

from typing import Sequence

import gin
import numpy as np
import torch
from torch import nn

from sharpdarts.core import validate
from sharpdarts.nn import derivation as derivation_lib
from sharpdarts.nn.cells import num_edges
from sharpdarts.nn.models import SearchNetwork
from sharpdarts.nn.ops import Identity

EdgeOps = dict[str, list[list[str]]]  # {'normal': [ops of edge 0, ...], 'reduce': [...]}
HALVES = ("normal", "reduce")


def drop_ops(edge_ops: Sequence[Sequence[str]], weights, keep: int) -> list[list[str]]:
    """The ops each edge keeps: its ``keep`` strongest, in their order.

    Their ``get_min_k``: the weakest op is dropped first, then the next (the first of equal
    weights first), until ``keep`` are left.

    Args:
        edge_ops: each edge's ops, the columns of ``weights``.
        weights: (edges, ops per edge) op weights, softmax(alpha) in P-DARTS.
        keep: ops each edge keeps.
    """
    weights = np.asarray(weights, dtype=np.float64)
    kept = []
    for ops, row in zip(edge_ops, weights):
        if not 0 < keep <= len(ops):
            raise ValueError(f"an edge of {len(ops)} ops cannot keep {keep}")
        dropped = set(np.argsort(row, kind="stable")[: len(ops) - keep].tolist())
        kept.append([op for k, op in enumerate(ops) if k not in dropped])
    return kept


@gin.configurable
@validate.params(
    skip_dropout=validate.PROBABILITY,
    max_skips=validate.Int("an integer >= 0", low=0).or_none(),
)
class PDartsNetwork(SearchNetwork):
    """The P-DARTS supernet: :class:`~sharpdarts.nn.models.SearchNetwork` whose edges each have
    their own ops, with dropout after the stride-1 skip connections.

    Args:
        *args, **kwargs: :class:`~sharpdarts.nn.models.SearchNetwork`'s.
        edge_ops: ``{'normal': [...], 'reduce': [...]}``, each edge's ops (a subset of the
            primitives, in their order; the same count on every edge), or None: every
            primitive on every edge (the first stage).
        skip_dropout: the dropout rate after each stride-1 skip connection; 0 builds none
            (the rate can change later, :attr:`skip_dropout`, only where one was built).
        max_skips: the most skip connections of the normal cell's genotype (P-DARTS: 2), for
            the 'pdarts' derivation; None: no cap.
        derivation: the genotype rule ('pdarts').

    The alphas have one column per op of an edge; genotypes and the logged weights spread
    them over all primitives, with 0 for the ops an edge no longer has.
    """

    def __init__(
        self,
        *args,
        edge_ops: EdgeOps | None = None,
        skip_dropout: float = 0.0,
        max_skips: int | None = 2,
        derivation: str = "pdarts",
        **kwargs,
    ):
        # The cells are built inside SearchNetwork's constructor, which asks for their ops.
        self._edge_ops_given = edge_ops
        super().__init__(*args, derivation=derivation, **kwargs)
        self.max_skips = max_skips
        self.edge_ops = self._checked_edge_ops(edge_ops)
        del self._edge_ops_given
        self._skip_dropout = float(skip_dropout)
        if skip_dropout > 0:
            for module in self.modules():
                ops = getattr(module, "_ops", None)
                if isinstance(ops, nn.ModuleList):
                    for k, op in enumerate(ops):
                        if type(op) is Identity:  # stride 1 only: stride 2 is FactorizedReduce
                            ops[k] = nn.Sequential(op, nn.Dropout(skip_dropout))

    def _checked_edge_ops(self, edge_ops: EdgeOps | None) -> EdgeOps:
        edges = num_edges(self._steps)
        if edge_ops is None:  # the space's ops (every primitive on every edge, but in nn.spaces's)
            return {half: self.space.cell(half == "reduce", edges) for half in HALVES}
        checked = {}
        for half in HALVES:
            rows = [list(ops) for ops in edge_ops[half]]
            if len(rows) != edges or len({len(ops) for ops in rows}) != 1:
                raise ValueError(
                    f"edge_ops['{half}'] needs {edges} op lists of one length, got "
                    f"{[len(ops) for ops in rows]}"
                )
            for ops in rows:
                if [p for p in self.primitives if p in ops] != ops:
                    raise ValueError(
                        f"edge_ops['{half}'] has {ops}: not primitives in their order "
                        f"{self.primitives}"
                    )
            checked[half] = rows
        return checked

    def _cell_primitives(self, reduction: bool) -> Sequence:
        if self._edge_ops_given is None:
            return super()._cell_primitives(reduction)
        return [list(ops) for ops in self._edge_ops_given["reduce" if reduction else "normal"]]

    def _alpha_columns(self) -> int:
        if self._edge_ops_given is None:
            return super()._alpha_columns()
        return len(self._edge_ops_given["normal"][0])

    @property
    def skip_dropout(self) -> float:
        """The skip connections' dropout rate; setting it sets every dropout's rate (their
        ``update_p``)."""
        return self._skip_dropout

    @skip_dropout.setter
    def skip_dropout(self, rate: float) -> None:
        self._skip_dropout = float(rate)
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = float(rate)

    @torch.no_grad()
    def full_weights(self) -> dict[str, torch.Tensor]:
        """``{'normal', 'reduce'}``: the relaxation's readout spread over all primitives
        (edges x primitives), 0 for the ops an edge no longer has."""
        out = {}
        for half, alphas in zip(HALVES, (self.alphas_normal, self.alphas_reduce)):
            readout = self.relaxation.readout(alphas)
            full = readout.new_zeros(readout.shape[0], len(self.primitives))
            for e, ops in enumerate(self.edge_ops[half]):
                full[e, [self.primitives.index(op) for op in ops]] = readout[e]
            out[half] = full
        return out

    def logged_alphas(self) -> dict[str, list]:
        """The weights a search logs (``alphas_normal``, ``alphas_reduce``), all primitives wide
        so that every stage's rows line up."""
        return {f"alphas_{h}": w.float().cpu().tolist() for h, w in self.full_weights().items()}

    @torch.no_grad()
    def genotype(self, skip_primitive: str | None = "none"):
        """The cell genotype of :meth:`full_weights` by the derivation rule; the 'pdarts' rule
        caps the normal cell's skip connections at ``max_skips``."""
        weights = self.full_weights()
        edges_normal, edges_reduce = self.edge_weights()
        if edges_normal is not None:
            weights = {
                "normal": weights["normal"] * edges_normal[:, None],
                "reduce": weights["reduce"] * edges_reduce[:, None],
            }
        options = {"max_skips": self.max_skips} if self.derivation == "pdarts" else None
        return derivation_lib.derive(
            self.derivation,
            weights["normal"].cpu().numpy(),
            weights["reduce"].cpu().numpy(),
            self.primitives,
            steps=self._steps,
            multiplier=self._multiplier,
            skip_primitive=skip_primitive,
            normal_options=options,
        )
