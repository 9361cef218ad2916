"""Cells: the mixed op and search cell of the supernet, and the fixed cell of a genotype."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from sharpdarts.ops import FactorizedReduce, Identity, ReLUConvBN, Zero


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zeroes whole samples with probability ``drop_prob`` and rescales the rest.

    A per-sample Bernoulli keep mask, output divided by the keep probability.
    """
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x.div(keep).mul(mask)


class MixedOp(nn.Module):
    """One edge of the supernet: every primitive applied to the input, mixed by coefficients.

    Ops are built C -> C with ``affine=False``; pools get a non-affine BN after them, as in
    the original search network. The zero op's term is known to be zero, so it is skipped.
    """

    def __init__(self, C: int, stride: int, primitives: Sequence[str], op_dict: dict):
        super().__init__()
        self._ops = nn.ModuleList()
        for primitive in primitives:
            op = op_dict[primitive](C, C, stride, False)
            if "pool" in primitive:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)
        self._computed = [i for i, op in enumerate(self._ops) if not isinstance(op, Zero)]

    def forward(self, x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        if not self._computed:  # an edge of zero ops only
            return self._ops[0](x)
        out = None
        for i in self._computed:
            term = coefficients[i] * self._ops[i](x)
            out = term if out is None else out + term
        return out


def num_edges(steps: int) -> int:
    """Edges of a cell with ``steps`` intermediate nodes (node i has i + 2 inputs)."""
    return sum(2 + i for i in range(steps))


class SearchCell(nn.Module):
    """A cell of the supernet: every node sums mixed ops over all earlier states."""

    def __init__(self, steps: int, multiplier: int, C_prev_prev: int, C_prev: int, C: int,
                 reduction: bool, reduction_prev: bool, primitives: Sequence[str], op_dict: dict):
        super().__init__()
        self.reduction = reduction
        self._steps = steps
        self._multiplier = multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._ops = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self._ops.append(MixedOp(C, stride, primitives, op_dict))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """Args: s0, s1: the two previous cells' outputs; coefficients: (edges, ops)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            s = sum(self._ops[offset + j](h, coefficients[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier:], dim=1)


class Cell(nn.Module):
    """A fixed cell built from one half (normal or reduce) of a genotype.

    Args:
        ops: ``(op_name, input_index)`` pairs, two per intermediate node.
        concat: the states concatenated into the output.
        C_prev_prev, C_prev, C: channels of the two inputs and of every node.
        reduction: this cell halves the resolution (stride 2 on edges from inputs 0 and 1).
        reduction_prev: the previous cell reduced, so input 0 is factorised down.
        op_dict: the op table.
        C_mid: middle width of the choke ops.
        name: names the genotype in error messages.
    """

    def __init__(self, ops: Sequence, concat: Sequence[int], C_prev_prev: int, C_prev: int,
                 C: int, reduction: bool, reduction_prev: bool, op_dict: dict,
                 C_mid: int | None = None, name: str = "genotype"):
        super().__init__()
        self.reduction = reduction
        if len(ops) % 2 or not ops:
            raise ValueError(f"{name}: a cell needs two (op, input) entries per node, got {len(ops)}")
        self._steps = len(ops) // 2
        for k, entry in enumerate(ops):
            op_name, index = entry
            if op_name not in op_dict:
                raise ValueError(f"{name}: entry {k} {tuple(entry)} names op '{op_name}', which is "
                                 f"not in the op table {getattr(op_dict, 'name', '')}".rstrip())
            if not 0 <= int(index) < 2 + k // 2:
                raise ValueError(f"{name}: entry {k} {tuple(entry)} reads input {index}, but node "
                                 f"{k // 2} can only read inputs 0..{1 + k // 2}")
        for i in concat:
            if not 0 <= int(i) < 2 + self._steps:
                raise ValueError(f"{name}: concat index {i} is out of range 0..{1 + self._steps}")
        self._concat = [int(i) for i in concat]
        self.multiplier = len(self._concat)
        self._indices = [int(index) for _, index in ops]
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, stride=2)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        self._ops = nn.ModuleList()
        for op_name, index in ops:
            stride = 2 if reduction and index < 2 else 1
            self._ops.append(op_dict[op_name](C, C, stride, True, C_mid))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            total = 0
            for k in (2 * i, 2 * i + 1):
                op = self._ops[k]
                h = op(states[self._indices[k]])
                if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self._concat], dim=1)
