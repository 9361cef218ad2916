"""NAS-Bench-201's search cell and the random draws of the methods that search that space.

In the supernet (``sharpdarts.nn.nb201.NB201SearchNetwork``) every cell edge holds all five
ops; one (6 x 5) ``alphas`` matrix, shared by all cells, is turned into op weights once per
forward by the method's relaxation, each made as its authors make it:

(the draws themselves are :mod:`sharpdarts.nn.relaxation`'s ``gumbel_hard``, ``dirichlet``
and ``gumbel_soft``):

- ``'darts'``: ``softmax(alphas)``, each edge ``sum(op(x) * w)`` (xautodl's
  ``GenericNAS201Model``, algorithm ``darts-v1``/``darts-v2``: cal mode ``joint``);
- ``'gdas'``: xautodl's GDAS. Gumbel noise ``-log(Exp(1))`` on ``log_softmax(alphas)``, over
  ``tau``, a softmax, then the straight-through one-hot ``one_hot - probs.detach() + probs``
  (drawn again while the noise or the probabilities hold an inf or a NaN). Each edge runs only
  the sampled op but adds the other ops' weights too (each 0 in value, a gradient path to its
  alpha), as the authors do: ``sum(w[k] * op_k(x) if k == sampled else w[k])``;
- ``'drnas'``: DrNAS's 201-space code (xiangning-chen/DrNAS). Each edge's weights are a
  reparameterised Dirichlet draw with concentration ``elu(alpha) + 1``, one ``rsample`` per
  edge row as there; partial channels (``partial_channels=K``: 1/K of the channels go through
  the ops, the rest pass by, then a channel shuffle); progressive pruning (``prune``);
- ``'snas'``: SNAS's soft Gumbel-softmax sample ``softmax((alphas + g) / tau)`` (its
  ``_get_categ_mask``), mixed as DARTS mixes (SNAS's authors have no code on this space);
- ``'pc_darts'``: PC-DARTS's ``MixedOp`` (partial channels, every op weighted by
  ``softmax(alphas)``, the zero op included, then the channel shuffle) and its edge
  normalisation: each node sums its edges' outputs weighted by a softmax of per-edge ``betas``
  over the node's incoming edges (PC-DARTS' authors have no code on this space either);
- ``'rsps'``: random search with weight sharing (Li & Talwalkar, UAI 2019) as xautodl's
  ``TinyNetworkRANDOM`` runs it: no architecture weights; each forward draws one cell
  uniformly (``random.choice`` of Python's global generator for each edge, in :data:`EDGES`
  order, as its ``random_genotype``) and each edge runs only its drawn op
  (``forward_dynamic``).

The first three follow their authors' code in its small structural differences too: xautodl's
search cells give each conv a bias when the BN has no affine, and its last BN takes the
``affine`` and ``track_running_stats`` of the cells; DrNAS's convs have no bias and its last BN
is affine. So each loads its authors' state dict key for key (``nb201.load_original_state_dict``).
"""

from __future__ import annotations

import operator
from functools import reduce

import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.core.nb201_arch import EDGES, NODES, OPS
from sharpdarts.nn.drnas import widen_op
from sharpdarts.nn.nb201_fused import darts_cell, fusable, relu_conv_bn
from sharpdarts.nn.nb201_ops import ReLUConvBN, Zero, make_op

