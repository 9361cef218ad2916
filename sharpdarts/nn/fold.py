"""The mixing coefficient of a supernet op folded into the op's last batch norm: an
identical-math shortcut of the fast path (``cells.MixedOp``), like those of
:mod:`sharpdarts.nn.fast`.

``c * bn(h)`` is ``bn(h)`` with ``c`` as its affine weight (``c * gamma`` and ``c * beta``
when affine): the batch norm multiplies by its weight anyway, so the forward pass saves the
product and the backward pass the products ``grad * c`` and ``sum(grad * bn(h))`` (the
batch norm's weight gradient, summed over its channels, is ``c``'s), and the edge no longer
keeps ``bn(h)`` for the backward pass (batch norm keeps its input, as before): 0.77x the
peak memory of the DARTS supernet's step (benchmarks/README.md, "DARTS supernet beside xautodl's").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.nn import fast
from sharpdarts.nn.ops import FactorizedReduce


def _foldable(bn: nn.Module) -> bool:
    """Whether ``bn`` is a plain, unhooked 2-d batch norm (:func:`scaled_batch_norm` redoes
    its forward)."""
    return type(bn) is nn.BatchNorm2d and not fast.hooked(bn)


def scaled_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * bn(x)`` (``scale`` a 0-dim tensor) as ONE batch norm: the scale becomes the
    affine weight (times ``bn.weight``, and the shift ``scale * bn.bias``, when affine).

    The batch norm computes ``x_hat * weight`` anyway, so the product costs nothing in the
    forward pass, and the backward pass needs no product ``grad * scale`` nor
    ``sum(grad * bn(x))`` (the batch norm's weight gradient, summed over channels, is the
    scale's). Running statistics and ``num_batches_tracked`` are updated as
    ``nn.BatchNorm2d.forward`` does.
    """
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    else:
        factor = 0.0 if bn.momentum is None else bn.momentum
    use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    track = not bn.training or bn.track_running_stats
    # A copy: with an expanded (stride-0) weight, torch 2.14's CPU batch norm backward on a
    # channels-last input returns garbage input gradients (tests/test_fast.py shows it).
    weight = scale.expand(x.shape[1]).clone() if bn.weight is None else bn.weight * scale
    bias = None if bn.bias is None else bn.bias * scale
    few = fast.few_channels_last_on_cpu(x)
    out = F.batch_norm(
        x.contiguous() if few else x,
        bn.running_mean if track else None,
        bn.running_var if track else None,
        weight,
        bias,
        use_batch,
        factor,
        bn.eps,
    )
    return out.contiguous(memory_format=torch.channels_last) if few else out


def run_scaled(
    op: nn.Module, x: torch.Tensor, relu_x: fast.LazyReLU, scale: torch.Tensor
) -> torch.Tensor | None:
    """``scale * op(x)`` for an op that ends in a batch norm, with the scale folded into it
    (:func:`scaled_batch_norm`); None for any other op (or a hooked one), which the caller
    then runs itself. ``relu_x``: as in :func:`fast.run_shared`."""
    if fast.hooked(op):
        return None
    layers = fast.layers_of(op)
    if layers is not None:
        if len(layers) < 2 or not _foldable(layers[-1]):
            return None
        if fast.starts_with_relu(op):
            h = fast.run_layers(layers, relu_x(), start=1, stop=len(layers) - 1)
        else:
            h = fast.run_layers(layers, x, stop=len(layers) - 1)
        return scaled_batch_norm(layers[-1], h, scale)
    if type(op) is FactorizedReduce and fast.starts_with_relu(op) and _foldable(op.bn):
        h = fast.factorized_reduce_convs(op, relu_x())
        return None if h is None else scaled_batch_norm(op.bn, h, scale)
    return None
