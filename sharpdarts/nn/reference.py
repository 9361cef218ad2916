"""The reference path: the original DARTS / PC-DARTS computation of mixed ops and cells.

The cells in :mod:`sharpdarts.nn.cells` compute their forward passes through the shortcuts
of :mod:`sharpdarts.nn.fast` (the *fast path*). This module keeps the plain expressions of the
original code, term by term, as the yardstick that the equivalence tests
(tests/test_cells.py, tests/test_performance_equivalence.py) and benchmarks/ measure the fast
path against. It exists for them, not for training: the two paths compute the same function.

:func:`set_reference_path` switches a model's ``MixedOp``, ``SearchCell`` and ``Cell``
modules, and the recurrent search cell (:mod:`sharpdarts.nn.recurrent.reference`), over (it
gives each module its reference ``forward``) and back again; the cells
themselves carry no reference flag and no reference branch.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.nn.cells import Cell, MixedOp, SearchCell
from sharpdarts.nn.ops import Identity, channel_shuffle, drop_path
from sharpdarts.nn.recurrent import reference as recurrent
from sharpdarts.nn.recurrent.cells import DARTSCellSearch


def weighted_sum(ops: nn.ModuleList, x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """``sum(c_i * op_i(x))`` over every op, the zero op included: the original DARTS mixed op."""
    return sum(w * op(x) for w, op in zip(coefficients, ops))


def mixed_op_forward(
    mixed_op: nn.Module,
    x: torch.Tensor,
    coefficients: torch.Tensor,
    out: torch.Tensor | None = None,
    relu_x: object = None,
) -> torch.Tensor:
    """``MixedOp.forward`` as the original code computes it.

    Args:
        mixed_op: a ``cells.MixedOp``.
        x: the input state.
        coefficients: (ops,) mixing coefficients.
        out: a running sum to add the result to (out of place), or None.
        relu_x: accepted for the fast path's signature and unused.
    """
    del relu_x  # the reference path computes every op's own ReLU
    K = mixed_op._partial
    if K > 1:  # PC-DARTS: 1/K of the channels through the ops, the rest bypass them
        c_op = x.shape[1] // K
        through, bypass = x[:, :c_op], x[:, c_op:]
        mixed = weighted_sum(mixed_op._ops, through, coefficients)
        if mixed_op._stride == 2:
            bypass = F.max_pool2d(bypass, 2, 2)
        return channel_shuffle(torch.cat([mixed, bypass], dim=1), K)
    result = weighted_sum(mixed_op._ops, x, coefficients)
    return result if out is None else out + result


def search_cell_forward(
    cell: nn.Module,
    s0: torch.Tensor,
    s1: torch.Tensor,
    coefficients: torch.Tensor,
    edge_weights: torch.Tensor | None = None,
    drop_prob: float = 0.0,
) -> torch.Tensor:
    """``SearchCell.forward`` as the original code computes it: every node is the plain sum
    of its mixed ops (each scaled by its edge weight under PC-DARTS edge normalization); with
    ``drop_prob`` in training mode, of its mixed ops each through drop path (SNAS's
    ``Cell.forward``)."""
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    offset = 0
    for _ in range(cell._steps):
        if cell.training and drop_prob > 0.0:
            s = 0
            for j, h in enumerate(states):
                y = drop_path(cell._ops[offset + j](h, coefficients[offset + j]), drop_prob)
                s = s + (y if edge_weights is None else edge_weights[offset + j] * y)
        elif edge_weights is None:
            s = sum(
                cell._ops[offset + j](h, coefficients[offset + j]) for j, h in enumerate(states)
            )
        else:
            s = sum(
                edge_weights[offset + j] * cell._ops[offset + j](h, coefficients[offset + j])
                for j, h in enumerate(states)
            )
        offset += len(states)
        states.append(s)
    return torch.cat(states[-cell._multiplier :], dim=1)


def cell_forward(
    cell: nn.Module, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0
) -> torch.Tensor:
    """``Cell.forward`` (a genotype's fixed cell) as the original code computes it; drop path
    never applies to an identity op."""
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    for i in range(cell._steps):
        total = 0
        for k in (2 * i, 2 * i + 1):
            op = cell._ops[k]
            h = op(states[cell._indices[k]])
            if cell.training and drop_prob > 0.0 and not isinstance(op, Identity):
                h = drop_path(h, drop_prob)
            total = total + h
        states.append(total)
    return torch.cat([states[i] for i in cell._concat], dim=1)


def _reference_forwards() -> dict[type, Callable]:
    return {
        MixedOp: mixed_op_forward,
        SearchCell: search_cell_forward,
        Cell: cell_forward,
        DARTSCellSearch: recurrent.search_cell_forward,
    }


def uses_reference_path(module: nn.Module) -> bool:
    """Whether ``module`` runs its reference ``forward`` (see :func:`set_reference_path`)."""
    forward = module.__dict__.get("forward")
    return (
        isinstance(forward, types.MethodType) and forward.__func__ in _reference_forwards().values()
    )


def set_reference_path(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switches every mixed op and (search) cell of ``model``, convolutional or recurrent, to
    the reference path (or back).

    Each such module gets the reference ``forward`` of its class as an instance attribute
    (``enabled=False`` removes it again, so the class's fast ``forward`` runs). Copies of the
    model (``copy.deepcopy``, as the second-order architect makes) keep the path.

    Returns:
        The model.
    """
    forwards = _reference_forwards()
    for module in model.modules():
        function = next((f for cls, f in forwards.items() if isinstance(module, cls)), None)
        if function is None:
            continue
        if enabled:
            module.__dict__["forward"] = types.MethodType(function, module)
        else:
            module.__dict__.pop("forward", None)
    return model