METHODS = ("darts", "gdas", "drnas", "snas", "pc_darts", "rsps")
# The methods whose edges mix on partial channels (K = 1: all of them).
PARTIAL = ("drnas", "pc_darts")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleaves ``groups`` channel groups (PC-DARTS' shuffle, as DrNAS uses it)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class NB201SearchCell(nn.Module):
    """A search cell: ``edges['i<-j']`` holds the five ops of edge ``i <- j`` (xautodl's names).

    Args:
        C: the cell's width.
        method: one of :data:`METHODS` (how an edge mixes its ops).
        affine, track_running_stats: the ops' BN.
        bias: the convs' bias (see :class:`~sharpdarts.nn.nb201_ops.ReLUConvBN`).
        partial_channels: K; the ops see ``C // K`` channels ('drnas' and 'pc_darts' only).

    ``fused`` (True): 'darts' and 'snas' compute their mixture per source node
    (:func:`~sharpdarts.nn.nb201_fused.darts_cell`) and 'gdas' folds a sampled conv's weight
    into its BN (:func:`~sharpdarts.nn.nb201_fused.relu_conv_bn`): the same sums up to
    rounding, faster. False: per edge, as the authors write it.
    """

    fused = True

    def __init__(
        self,
        C: int,
        method: str,
        affine: bool,
        track_running_stats: bool,
        bias: bool,
        partial_channels: int = 1,
    ):
        super().__init__()
        self.method = method
        self.C = C
        self.k = partial_channels
        width = C // partial_channels
        self.edges = nn.ModuleDict(
            {
                f"{i}<-{j}": nn.ModuleList(
                    make_op(op, width, affine, track_running_stats, bias) for op in OPS
                )
                for i, j in EDGES
            }
        )

    def wider(self, partial_channels: int, growth: dict) -> None:
        """DrNAS's ``wider``: a smaller K; every op widens to ``C // K`` (edges and ops in
        order, each conv drawing its copied channels; ``nn.drnas.widen_op``), ``growth``
        collecting how each parameter grew."""
        self.k = partial_channels
        for ops in self.edges.values():
            for op in ops:
                widen_op(op, self.C // partial_channels, growth)

    def forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        choice: list,
        edge_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``weights``: (6, 5) op weights; ``choice``: per edge, the sampled op (GDAS, RSPS) or
        the ops whose weight is not 0 (DrNAS), else unused; ``edge_weights``: (6,) PC-DARTS edge
        normalisation's weights of the edges' outputs, or None."""
        if self.method in ("darts", "snas") and self.fused and fusable(self.edges):
            return darts_cell(self.edges, x, weights)
        nodes = [x]
        for i in range(1, NODES):
            total = None
            for e, (node, j) in enumerate(EDGES):
                if node != i:
                    continue
                out = self._edge(self.edges[f"{i}<-{j}"], nodes[j], weights[e], choice[e])
                if edge_weights is not None:  # PC-DARTS: sum(edge_weight * edge_output)
                    out = out * edge_weights[e]
                # Not sum(): its first term, 0 + tensor, would be one more pass.
                total = out if total is None else total + out
            nodes.append(total)
        return nodes[-1]

    def _edge(self, ops: nn.ModuleList, x: torch.Tensor, w: torch.Tensor, choice) -> torch.Tensor:
        if self.method == "rsps":  # xautodl forward_dynamic: the drawn op alone, unweighted
            return ops[choice](x)
        if self.method == "gdas":  # xautodl forward_gdas: one op runs, every weight is added
            # The other weights (0 in value) are summed as scalars first, then one addcmul.
            others = reduce(operator.add, (w[k] for k in range(len(ops)) if k != choice))
            op = ops[choice]
            if self.fused and isinstance(op, ReLUConvBN) and op.op[2].momentum is not None:
                return relu_conv_bn([op], F.relu(x), [w[choice]], others)
            return torch.addcmul(others, op(x), w[choice])
        if self.method in PARTIAL:  # DrNAS NAS201SearchCell_PartialChannel.MixedOp, which
            # is PC-DARTS's MixedOp (model_search.py) but for the ops pruned away (DrNAS)
            part = x[:, : x.shape[1] // self.k]
            out = sum(w[k] * op(part) for k, op in enumerate(ops) if choice is None or choice[k])
            if self.k == 1:
                return out
            return channel_shuffle(torch.cat([out, x[:, x.shape[1] // self.k :]], dim=1), self.k)
        # xautodl forward_joint (DARTS; SNAS weights its ops alike), without 'none': its term,
        # op(x) * w = 0 * x * w, adds exactly 0.
        return sum(op(x) * w[k] for k, op in enumerate(ops) if not isinstance(op, Zero))
