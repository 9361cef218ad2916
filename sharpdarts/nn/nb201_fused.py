"""The DARTS mixture of a NAS-Bench-201 search cell, computed per source node instead of per
edge, and the ReLU-conv-BN with its op weight folded into the BN (also GDAS's sampled conv).

The same sums as the per-edge mixture (``NB201SearchCell._edge``, xautodl's ``forward_joint``),
up to float rounding, in far fewer kernels:

- every edge leaving a node shares that node's ReLU, its 3x3 average pool and its identity;
- the 3x3 convs of all edges leaving a node are ONE conv (their kernels concatenated along the
  output channels), and so are the 1x1 convs: each output channel depends only on its own
  kernel, and BN normalises each channel alone, so one BN over the concatenated channels (with
  the ops' running statistics concatenated, then written back) is each op's BN;
- the op weight multiplies the BN's affine weight (a per-channel scale) instead of its output;
- the zero op's term (``op(x) * w``, zeros) is left out, as in the per-edge mixture;
- each node's sum is accumulated in place (``addcmul_``, ``add_``) into one tensor.

GDAS's sampled conv uses :func:`relu_conv_bn` alone: its weight, and the other ops' weights
(0 in value, added for their gradients), become the BN's scale and shift.

The conv and BN parameters stay in the ops' own modules (the authors' state-dict keys); only
the forward changes. A BN whose ``momentum`` is None (a cumulative average) is not fused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.core.nb201_arch import EDGES, NODES, OPS

SKIP, CONV_1X1, CONV_3X3, POOL = (
    OPS.index(name) for name in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
)


def fusable(edges: nn.ModuleDict) -> bool:
    """Whether every conv op's BN keeps an exponential running average (or none): a BN with
    ``momentum=None`` (a cumulative average) is left to its module."""
    return all(
        ops[k].op[2].momentum is not None for ops in edges.values() for k in (CONV_1X1, CONV_3X3)
    )


def relu_conv_bn(
    ops: list[nn.Module],
    relu_x: torch.Tensor,
    scales: list[torch.Tensor],
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """``cat([scale * op(x) (+ shift) for op, scale])`` along channels for ReLU-conv-BN ops of
    one input (``relu_x``: the ReLU already applied), as one conv and one BN.

    Args:
        ops: :class:`~sharpdarts.nn.nb201_ops.ReLUConvBN` ops of one width, stride and BN kind.
        relu_x: ``relu(x)``.
        scales: one 0-dim tensor per op, its output's weight.
        shift: None, or a 0-dim tensor added to every output (one op only; GDAS's other
            weights), folded into the BN's shift.
    """
    convs = [op.op[1] for op in ops]
    bns = [op.op[2] for op in ops]
    first, conv = bns[0], convs[0]
    weight = torch.cat([c.weight for c in convs]) if len(convs) > 1 else conv.weight
    bias = None
    if conv.bias is not None:
        bias = torch.cat([c.bias for c in convs]) if len(convs) > 1 else conv.bias
    out = F.conv2d(relu_x, weight, bias, conv.stride, conv.padding)

    # w * (gamma * x_hat + beta) + shift: the BN's affine becomes (w * gamma, w * beta + shift).
    width = first.num_features
    scale = torch.cat([s.expand(width) for s in scales])
    bn_bias = None if shift is None else shift.expand(width)
    if first.affine:
        scale = scale * torch.cat([bn.weight for bn in bns])
        beta = torch.cat([s * bn.bias for s, bn in zip(scales, bns)])
        bn_bias = beta if bn_bias is None else beta + bn_bias
    # nn.BatchNorm2d's own bookkeeping, for all the ops at once.
    factor = first.momentum
    if first.training and first.track_running_stats:
        for bn in bns:
            bn.num_batches_tracked.add_(1)
    track = first.running_mean is not None
    running_mean = torch.cat([bn.running_mean for bn in bns]) if track else None
    running_var = torch.cat([bn.running_var for bn in bns]) if track else None
    use_batch = first.training or first.running_mean is None
    out = F.batch_norm(out, running_mean, running_var, scale, bn_bias, use_batch, factor, first.eps)
    if track and use_batch:  # the updated statistics back into each op's BN
        with torch.no_grad():
            for bn, mean, var in zip(bns, running_mean.split(width), running_var.split(width)):
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
    return out


def darts_cell(edges: nn.ModuleDict, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The cell's output node for input ``x`` and (6, 5) op weights ``weights``.

    Args:
        edges: the cell's ``edges['i<-j']`` (each the five ops in :data:`OPS` order).
        x: the input (node 0).
        weights: the op weights, edges in :data:`EDGES` order.
    """
    nodes = [x]
    sums: dict[int, torch.Tensor] = {}
    for j in range(NODES - 1):
        source = nodes[j]
        outgoing = [(e, i) for e, (i, src) in enumerate(EDGES) if src == j]
        relu_x = F.relu(source)
        pooled = edges[f"{outgoing[0][1]}<-{j}"][POOL](source)
        for e, i in outgoing:
            w = weights[e]
            if i in sums:
                sums[i].addcmul_(source, w[SKIP])
            else:  # a new tensor: the node's sum is built in place from here on
                sums[i] = source * w[SKIP]
            sums[i].addcmul_(pooled, w[POOL])
        for k in (CONV_3X3, CONV_1X1):
            out = relu_conv_bn(
                [edges[f"{i}<-{j}"][k] for _, i in outgoing],
                relu_x,
                [weights[e, k] for e, _ in outgoing],
            )
            # split, not slicing: its backward is one cat (a slice's is zeros plus a copy).
            for part, (_, i) in zip(out.split(out.shape[1] // len(outgoing), dim=1), outgoing):
                sums[i].add_(part)
        nodes.append(sums.pop(j + 1))
    return nodes[-1]
