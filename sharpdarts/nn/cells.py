"""Cells: the mixed op and search cell of the supernet, and the fixed cell of a genotype.

Their ``forward`` is the fast path (the :mod:`sharpdarts.nn.fast` shortcuts). The original
code's computation of each, the yardstick, is in :mod:`sharpdarts.nn.reference`;
``set_reference_path(model)`` (importable from here too) switches a model over to it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.nn import fast, fold
from sharpdarts.nn.ops import FactorizedReduce, Identity, ReLUConvBN, Zero, channel_shuffle

# The original computations live in the reference module; these names stay importable here.
from sharpdarts.registry import unknown_name


def fast_drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """``ops.drop_path`` in one pass over ``x`` (the same mask; equal within rounding)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask.div_(keep)


def edge_softmax(betas: torch.Tensor, steps: int) -> torch.Tensor:
    """PC-DARTS edge normalization: a softmax of the per-edge betas over each node's inputs.

    Args:
        betas: (edges,) parameters, ordered node by node (node i has i + 2 edges).
        steps: intermediate nodes.

    Returns:
        (edges,) weights that sum to one over the inputs of each node.
    """
    parts, start = [], 0
    for i in range(steps):
        parts.append(F.softmax(betas[start : start + 2 + i], dim=-1))
        start += 2 + i
    return torch.cat(parts)


