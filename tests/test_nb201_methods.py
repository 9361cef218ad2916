"""SNAS and PC-DARTS on the NAS-Bench-201 space (their authors have no code on this space, so
nothing is pinned to it: each is checked against its formula, on the DARTS mixture that
tests/test_nb201_nn.py pins to xautodl, and on partial channels as DrNAS's pinned path)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from sharpdarts.errors import UserError
from sharpdarts.nn.nb201 import NB201SearchNetwork
from sharpdarts.nn.nb201_search import channel_shuffle

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _net(method: str, **options) -> NB201SearchNetwork:
    torch.manual_seed(0)
    model = NB201SearchNetwork(C=4, N=1, method=method, **options).double()
    with torch.no_grad():
        model.alphas.normal_()
    return model


def test_snas_draws_a_soft_gumbel_sample_and_mixes_as_darts():
    snas = _net("snas")
    snas.tau = 0.7
    torch.manual_seed(3)
    weights, _ = snas.op_weights()
    # SNAS's _get_categ_mask: u ~ U[0, 1), softmax((alpha - log(-log u)) / tau).
    torch.manual_seed(3)
    u = torch.zeros_like(snas.alphas).uniform_()
    expected = F.softmax((snas.alphas - (-u.log()).log()) / 0.7, dim=-1)
    assert torch.allclose(weights, expected, rtol=1e-12, atol=0)

    darts = copy.deepcopy(snas)
    darts.method = "darts"
    for cell in darts.cells:
        cell.method = "darts"
    darts.op_weights = lambda: (weights, [None] * 6)
    torch.manual_seed(3)
    assert torch.allclose(snas(X), darts(X), rtol=1e-12, atol=1e-14)
    assert snas.genotype() == darts.genotype()


def _pc_darts_cell(cell, x, weights, edge_weights, k):
    """PC-DARTS' model_search.py on this cell: MixedOp on 1/k of the channels (every op,
    'none' included), the rest concatenated, a channel shuffle; nodes sum weights2 * edge."""
    nodes = [x]
    for i in range(1, 4):
        total = 0
        for e, (node, j) in enumerate([(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]):
            if node != i:
                continue
            h = nodes[j]
            part, rest = h[:, : h.shape[1] // k], h[:, h.shape[1] // k :]
            mixed = sum(w * op(part) for w, op in zip(weights[e], cell.edges[f"{i}<-{j}"]))
            total = total + edge_weights[e] * channel_shuffle(torch.cat([mixed, rest], 1), k)
        nodes.append(total)
    return nodes[-1]


@pytest.mark.parametrize("k", [1, 2])
def test_pc_darts_is_partial_channels_and_edge_normalisation(k):
    model = _net("pc_darts", partial_channels=k)
    with torch.no_grad():
        model.betas.normal_()
    edge = model.edge_weights()
    b = model.betas
    assert edge[0] == 1  # node 1 has one incoming edge
    assert torch.allclose(edge[1:3], F.softmax(b[1:3], 0)) and torch.allclose(
        edge[3:], F.softmax(b[3:], 0)
    )
    model.train()
    reference = copy.deepcopy(model)
    logits = model(X)
    weights = F.softmax(reference.alphas, dim=-1)
    feature = reference.stem(X)
    for cell in reference.cells:
        if hasattr(cell, "edges"):
            feature = _pc_darts_cell(cell, feature, weights, reference.edge_weights(), k)
        else:
            feature = cell(feature)
    assert torch.allclose(logits, reference._head(feature), rtol=1e-12, atol=1e-14)
    loss = F.cross_entropy(logits, torch.tensor([0, 1]))
    grads = torch.autograd.grad(loss, model.arch_parameters())
    assert [g.shape for g in grads] == [(6, 5), (6,)] and grads[1][0] == 0
    assert len(model.weights()) + 2 == len(list(model.parameters()))


def test_snas_and_pc_darts_settings():
    assert _net("snas").tau == 1.0 and _net("pc_darts").tau is None
    assert _net("snas").betas is None and len(_net("snas").arch_parameters()) == 1
    with pytest.raises(UserError, match="partial_channels"):
        NB201SearchNetwork(method="snas", partial_channels=2)
