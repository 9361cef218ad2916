"""DARTS's recurrent cells: the fixed cell of a genotype and the search cell over all of them.

Both follow the original formulas (``docs/facts/darts_rnn.md``, sections 2 and 3). One time step,
with ``x`` the input, ``h`` the previous output, ``mx``/``mh`` dropout masks (training only):

    [c0 | h0] = [x * mx, h * mh] @ W0          s0 = h + sigmoid(c0) * (tanh(h0) - h)
    [c | g]   = (s_j * mh) @ Ws[i]             s_{i+1} = s_j + sigmoid(c) * (op(g) - s_j)

and the output is the mean of the ``concat`` states. The masks are drawn once per forward call
(shape (B, dim)) and shared by every time step and every node, as the original's are. Weights
are stored as ``_W0`` and ``_Ws.<i>`` (no biases) so that the original's state dicts load as
they are.

The input half of ``W0`` is applied to all time steps in one matrix product before the
recurrence (it does not depend on the hidden state), and the search cell sums the ops of each
node in closed form (one running ``addcmul`` per op, the edges' op weights sliced once per
sequence); both give the original's values, with fewer, larger products and fewer passes.
The original computation, loop by loop, is :mod:`sharpdarts.nn.recurrent.reference`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sharpdarts.core.genotypes import RNN_PRIMITIVES
from sharpdarts.core.recurrent_genotypes import RNN_CONCAT, RNN_STEPS, RecurrentGenotype, check
from sharpdarts.registry import Registry

INIT_RANGE = 0.04

# Recurrent ops: activations applied to a node's candidate state. Add one with
# ``RNN_OPS.register('name')(fn)``; 'none' is the zero op of the search and has no function.
RNN_OPS: Registry = Registry("recurrent op", "RNN_OPS")
RNN_OPS.register("tanh")(torch.tanh)
RNN_OPS.register("relu")(torch.relu)
RNN_OPS.register("sigmoid")(torch.sigmoid)
RNN_OPS.register("identity")(lambda h: h)


def dropout_mask(rows: int, cols: int, dropout: float, like: torch.Tensor) -> torch.Tensor:
    """The original's 2-d variational mask: ``floor(U[0,1) + keep) / keep``, shape (rows, cols)."""
    keep = 1.0 - dropout
    return torch.floor(torch.rand(rows, cols, dtype=like.dtype, device=like.device) + keep) / keep


def _uniform(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).uniform_(-INIT_RANGE, INIT_RANGE))


class _RecurrentBase(nn.Module):
    """The weights, masks and time loop shared by the fixed and the search cell."""

    def __init__(self, ninp: int, nhid: int, dropouth: float, dropoutx: float, steps: int):
        super().__init__()
        self.ninp = ninp
        self.nhid = nhid
        self.dropouth = dropouth
        self.dropoutx = dropoutx
        self._W0 = _uniform(ninp + nhid, 2 * nhid)
        self._Ws = nn.ParameterList([_uniform(nhid, 2 * nhid) for _ in range(steps)])

    def _masks(self, inputs: torch.Tensor):
        if not self.training:
            return None, None
        batch = inputs.size(1)
        return (
            dropout_mask(batch, self.ninp, self.dropoutx, inputs),
            dropout_mask(batch, self.nhid, self.dropouth, inputs),
        )

    def _init_state(self, x_part: torch.Tensor, h_prev: torch.Tensor, h_mask) -> torch.Tensor:
        """``s0`` from the precomputed input product and the previous output."""
        h_in = h_prev * h_mask if h_mask is not None else h_prev
        c0, h0 = (x_part + h_in @ self._W0[self.ninp :]).split(self.nhid, dim=-1)
        return torch.addcmul(h_prev, torch.sigmoid(c0), torch.tanh(h0) - h_prev)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor, *extra):
        """Runs the cell over a sequence.

        Args:
            inputs: (T, B, ninp).
            hidden: (1, B, nhid), the previous output.
            *extra: passed to the step (the search cell's op weights).

        Returns:
            ``(outputs, last)``: (T, B, nhid) and (1, B, nhid).
        """
        x_mask, h_mask = self._masks(inputs)
        x = inputs * x_mask if x_mask is not None else inputs
        # unbind, not x_parts[t]: the backward of T selections would build and add T
        # zero-padded (T, B, 2 nhid) gradients; unbind's stacks the T slices once.
        x_parts = (x @ self._W0[: self.ninp]).unbind(0)
        h = hidden[0]
        outputs = []
        for x_part in x_parts:
            h = self._step(x_part, h, h_mask, *extra)
            outputs.append(h)
        outputs = torch.stack(outputs)
        return outputs, outputs[-1:]


class DARTSCell(_RecurrentBase):
    """The recurrent cell of a fixed genotype (the original's ``DARTSCell``).

    Args:
        ninp: input width (the embedding size).
        nhid: hidden width.
        dropouth: dropout of the hidden state and every node's input.
        dropoutx: dropout of the cell's input.
        genotype: a :class:`RecurrentGenotype`.
    """

    def __init__(
        self, ninp: int, nhid: int, dropouth: float, dropoutx: float, genotype: RecurrentGenotype
    ):
        genotype = check(genotype)
        super().__init__(ninp, nhid, dropouth, dropoutx, len(genotype.recurrent))
        self.genotype = genotype
        self._ops = [RNN_OPS[name] for name, _ in genotype.recurrent]

    def _step(self, x_part, h_prev, h_mask):
        states = [self._init_state(x_part, h_prev, h_mask)]
        for i, (_, pred) in enumerate(self.genotype.recurrent):
            s_prev = states[pred]
            s_in = s_prev * h_mask if h_mask is not None else s_prev
            c, g = (s_in @ self._Ws[i]).split(self.nhid, dim=-1)
            states.append(s_prev + torch.sigmoid(c) * (self._ops[i](g) - s_prev))
        return torch.stack([states[i] for i in self.genotype.concat]).mean(0)