class MixedOp(nn.Module):
    """One edge of the supernet: every primitive applied to the input, mixed by coefficients.

    Ops are built C -> C with ``affine=False``; pools get a non-affine BN after them, as in
    the original search network.

    ``forward`` is the fast path: the zero op's term is known to be zero and is skipped; the
    ops that begin with a ReLU share one ``relu(x)`` (one per state in a cell, shared by all
    its edges); the ops run through the ``fast`` shortcuts; the weighted terms are
    accumulated in place, into the node's running sum when the cell passes one. It equals
    the original DARTS expression, ``reference.mixed_op_forward`` (``sum(c_i * op_i(x))``
    over every op, the zero op included), as tests/test_cells.py pins.

    Args:
        C: channels of the edge.
        stride: 2 on the edges of a reduction cell that read the cell's inputs.
        primitives: op names.
        op_dict: the op table.
        partial_channels: PC-DARTS partial channel connections (changes the math, on
            purpose): only the first ``C // K`` channels go through the ops (built with
            ``C // K`` channels); the rest bypass them (max-pooled 2x2 on stride-2 edges),
            and the concatenation is channel-shuffled with ``K`` groups. 1: off.

    A hard sample (GDAS) passes ``index``, the one op to run: the edge outputs
    ``c[index] * op_index(x)``, as GDAS's DARTS-space mixed op (``forward_gdas``); with
    ``all_weights`` every other op's coefficient is added as a scalar too (zero in value under
    the straight-through estimator, but its gradient flows), as GDAS's NAS-Bench-201 cell.

    DARTS-'s auxiliary skip (``nn.auxiliary_skip.attach``) sets ``auxiliary_op`` and
    ``auxiliary``: the edge then adds ``beta * auxiliary_op(x)`` to its output.
    """

    auxiliary = None  # DARTS-'s shared skip coefficient, when nn.auxiliary_skip attaches one

    def __init__(
        self,
        C: int,
        stride: int,
        primitives: Sequence[str],
        op_dict: dict,
        partial_channels: int = 1,
    ):
        super().__init__()
        if partial_channels < 1 or C % partial_channels:
            raise ValueError(
                f"partial_channels must divide the channels: C={C}, "
                f"partial_channels={partial_channels}"
            )
        self.channels = C
        self._stride = stride
        self._partial = partial_channels
        C_op = C // partial_channels
        self.primitives = list(primitives)  # the op names, in the coefficients' order
        self._ops = nn.ModuleList()
        for primitive in primitives:
            op = op_dict[primitive](C_op, C_op, stride, False)
            if "pool" in primitive:
                op = nn.Sequential(op, nn.BatchNorm2d(C_op, affine=False))
            self._ops.append(op)
        self._computed = [i for i, op in enumerate(self._ops) if not isinstance(op, Zero)]

    def run_only(self, kept: Sequence[bool] | None) -> None:
        """Runs only the ops marked in ``kept`` (None: all): DrNAS's pruned ops, whose weight
        is 0, are skipped as their ``if not w == 0`` skips them (``nn.drnas``)."""
        self._computed = [
            i
            for i, op in enumerate(self._ops)
            if not isinstance(op, Zero) and (kept is None or kept[i])
        ]

    def set_partial_channels(self, partial_channels: int) -> None:
        """A new K (DrNAS's widening, ``nn.drnas``; the caller widens the ops to match)."""
        if self.channels % partial_channels:
            raise ValueError(f"partial_channels {partial_channels} must divide {self.channels}")
        self._partial = partial_channels

    def forward(
        self,
        x: torch.Tensor,
        coefficients: torch.Tensor,
        out: torch.Tensor | None = None,
        relu_x: fast.LazyReLU | None = None,
        index: int | None = None,
        all_weights: bool = False,
    ) -> torch.Tensor:
        """``sum_i coefficients[i] * op_i(x)`` (with partial channels: see the class).

        Args:
            x: the input state.
            coefficients: (ops,) mixing coefficients.
            out: fast path without partial channels: a running sum (the cell's node sum)
                that the terms are added to in place, and returned. It must be a tensor
                that no one else holds.
            relu_x: fast path: a ``fast.LazyReLU(x)`` shared with other edges reading ``x``.
            index: a hard sample's op, the only one run (see the class); None: every op.
            all_weights: with ``index``, add the other ops' coefficients as scalars.
        """
        if index is not None:
            y = self._hard(x, coefficients, index, all_weights, out, relu_x)
        elif self._partial > 1:
            y = self._partial_forward(x, coefficients)
        else:
            y = self._mix(x, coefficients, out, relu_x)
        if self.auxiliary is not None:
            y = self.auxiliary(x, y, self.auxiliary_op)
        return y

    def _hard(self, x, coefficients, index, all_weights, out, relu_x) -> torch.Tensor:
        if self._partial > 1:
            raise ValueError("a hard sample (GDAS) runs one op; partial channels are not supported")
        op = self._ops[index]
        y = op(x) if isinstance(op, Zero) else fast.run_shared(op, x, relu_x or fast.LazyReLU(x))
        out = y * coefficients[index] if out is None else out.addcmul_(y, coefficients[index])
        if all_weights:
            for j in range(len(self._ops)):
                if j != index:
                    out = out.add_(coefficients[j])
        return out

    def _mix(
        self,
        x: torch.Tensor,
        coefficients: torch.Tensor,
        out: torch.Tensor | None = None,
        relu_x: fast.LazyReLU | None = None,
    ) -> torch.Tensor:
        if not self._computed:  # an edge of zero ops only
            return self._ops[0](x) if out is None else out
        if relu_x is None:
            relu_x = fast.LazyReLU(x)
        for i in self._computed:
            # An op ending in a batch norm takes its coefficient as the norm's scale.
            y = fold.run_scaled(self._ops[i], x, relu_x, coefficients[i])
            if y is not None:
                out = y if out is None else out.add_(y)
                continue
            y = fast.run_shared(self._ops[i], x, relu_x)
            if out is None:
                out = y * coefficients[i]
            else:
                # In place: ``out`` is a sum this edge owns (not saved for anyone's backward).
                out = out.addcmul_(y, coefficients[i])
        return out

    def _partial_forward(self, x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        K = self._partial
        c_op = x.shape[1] // K
        through, bypass = x[:, :c_op], x[:, c_op:]
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # One copy of the channel slice, rather than one in every op that reads it.
            through = through.contiguous(memory_format=torch.channels_last)
        mixed = self._mix(through, coefficients)
        if self._stride == 2:
            bypass = F.max_pool2d(bypass, 2, 2)
        out = fast.partial_channel_output(mixed, bypass, K)
        if out is not None:
            return out
        return channel_shuffle(torch.cat([mixed, bypass], dim=1), K)


def num_edges(steps: int) -> int:
    """Edges of a cell with ``steps`` intermediate nodes (node i has i + 2 inputs)."""
    return sum(2 + i for i in range(steps))


class SearchCell(nn.Module):
    """A cell of the supernet: every node sums mixed ops over all earlier states.

    ``primitives`` names every edge's ops, or is a list of one op list per edge (P-DARTS gives
    each edge its own ops, ``nn.pdarts``). ``partial_channels`` is passed to every
    :class:`MixedOp`. With edge weights (PC-DARTS edge normalization) each edge's output is
    scaled by its weight before the node sum. With ``drop_prob`` (SNAS's search) each edge's
    output goes through drop path first, in training mode, a mask per edge in edge order.
    """

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        primitives: Sequence[str],
        op_dict: dict,
        partial_channels: int = 1,
    ):
        super().__init__()
        self.reduction = reduction
        self._steps = steps
        self._multiplier = multiplier
        self._partial = partial_channels
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._ops = nn.ModuleList()
        per_edge = bool(primitives) and not isinstance(primitives[0], str)
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                ops = primitives[len(self._ops)] if per_edge else primitives
                self._ops.append(MixedOp(C, stride, ops, op_dict, partial_channels))

    def set_partial_channels(self, partial_channels: int) -> None:
        """A new K for every edge (DrNAS's widening, ``nn.drnas``)."""
        self._partial = partial_channels
        for mixed in self._ops:
            mixed.set_partial_channels(partial_channels)

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        coefficients: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
        all_weights: bool = False,
        drop_prob: float = 0.0,
    ) -> torch.Tensor:
        """Args: s0, s1: the two previous cells' outputs; coefficients: (edges, ops);
        edge_weights: (edges,) or None; index: (edges, 1) a hard sample's op per edge, or
        None (see :class:`MixedOp`); all_weights: see :class:`MixedOp`; drop_prob: drop path
        on each edge's output in training mode (0: none)."""
        states = [fast.run(self.preprocess0, s0), fast.run(self.preprocess1, s1)]
        relus = [fast.LazyReLU(h) for h in states]  # one ReLU per state, for all its edges
        # The sampled ops, read once per cell (one host synchronisation, not one per edge).
        picks = None if index is None else index.flatten().tolist()
        drop = self.training and drop_prob > 0.0
        offset = 0
        for _ in range(self._steps):
            if drop:  # each edge's own output, dropped, then summed
                s = None
                for j, h in enumerate(states):
                    k = offset + j
                    pick = None if picks is None else picks[k]
                    y = self._ops[k](h, coefficients[k], None, relus[j], pick, all_weights)
                    y = fast_drop_path(y, drop_prob)
                    if edge_weights is not None:
                        y = y * edge_weights[k]
                    s = y if s is None else s + y
            elif picks is not None:
                s = None
                for j, h in enumerate(states):
                    k = offset + j
                    s = self._ops[k](h, coefficients[k], s, relus[j], picks[k], all_weights)
            elif edge_weights is None and self._partial == 1:
                # Every edge adds its terms straight into the node's sum.
                s = None
                for j, h in enumerate(states):
                    s = self._ops[offset + j](h, coefficients[offset + j], s, relus[j])
            else:
                s = None
                for j, h in enumerate(states):
                    y = self._ops[offset + j](h, coefficients[offset + j])
                    if edge_weights is None:
                        s = y if s is None else s + y
                    else:
                        s = (
                            y * edge_weights[offset + j]
                            if s is None
                            else s.addcmul_(y, edge_weights[offset + j])
                        )
            offset += len(states)
            states.append(s)
            relus.append(fast.LazyReLU(s))
        return fast.cat_channels(states[-self._multiplier :])


