"""FairDARTS' evaluation cell: nodes that sum any number of inputs.

The cell of an ``'edges'`` genotype (:mod:`sharpdarts.core.edge_genotypes`), computed as
FairDARTS' ``DCOCell`` (xiaomi-automl/FairDARTS @ 270cfc94ef4bf851f359ab5caf741f23316ea7c9,
``fairdarts/model.py``; their ``train.py --parse_method threshold``), which differs from
DARTS's cell in four ways:

- a node sums every op on every edge into it, however many (their ``ModuleDict`` of node ->
  input -> ``ModuleList`` of ops; the module names here are theirs, so their checkpoints
  load);
- a node without an edge is not computed and not concatenated, and an edge that reads such a
  node is skipped, though its op is still built (their code builds it: its parameters count);
- drop path drops a node's summed output, identities included, rather than each
  non-identity op's output;
- the output concatenates the nodes that have an edge, in node order.

A node none of whose inputs is computed would be a sum of nothing (their code fails on it
with a type error); the cell refuses it when built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sharpdarts.core import edge_genotypes
from sharpdarts.nn import fast
from sharpdarts.nn.cells import check_op, fast_drop_path, fixed_preprocessing


def cell_edges(genotype, half: str) -> tuple[list[tuple[str, int, int]], list[int]]:
    """One half's edges and output nodes of a cell genotype, as FairDARTS' cell reads them.

    Args:
        genotype: a Genotype of layout 'edges', or of layout 'cell' (its pairs become edges:
            pair ``k`` into node ``2 + k // 2``; its concat must be every node, since
            FairDARTS' cell outputs every node with an edge).
        half: 'normal' or 'reduce'.

    Returns:
        ``(edges, concat)``.

    Raises:
        ValueError: another layout, or a two-input cell that leaves a node out of its output.
    """
    entries, concat = getattr(genotype, half), list(getattr(genotype, f"{half}_concat"))
    if genotype.layout == "cell":
        entries = edge_genotypes.pairs_to_edges(entries)
        edge_genotypes.check_concat(entries, concat, half)
    elif genotype.layout != "edges":
        raise ValueError(f"a '{genotype.layout}' genotype has no cells")
    return list(entries), concat


class FairCell(nn.Module):
    """The fixed cell of FairDARTS (their ``DCOCell``): see the module docstring.

    Args:
        edges: ``(op_name, node, input)`` triples, node by node (an 'edges' genotype's half).
        concat: the nodes concatenated: those with an edge, as the genotype lists them.
        C_prev_prev, C_prev, C: channels of the two inputs and of every node.
        reduction: this cell halves the resolution (stride 2 on edges from inputs 0 and 1).
        reduction_prev: the previous cell reduced, so input 0 is factorised down.
        op_dict: the op table.
        C_mid: middle width of the choke ops.
        name: names the genotype in error messages.

    Attributes:
        multiplier: how many nodes are concatenated (the nodes with an edge).
    """

    def __init__(
        self,
        edges: Sequence,
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
        edges = edge_genotypes.edge_entries(edges, name)
        if not edges:
            raise ValueError(f"{name}: a cell needs at least one edge")
        edge_genotypes.check_concat(edges, [int(i) for i in concat], name)
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = fixed_preprocessing(
            C_prev_prev, C_prev, C, reduction_prev
        )
        self._ops = nn.ModuleDict()
        for k, (op_name, node, index) in enumerate(edges):
            check_op(op_dict, op_name, f"{name}: edge {k} {(op_name, node, index)}")
            into = self._ops[str(node)] if str(node) in self._ops else nn.ModuleDict()
            self._ops[str(node)] = into
            if str(index) not in into:
                into[str(index)] = nn.ModuleList()
            stride = 2 if reduction and index < 2 else 1
            into[str(index)].append(op_dict[op_name](C, C, stride, True, C_mid))
        computed = {0, 1}
        for node, into in self._ops.items():
            if not computed & {int(i) for i in into}:
                raise ValueError(
                    f"{name}: node {node} reads only nodes that have no edge "
                    f"({', '.join(into)}), so it would sum nothing"
                )
            computed.add(int(node))
        self.multiplier = len(self._ops)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """Their ``DCOCell.forward`` through the ``fast`` shortcuts (one shared ReLU per
        state). The sums run in their order, so the result is theirs exactly; drop path draws
        one mask per node in node order, as theirs."""
        states = {"0": fast.run(self.preprocess0, s0), "1": fast.run(self.preprocess1, s1)}
        relus = {k: fast.LazyReLU(h) for k, h in states.items()}
        drop = self.training and drop_prob > 0.0
        for node, into in self._ops.items():
            total = None
            for index, ops in into.items():
                if index not in states:  # a node without an edge: their cell skips the edge
                    continue
                # Each edge's ops are summed first, then the edges, as their nested sums.
                part = None
                for op in ops:
                    h = fast.run_shared(op, states[index], relus[index])
                    part = h if part is None else part + h
                total = part if total is None else total + part
            if drop:
                total = fast_drop_path(total, drop_prob)
            states[node] = total
            relus[node] = fast.LazyReLU(total)
        return fast.cat_channels([states[node] for node in self._ops])