class DARTSCellSearch(_RecurrentBase):
    """The recurrent search cell: every node mixes every op on every earlier state.

    Node ``i + 1`` reads all states ``s_0..s_i`` through the one matrix ``Ws[i]`` and sums
    ``p[e, k] * (s_j + sigmoid(c) * (op_k(g) - s_j))`` over its edges ``e`` and non-'none'
    ops ``k``; one affine-free batch norm, shared by ``s_0`` and every node, normalises each.
    The op weights ``p`` (the softmax of the model's architecture parameters) are an argument
    of :meth:`forward`, so the cell holds no architecture state.

    Args:
        ninp, nhid, dropouth, dropoutx: as :class:`DARTSCell`.
        primitives: op names of the weight columns ('none' contributes nothing).
        steps: the number of nodes.
        concat: how many of the last states are averaged into the output.
        compile_backend: run each time step (all nodes) through ``torch.compile`` with this
            backend ('inductor' fuses the step's elementwise passes; 'eager' checks tracing
            only); None (the default) runs eagerly. The step's shapes are the same at every
            time step, so one graph serves the whole window (and every window of that batch
            size); compiling costs minutes at the first call and, on CPU, needs a C++
            compiler. Passes without gradients (evaluation) run eagerly. Same values as
            eager, within float rounding.
    """

    def __init__(
        self,
        ninp: int,
        nhid: int,
        dropouth: float,
        dropoutx: float,
        primitives: Sequence[str] = RNN_PRIMITIVES,
        steps: int = RNN_STEPS,
        concat: int = RNN_CONCAT,
        compile_backend: str | None = None,
    ):
        super().__init__(ninp, nhid, dropouth, dropoutx, steps)
        self.primitives = list(primitives)
        self.steps = steps
        self.concat = concat
        self._op_columns = [k for k, name in enumerate(self.primitives) if name != "none"]
        self._ops = [RNN_OPS[self.primitives[k]] for k in self._op_columns]
        self.bn = nn.BatchNorm1d(nhid, affine=False)
        self.compile_backend = compile_backend

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor, probs: torch.Tensor):
        """Runs the cell over a sequence with op weights ``probs`` ((edges, ops), the softmax
        of the architecture parameters); see :meth:`_RecurrentBase.forward`."""
        return super().forward(inputs, hidden, self._node_weights(probs))

    def _node_weights(self, probs: torch.Tensor):
        """Per node, once per sequence (not per time step): each non-'none' op's weights of
        the node's edges, shaped (edges, 1, 1) to scale (edges, B, n) terms, and their sum."""
        p = probs[:, self._op_columns]
        totals = p.sum(1)
        nodes, offset = [], 0
        for i in range(self.steps):
            rows = slice(offset, offset + i + 1)
            nodes.append(
                ([p[rows, k, None, None] for k in range(p.size(1))], totals[rows, None, None])
            )
            offset += i + 1
        return nodes

    def _step(self, x_part, h_prev, h_mask, node_weights):
        # Evaluation (no gradients) stays eager: its batch sizes and modes would add graphs
        # (and Dynamo falls back to eager past its recompile limit) for a minor share of time.
        if self.compile_backend and torch.is_grad_enabled():
            return _compiled_step(self.compile_backend)(self, x_part, h_prev, h_mask, node_weights)
        return self._eager_step(x_part, h_prev, h_mask, node_weights)

    def _eager_step(self, x_part, h_prev, h_mask, node_weights):
        """One time step: ``s0``, every node, the output (see the class docstring)."""
        states = self.bn(self._init_state(x_part, h_prev, h_mask)).unsqueeze(0)
        for i, (op_weights, total) in enumerate(node_weights):
            s_in = states * h_mask if h_mask is not None else states
            c, g = (s_in @ self._Ws[i]).split(self.nhid, dim=-1)
            c = torch.sigmoid(c)
            mixed = None  # (i+1, B, n)
            for op, w in zip(self._ops, op_weights):
                mixed = op(g) * w if mixed is None else torch.addcmul(mixed, op(g), w)
            # sum_k p_k (s + c (f_k - s)) = T s + c (sum_k p_k f_k - T s), T = sum_k p_k
            held = states * total
            node = torch.addcmul(held, c, mixed - held).sum(0)
            states = torch.cat([states, self.bn(node).unsqueeze(0)])
        return states[-self.concat :].mean(0)


# One compiled step per backend, shared by every search cell: a function of the class (the
# cell is an argument), not a bound method kept on the cell, so that copies of the model
# (copy.deepcopy) and torch.func.functional_call's swapped weights are traced as they are.
_COMPILED_STEPS: dict = {}


def _compiled_step(backend: str):
    if backend not in _COMPILED_STEPS:
        # dynamic=False: B x nhid is fixed within a run; a new batch size recompiles once.
        _COMPILED_STEPS[backend] = torch.compile(
            DARTSCellSearch._eager_step, backend=backend, dynamic=False
        )
    return _COMPILED_STEPS[backend]