def check_op(op_dict: dict, op_name: str, what: str) -> None:
    """Raises ValueError when ``op_name`` is not in ``op_dict``; ``what`` names the genotype
    entry that asked for it, as the error message starts."""
    if op_name not in op_dict:
        table = getattr(op_dict, "name", "")
        unknown = unknown_name("op", op_name, op_dict, where=f"in {table}" if table else "")
        raise ValueError(f"{what} names op '{op_name}'. {unknown}")


def fixed_preprocessing(
    C_prev_prev: int, C_prev: int, C: int, reduction_prev: bool
) -> tuple[nn.Module, nn.Module]:
    """A fixed cell's two input projections to ``C`` channels (DARTS's and FairDARTS's
    ``preprocess0`` and ``preprocess1``): input 0 factorised down after a reduction."""
    if reduction_prev:
        return FactorizedReduce(C_prev_prev, C, stride=2), ReLUConvBN(C_prev, C, 1, 1, 0)
    return ReLUConvBN(C_prev_prev, C, 1, 1, 0), ReLUConvBN(C_prev, C, 1, 1, 0)


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

    Like :class:`MixedOp`, its ``forward`` is the fast path (``fast`` shortcuts, one shared
    ReLU per state, one-pass drop path), equal to the original code's
    ``reference.cell_forward``.
    """

    def __init__(
        self,
        ops: Sequence,
        concat: Sequence[int],
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        op_dict: dict,
        C_mid: int | None = None,
        name: str = "genotype",
    ):
        super().__init__()
        self.reduction = reduction
        if len(ops) % 2 or not ops:
            raise ValueError(
                f"{name}: a cell needs two (op, input) entries per node, got {len(ops)}"
            )
        self._steps = len(ops) // 2
        for k, entry in enumerate(ops):
            op_name, index = entry
            check_op(op_dict, op_name, f"{name}: entry {k} {tuple(entry)}")
            if not 0 <= int(index) < 2 + k // 2:
                raise ValueError(
                    f"{name}: entry {k} {tuple(entry)} reads input {index}, but node "
                    f"{k // 2} can only read inputs 0..{1 + k // 2}"
                )
        for i in concat:
            if not 0 <= int(i) < 2 + self._steps:
                raise ValueError(f"{name}: concat index {i} is out of range 0..{1 + self._steps}")
        self._concat = [int(i) for i in concat]
        self.multiplier = len(self._concat)
        self._indices = [int(index) for _, index in ops]
        self.preprocess0, self.preprocess1 = fixed_preprocessing(
            C_prev_prev, C_prev, C, reduction_prev
        )
        self._ops = nn.ModuleList()
        for op_name, index in ops:
            stride = 2 if reduction and index < 2 else 1
            self._ops.append(op_dict[op_name](C, C, stride, True, C_mid))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """The original cell's math (``reference.cell_forward``) with the ``fast`` shortcuts
        and one ReLU per state shared by every op that reads it and begins with a ReLU. Drop
        path draws its masks in the same order, so with the same RNG state the result is the
        same."""
        states = [fast.run(self.preprocess0, s0), fast.run(self.preprocess1, s1)]
        relus = [fast.LazyReLU(h) for h in states]
        drop = self.training and drop_prob > 0.0
        for i in range(self._steps):
            total = None
            for k in (2 * i, 2 * i + 1):
                op, index = self._ops[k], self._indices[k]
                h = fast.run_shared(op, states[index], relus[index])
                if drop and not isinstance(op, Identity):
                    h = fast_drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
            relus.append(fast.LazyReLU(total))
        return fast.cat_channels([states[i] for i in self._concat])
