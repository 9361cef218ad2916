"""SNAS's resource costs of the supernet's ops: parameters, FLOPs and memory accesses.

SNAS (Xie et al., ICLR 2019) adds to its loss the cost of each edge's sampled op. Its code
(SNAS-Series/SNAS-Series @ 9a43adbdf90d4969b19e448c0d094091bc5efb4f, ``SNAS/operations.py``:
each op's ``size``, ``flops`` and ``mac``, read by ``model_search.MixedOp`` in the first forward
pass) counts three costs of an op mapping ``C`` channels to ``C`` whose output has side ``y``
(the input's side, halved and rounded down on a stride-2 edge):

- size: the op's convolution weights (batch norms not counted): ``2 C k^2 + 2 C^2`` for a
  separable k x k conv, ``C k^2 + C^2`` for a dilated one, ``C^2`` for the stride-2 skip (the
  factorized reduce), 0 for the pools, the identity and 'none';
- flops: ``size * y^2`` for the convolutions, ``9 C y^2`` for the 3x3 pools, 0 for the identity
  and 'none';
- mac (memory accesses): ``y^2 (a C + C) + size``, with ``a`` by op and stride: separable conv
  7 (stride 1) or 10 (stride 2), dilated conv 3 or 6, pool 1 or 4, identity 1, factorized
  reduce 8; 0 for 'none'.

Here the costs are counted from our own op modules (the size is their convolutions' weight
count), so that a supernet of other widths or partial channels gets its own.
tests/test_family_exact.py pins the tables against the authors' ``MixedOp``.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from sharpdarts.nn.ops import DilConv, FactorizedReduce, Identity, SharpSepConv, Zero

# ``a`` of the memory-access count, by op kind and stride (see the module docstring).
_MAC_INPUT_FACTOR = {
    ("sep", 1): 7,
    ("sep", 2): 10,
    ("dil", 1): 3,
    ("dil", 2): 6,
    ("pool", 1): 1,
    ("pool", 2): 4,
    ("skip", 1): 1,
    ("skip", 2): 8,
}
COSTS = ("size", "flops", "mac")


def _kind(op: nn.Module) -> tuple[str, int]:
    """The op's kind for the cost count, and its pool kernel (0 for the others)."""
    if isinstance(op, nn.Sequential) and isinstance(op[0], (nn.AvgPool2d, nn.MaxPool2d)):
        op = op[0]  # the search cell's pool, followed by a batch norm
    if isinstance(op, (nn.AvgPool2d, nn.MaxPool2d)):
        kernel = op.kernel_size if isinstance(op.kernel_size, int) else op.kernel_size[0]
        return "pool", kernel
    for cls, kind in (
        (Zero, "none"),
        (Identity, "skip"),
        (FactorizedReduce, "skip"),
        (SharpSepConv, "sep"),
        (DilConv, "dil"),
    ):
        if isinstance(op, cls):
            return kind, 0
    raise ValueError(
        f"SNAS's resource costs are known for DARTS's ops only (none, the 3x3 pools, "
        f"skip_connect, sep_conv, dil_conv), not for a {type(op).__name__}"
    )


def op_cost(op: nn.Module, channels: int, stride: int, side: tuple[int, int]) -> list[float]:
    """``[size, flops, mac]`` of one op of a mixed edge, as SNAS counts them.

    Args:
        op: the op module (built ``channels -> channels``).
        channels: its channels.
        stride: the edge's stride (1 or 2).
        side: ``(height, width)`` of the op's input.
    """
    kind, kernel = _kind(op)
    if kind == "none":
        return [0.0, 0.0, 0.0]
    pixels = (side[0] // stride) * (side[1] // stride)
    size = sum(m.weight.numel() for m in op.modules() if isinstance(m, nn.Conv2d))
    flops = kernel * kernel * channels * pixels if kind == "pool" else size * pixels
    mac = pixels * (_MAC_INPUT_FACTOR[kind, stride] * channels + channels) + size
    return [float(size), float(flops), float(mac)]


def cell_costs(cell: nn.Module, side: tuple[int, int]) -> torch.Tensor:
    """(edges, ops, 3) costs of a search cell's ops whose inputs have ``side``: the edges that
    read the cell's inputs see ``side``, the others, in a reduction cell, half of it."""
    rows = []
    for edge in cell._ops:
        edge_side = side if edge._stride == 2 or not cell.reduction else _half(side)
        channels = edge.channels // edge._partial
        rows.append([op_cost(op, channels, edge._stride, edge_side) for op in edge._ops])
    if len({len(r) for r in rows}) > 1:
        raise ValueError("the resource costs need the same ops on every edge of a cell")
    return torch.tensor(rows, dtype=torch.float64)


def _half(side: tuple[int, int]) -> tuple[int, int]:
    return side[0] // 2, side[1] // 2


def supernet_costs(
    model: nn.Module, image_size: tuple[int, int], like: torch.Tensor | None = None
) -> tuple[torch.Tensor, ...]:
    """``(normal, reduce)``: (cells, edges, ops, 3) costs of the normal and of the reduction
    cells of a ``SearchNetwork`` run on images of ``image_size`` (the stem keeps the side;
    every reduction cell halves it), float64 on the CPU or, given ``like``, of its dtype and
    device. Cached per network, image size, dtype and device, so that a search moves them to
    its device once, not every step."""
    cache = _CACHE.setdefault(model, {})
    dtype, device = (
        (torch.float64, torch.device("cpu")) if like is None else (like.dtype, like.device)
    )
    key = (tuple(image_size), dtype, device)
    if key not in cache:
        side, normal, reduce = tuple(image_size), [], []
        for cell in model.cells:
            (reduce if cell.reduction else normal).append(cell_costs(cell, side))
            if cell.reduction:
                side = _half(side)
        cache[key] = tuple(
            (torch.stack(c) if c else torch.zeros(0, 0, 0, 3, dtype=torch.float64)).to(
                device, dtype
            )
            for c in (normal, reduce)
        )
    return cache[key]


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
