"""Cells (sharpdarts.nn.cells) and the reference path (sharpdarts.nn.reference): the mixed op,
the search cell, the fixed cell, drop path, channel shuffle, edge normalization, and switching
a model between the fast and the reference path."""

import copy

import pytest
import torch
import torch.nn.functional as F

from sharpdarts.core import genotypes
from sharpdarts.nn import reference
from sharpdarts.nn.cells import Cell, MixedOp, SearchCell, edge_softmax, fast_drop_path, num_edges
from sharpdarts.nn.models import NetworkCIFAR, SearchNetwork
from sharpdarts.nn.ops import OPS, channel_shuffle, drop_path
from sharpdarts.nn.reference import set_reference_path

TOL = dict(rtol=1e-9, atol=1e-11)


def test_an_edge_of_zero_ops_only_still_gives_zeros():
    edge = MixedOp(4, 2, ["none"], OPS)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(edge(x, torch.ones(1)), torch.zeros(2, 4, 4, 4))


@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_shuffle(channels_last):
    x = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).reshape(2, 8, 3, 3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = channel_shuffle(x, 4)
    # channel i * (C // groups) + j moves to j * groups + i
    order = [i * 2 + j for j in range(2) for i in range(4)]
    assert torch.equal(y, x[:, order])
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_edge_softmax_normalises_over_each_nodes_inputs():
    betas = torch.randn(14)
    w = edge_softmax(betas, 4)
    sums = [w[0:2].sum(), w[2:5].sum(), w[5:9].sum(), w[9:14].sum()]
    torch.testing.assert_close(torch.stack(sums), torch.ones(4))
    torch.testing.assert_close(w[2:5], F.softmax(betas[2:5], dim=0))


def test_drop_path_zeroes_samples_of_non_identity_ops():
    net = NetworkCIFAR(8, 10, 3, False, "DARTS")
    cell = net.cells[0]
    x = torch.randn(64, 24, 8, 8)
    cell.train()
    torch.manual_seed(1)
    dropped = cell(x, x, drop_prob=0.5)
    full = cell(x, x, drop_prob=0.0)
    assert not torch.allclose(dropped, full)
    cell.eval()
    assert torch.allclose(cell(x, x, drop_prob=0.5), cell(x, x, drop_prob=0.0))


def test_num_edges():
    assert [num_edges(s) for s in (1, 2, 3, 4)] == [2, 5, 9, 14]


def test_fast_drop_path_draws_the_same_mask_as_drop_path():
    x = torch.randn(16, 3, 4, 4, dtype=torch.float64)
    torch.manual_seed(3)
    want = drop_path(x, 0.3)
    torch.manual_seed(3)
    got = fast_drop_path(x, 0.3)
    torch.testing.assert_close(got, want, **TOL)
    kept = want.flatten(1).abs().sum(1) > 0
    torch.testing.assert_close(want[kept], x[kept] / 0.7, **TOL)  # the survivors rescaled


@pytest.mark.parametrize("partial_channels", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_equals_the_original_sum(stride, partial_channels):
    primitives = genotypes.DARTS_PRIMITIVES
    edge = MixedOp(4, stride, primitives, OPS, partial_channels).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    c = torch.randn(len(primitives), dtype=torch.float64)
    torch.testing.assert_close(edge(x, c), reference.mixed_op_forward(edge, x, c), **TOL)
    if partial_channels == 1:  # the original DARTS expression, every op included
        want = sum(w * op(x) for w, op in zip(c, edge._ops))
        torch.testing.assert_close(edge(x, c), want, **TOL)
        running = torch.ones_like(want)
        torch.testing.assert_close(edge(x, c, running.clone()), running + want, **TOL)


def search_cell(reduction=False):
    torch.manual_seed(0)
    return SearchCell(2, 2, 6, 6, 4, reduction, False, genotypes.DARTS_PRIMITIVES, OPS).double()


@pytest.mark.parametrize("reduction", [False, True])
@pytest.mark.parametrize("edges", [False, True])
def test_search_cell_equals_its_reference(reduction, edges):
    cell = search_cell(reduction)
    s0, s1 = (torch.randn(2, 6, 8, 8, dtype=torch.float64) for _ in range(2))
    c = torch.rand(num_edges(2), len(genotypes.DARTS_PRIMITIVES), dtype=torch.float64)
    w = edge_softmax(torch.randn(num_edges(2), dtype=torch.float64), 2) if edges else None
    out = cell(s0, s1, c, w)
    assert out.shape == (2, 8, 4 if reduction else 8, 4 if reduction else 8)
    torch.testing.assert_close(out, reference.search_cell_forward(cell, s0, s1, c, w), **TOL)


def test_fixed_cell_equals_its_reference():
    g = genotypes.get("DARTS_V2")
    cell = Cell(g.normal, g.normal_concat, 6, 6, 4, False, False, OPS, 8).double().train()
    s0, s1 = (torch.randn(4, 6, 8, 8, dtype=torch.float64) for _ in range(2))
    torch.manual_seed(5)
    got = cell(s0, s1, 0.2)
    torch.manual_seed(5)
    torch.testing.assert_close(got, reference.cell_forward(cell, s0, s1, 0.2), **TOL)
    assert got.shape == (4, 4 * len(g.normal_concat), 8, 8)


def test_set_reference_path_switches_every_cell_and_back():
    net = SearchNetwork(C=4, num_classes=3, layers=3, steps=2, multiplier=2)
    switched = [m for m in net.modules() if isinstance(m, (MixedOp, SearchCell))]
    assert switched and not any(reference.uses_reference_path(m) for m in switched)
    assert set_reference_path(net) is net
    assert all(reference.uses_reference_path(m) for m in switched)
    twin = copy.deepcopy(net)  # the second-order architect copies the model
    assert all(
        reference.uses_reference_path(m)
        for m in twin.modules()
        if isinstance(m, (MixedOp, SearchCell))
    )
    first = next(m for m in twin.modules() if isinstance(m, MixedOp))
    assert first.forward.__self__ is first  # bound to the copy, not the original
    set_reference_path(net, False)
    assert not any(reference.uses_reference_path(m) for m in switched)
    assert list(net.state_dict()) == list(twin.state_dict())


def test_reference_and_fast_fixed_networks_agree():
    torch.manual_seed(0)
    ref = NetworkCIFAR(6, 10, 3, False, "DARTS_V2").double().eval()
    fast_net = copy.deepcopy(ref)
    set_reference_path(ref)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(fast_net(x)[0], ref(x)[0], **TOL)
    assert F.softmax(ref(x)[0], 1).shape == (2, 10)
