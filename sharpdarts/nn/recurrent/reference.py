"""The reference path of the recurrent search cell: the original ``DARTSCellSearch``, loop by loop.

:class:`~sharpdarts.nn.recurrent.cells.DARTSCellSearch` computes its time steps with
shortcuts (the input half of ``W0`` applied to the whole sequence in one product, each node's
ops summed in closed form). This module keeps the original's expressions
(``docs/facts/darts_rnn.md``, section 3) as the yardstick that tests/test_lm_reference.py and
benchmarks/lm_search_step.py measure the fast cell against:

- every time step concatenates ``[x_t * mx, h * mh]`` and multiplies it by all of ``W0``;
- every node computes, for every op but 'none' (which adds nothing, as in the original, and
  whose column only enters the softmax), the highway state ``s_j + c (f_k(h) - s_j)`` of each
  earlier state and adds its ``p``-weighted sum over the edges into a running total.

:func:`sharpdarts.nn.reference.set_reference_path` switches a search cell to
:func:`search_cell_forward` (and back); the masks are drawn in the same order as the fast
cell's, so both paths consume the random stream alike and compute the same function.
"""

from __future__ import annotations

import torch
from torch import nn

from sharpdarts.nn.recurrent.cells import RNN_OPS


def _init_state(cell: nn.Module, x: torch.Tensor, h_prev: torch.Tensor, x_mask, h_mask):
    """``s0`` as the original: one product of the concatenated, masked input and state."""
    if cell.training:
        xh_prev = torch.cat([x * x_mask, h_prev * h_mask], dim=-1)
    else:
        xh_prev = torch.cat([x, h_prev], dim=-1)
    c0, h0 = torch.split(xh_prev.mm(cell._W0), cell.nhid, dim=-1)
    c0 = c0.sigmoid()
    h0 = h0.tanh()
    return h_prev + c0 * (h0 - h_prev)


def _search_step(
    cell: nn.Module, x: torch.Tensor, h_prev: torch.Tensor, x_mask, h_mask, probs: torch.Tensor
) -> torch.Tensor:
    """One time step of the original search cell."""
    s0 = cell.bn(_init_state(cell, x, h_prev, x_mask, h_mask))
    states = s0.unsqueeze(0)
    offset = 0
    for i in range(cell.steps):
        masked = states * h_mask.unsqueeze(0) if cell.training else states
        ch = masked.view(-1, cell.nhid).mm(cell._Ws[i]).view(i + 1, -1, 2 * cell.nhid)
        c, h = torch.split(ch, cell.nhid, dim=-1)
        c = c.sigmoid()
        s = torch.zeros_like(s0)
        for k, name in enumerate(cell.primitives):
            if name == "none":
                continue
            unweighted = states + c * (RNN_OPS[name](h) - states)
            s += torch.sum(
                probs[offset : offset + i + 1, k].unsqueeze(-1).unsqueeze(-1) * unweighted, dim=0
            )
        s = cell.bn(s)
        states = torch.cat([states, s.unsqueeze(0)], 0)
        offset += i + 1
    return torch.mean(states[-cell.concat :], dim=0)


def search_cell_forward(
    cell: nn.Module, inputs: torch.Tensor, hidden: torch.Tensor, probs: torch.Tensor
):
    """``DARTSCellSearch.forward`` as the original computes it.

    Args:
        cell: a ``DARTSCellSearch``.
        inputs: (T, B, ninp).
        hidden: (1, B, nhid).
        probs: (edges, ops) softmax of the architecture parameters.

    Returns:
        ``(outputs, last)``: (T, B, nhid) and (1, B, nhid).
    """
    x_mask, h_mask = cell._masks(inputs)  # the fast cell's draws, in the same order
    h = hidden[0]
    hiddens = []
    for t in range(inputs.size(0)):
        h = _search_step(cell, inputs[t], h, x_mask, h_mask, probs)
        hiddens.append(h)
    hiddens = torch.stack(hiddens)
    return hiddens, hiddens[-1].unsqueeze(0)
