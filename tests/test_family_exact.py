"""DARTS-family searches on the DARTS supernet, exact to the authors' code (float64).

``family_exact_figures.json`` holds figures computed by running the authors' code on CPU in
float64 with this file's network: our ``SearchNetwork`` below, built from seed 0, had its
weights and alphas copied into the authors' network, and the same batch and the same
``torch.manual_seed(5)`` before each forward (so the same random draws):

- DrNAS: xiangning-chen/DrNAS @ f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0,
  ``DARTS-space/model_search.py`` ``Network`` (Dirichlet weights; partial channels k=1 with the
  KL regulariser, ``--reg_type kl``; k=2 with the default L2 regulariser, the arch Adam's
  weight decay) and ``architect.Architect`` (first order, Adam lr 6e-4, betas (0.5, 0.999)).
- GDAS: D-X-Y/AutoDL-Projects @ f46486e21b71ae6459a700be720d7648b5429569: ``get_gumbel_prob``
  of ``xautodl/models/cell_searchs/search_model_gdas_nasnet.py`` copied verbatim, and the
  mixed op of ``search_cells.py`` (``MixedOp.forward_gdas``, the DARTS space: only the sampled
  op, times its weight; ``NAS201SearchCell.forward_gdas``: the other ops' weights added as
  scalars), run on the DARTS supernet of DrNAS's code (k=1, DARTS's eight ops); the
  architecture step is GDAS.py's (Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3).
  GDAS's own DARTS-space network differs from the DARTS supernet in its ops (xautodl's
  convolutions with biases, pools without batch norm, a final BN-ReLU), so the component is
  checked on the DARTS supernet that every sharpdarts search uses.
- SNAS: SNAS-Series/SNAS-Series @ 9a43adbdf90d4969b19e448c0d094091bc5efb4f, the soft sample
  ``Network._get_categ_mask`` of ``SNAS/model_search.py`` copied verbatim, on the same DARTS
  supernet (temperature 0.5), with its architecture Adam (``SNAS/train_search.py``). Its
  resource constraint (``snas_resource_*``): SNAS's own ``Network`` (``SNAS/model_search.py``,
  its ops ``SNAS/operations.py``, ``--method reparametrization``, no drop path), our weights
  and alphas copied in (one normal edge's 'none' alpha set to 20, so that its costs fall below
  1), and the resource loss of ``SNAS/train_search.py`` (lambda 1.5e-3): the cost tables of
  every cell, the logits, the term and the alphas' gradients of the term and of the loss.
  Its one-level search step (``snas_one_level``): ``SNAS/train_search.py``'s own
  ``init_optimizer`` and ``train`` (two iterations on the batch, the README's 8-cell command
  line parsed by its argparse, with ``--grad_clip 0.5 --resource_lambda 3`` so that both clips
  bind here) on SNAS's ``Network`` with drop path 0.3, temperature 0.2.

Compared: logits or loss, the gradients of both alpha tensors, the alphas after one
architecture step, the sampled ops, and the genotype of the stepped alphas (FairDARTS:
both of its rules; GDAS: its own rule, ``NASNetworkGDAS.genotype``).
"""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
import torch.nn.functional as F

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.engine.arch_losses import DirichletKL, ResourceConstraint, ZeroOneLoss
from sharpdarts.engine.architect import Architect
from sharpdarts.engine.loop import weight_step
from sharpdarts.nn import resource
from sharpdarts.nn.derivation import threshold_cell, top_pairs_cell
from sharpdarts.nn.models import SearchNetwork
from sharpdarts.nn.reference import set_reference_path

FIGURES = json.loads((pathlib.Path(__file__).parent / "family_exact_figures.json").read_text())
DRNAS_OPS = [
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]
DARTS_OPS8 = ["none", *DRNAS_OPS]


def tiny_float64_supernet(primitives, network=SearchNetwork, **kwargs) -> SearchNetwork:
    """The supernet the family's figures were computed from (here and in test_sdarts.py and
    test_pdarts.py): 4 channels, 3 cells of 2 nodes, built in float64 from seed 0, with
    normal-distributed alphas. ``network``: SearchNetwork or a subclass (PDartsNetwork);
    ``kwargs`` may change the nodes and stem too (test_spaces.py: 4 nodes, as its spaces)."""
    shape = {"steps": 2, "multiplier": 2, "stem_multiplier": 1, **kwargs}
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        net = network(4, 3, 3, primitives=primitives, op_dict="DARTS_OPS", **shape)
        with torch.no_grad():
            net.alphas_normal.normal_()
            net.alphas_reduce.normal_()
    finally:
        torch.set_default_dtype(default)
    return net.train()


def _data():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64), torch.tensor([0, 2])


def _close(actual, expected, rtol=1e-8, atol=1e-11):
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(
        actual.detach().reshape(expected.shape), expected, rtol=rtol, atol=atol
    )


def _pairs(cell):
    return [list(pair) for pair in cell]


@pytest.mark.parametrize("key", ["drnas_k1_kl", "drnas_k2_l2"])
def test_drnas_matches_authors_code(key):
    expected = FIGURES[key]
    k = int(key[7])
    kl = key.endswith("kl")
    net = tiny_float64_supernet(DRNAS_OPS, relaxation="dirichlet", partial_channels=k)
    extra = DirichletKL(1e-3) if kl else None
    x, y = _data()
    torch.manual_seed(5)
    loss = F.cross_entropy(net(x), y)
    if kl:
        _close(extra(net), expected["kl"])
        loss = loss + extra(net)
    _close(loss, expected["loss"])
    grad_normal, grad_reduce = torch.autograd.grad(loss, net.arch_parameters())
    _close(grad_normal, expected["grad_normal"])
    _close(grad_reduce, expected["grad_reduce"])

    architect = Architect(
        net, lr=6e-4, betas=(0.5, 0.999), weight_decay=0.0 if kl else 1e-3, extra_loss=extra
    )
    torch.manual_seed(5)
    architect.step(x, y, x, y, eta=0.1)
    _close(net.alphas_normal, expected["step_normal"], atol=1e-12)
    _close(net.alphas_reduce, expected["step_reduce"], atol=1e-12)
    genotype = net.genotype(skip_primitive=None)
    assert _pairs(genotype.normal) == expected["genotype"]["normal"]
    assert _pairs(genotype.reduce) == expected["genotype"]["reduce"]


@pytest.mark.parametrize("all_weights", [False, True])
def test_gdas_matches_authors_code(all_weights):
    expected = FIGURES[f"gdas_all{int(all_weights)}"]
    net = tiny_float64_supernet(
        DARTS_OPS8, relaxation="gumbel_hard", tau=4.0, hard_all_weights=all_weights
    )
    x, y = _data()
    torch.manual_seed(5)
    (_, index_normal), (_, index_reduce) = net.relaxed()
    assert [index_normal.flatten().tolist(), index_reduce.flatten().tolist()] == expected["index"]
    torch.manual_seed(5)
    logits = net(x)
    _close(logits, expected["logits"])
    loss = F.cross_entropy(logits, y)
    grad_normal, grad_reduce = torch.autograd.grad(loss, net.arch_parameters())
    _close(grad_normal, expected["grad_normal"])
    _close(grad_reduce, expected["grad_reduce"])

    architect = Architect(net, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    torch.manual_seed(5)
    architect.step(x, y, x, y, eta=0.1)
    _close(net.alphas_normal, expected["step_normal"], atol=1e-12)
    _close(net.alphas_reduce, expected["step_reduce"], atol=1e-12)
    # GDAS's genotype rule (xautodl NASNetworkGDAS.genotype) on the stepped alphas.
    net.derivation = "gdas"
    genotype = net.genotype()
    assert _pairs(genotype.normal) == expected["genotype_gdas"]["normal"]
    assert _pairs(genotype.reduce) == expected["genotype_gdas"]["reduce"]


def test_gdas_rule_may_read_one_input_twice():
    weights = [[0.0, 0.1, 0.9, 0.8], [0.0, 0.3, 0.2, 0.1]]  # node 2's two inputs
    ops = ["none", "a", "b", "c"]
    assert top_pairs_cell(weights, ops, steps=1) == [("b", 0), ("c", 0)]
    assert genotypes_lib.parse_cell(weights, ops, steps=1) == [("b", 0), ("a", 1)]


def test_snas_matches_authors_code():
    expected = FIGURES["snas"]
    net = tiny_float64_supernet(DARTS_OPS8, relaxation="gumbel_soft", tau=0.5)
    x, y = _data()
    torch.manual_seed(5)
    logits = net(x)
    _close(logits, expected["logits"])
    loss = F.cross_entropy(logits, y)
    grad_normal, grad_reduce = torch.autograd.grad(loss, net.arch_parameters())
    _close(grad_normal, expected["grad_normal"])
    _close(grad_reduce, expected["grad_reduce"])
    # SNAS's architecture optimizer: Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3.
    architect = Architect(net, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    torch.manual_seed(5)
    architect.step(x, y, x, y, eta=0.1)
    _close(net.alphas_normal, expected["step_normal"], atol=1e-12)
    _close(net.alphas_reduce, expected["step_reduce"], atol=1e-12)


def _snas_resource_supernet() -> SearchNetwork:
    net = tiny_float64_supernet(DARTS_OPS8, relaxation="gumbel_soft", tau=0.5)
    with torch.no_grad():  # as in the figures: this edge's costs fall below 1, clamped to 1
        net.alphas_normal[1, 0] = 20.0
    return net


def test_snas_cost_tables_are_the_authors():
    net = _snas_resource_supernet()
    normal, reduce = resource.supernet_costs(net, (8, 8))
    assert [c.reduction for c in net.cells] == FIGURES["snas_costs_reduction"]
    expected = torch.tensor(FIGURES["snas_costs"], dtype=torch.float64)  # cell, edge, op, cost
    is_reduce = torch.tensor(FIGURES["snas_costs_reduction"])
    assert torch.equal(normal, expected[~is_reduce]) and torch.equal(reduce, expected[is_reduce])


@pytest.mark.parametrize(
    "costs, log", [("all", True), ("all", False), ("flops", True)], ids=["log", "linear", "flops"]
)
def test_snas_resource_constraint_matches_authors_code(costs, log):
    expected = FIGURES[f"snas_resource_{costs}_{'log' if log else 'linear'}"]
    net = _snas_resource_supernet()
    term = ResourceConstraint(1.5e-3, log=log, costs=costs)
    x, y = _data()
    torch.manual_seed(5)
    logits = net(x)
    _close(logits, expected["logits"])  # SNAS's own supernet: the same network
    penalty = term(net)  # the forward pass's own sample
    _close(penalty, expected["resource_loss"])
    for key, loss in (("_resource", penalty), ("", penalty + F.cross_entropy(logits, y))):
        grad_normal, grad_reduce = torch.autograd.grad(
            loss, net.arch_parameters(), retain_graph=True
        )
        _close(grad_normal, expected[f"grad_normal{key}"])
        _close(grad_reduce, expected[f"grad_reduce{key}"])


def test_an_architecture_step_takes_the_resource_gradient_of_its_own_sample():
    """First order: the step's gradient is the figures' (loss and term of one draw)."""
    expected = FIGURES["snas_resource_all_log"]
    net = _snas_resource_supernet()
    x, y = _data()
    architect = Architect(net, extra_loss=ResourceConstraint(1.5e-3))
    torch.manual_seed(5)
    architect.step(x, y, x, y, eta=0.1)
    _close(net.alphas_normal.grad, expected["grad_normal"])
    _close(net.alphas_reduce.grad, expected["grad_reduce"])


def test_second_order_takes_the_resource_term_of_the_virtual_step_alike_both_ways():
    """The original way deep-copies the network (its sample is left behind, not copied) and
    reads the copy's own; the functional way reads the model's, from the same pass."""
    x, y = _data()
    alphas = []
    for copy_network in (False, True):
        net = _snas_resource_supernet()
        architect = Architect(
            net, order=2, copy_network=copy_network, extra_loss=ResourceConstraint(1.0)
        )
        torch.manual_seed(5)
        architect.step(x, y, x, y, eta=0.1)
        alphas.append([a.detach().clone() for a in net.arch_parameters()])
    for a, b in zip(*alphas):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_snas_one_level_search_steps_match_authors_code():
    """Two iterations of SNAS's single-GPU search: one forward on the batch (one soft Gumbel
    sample, drop path 0.3 on every edge), error + resource loss, one backward; the weights'
    norm clipped (0.5 here, 5 in the search), then the alphas' (10); weights SGD with
    momentum and weight decay, alphas plain SGD lr 3e-4 without weight decay."""
    expected = FIGURES["snas_one_level"]
    assert min(expected["clip_norms"][0::2]) > 0.5 and min(expected["clip_norms"][1::2]) > 10
    net = tiny_float64_supernet(
        DARTS_OPS8, relaxation="gumbel_soft", tau=expected["temp"], drop_path_prob=0.3
    )
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    weights = torch.optim.SGD(net.weights(), 0.025, momentum=0.9, weight_decay=3e-4)
    term = ResourceConstraint(expected["resource_lambda"])
    architect = Architect(net, optimizer="sgd", weight_decay=0.0, grad_clip=10.0, extra_loss=term)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x, y = _data()
    torch.manual_seed(5)
    for _ in range(2):
        loss = architect.one_level_loss(F.cross_entropy(net(x), y))
        weight_step(weights, scaler, loss, net.weights(), 0.5, architect=architect)
    _close(net.alphas_normal, expected["alphas_normal"], atol=1e-12)
    _close(net.alphas_reduce, expected["alphas_reduce"], atol=1e-12)
    _close(net.classifier.weight, expected["classifier_weight"], atol=1e-12)
    for name, p in net.named_parameters():
        if name.startswith("alphas"):
            continue
        delta = (p - before[name]).detach().flatten()
        probe = torch.arange(delta.numel(), dtype=torch.float64).remainder(7) - 3
        summary = torch.stack([delta.sum(), (delta**2).sum(), (delta * probe).sum()])
        _close(summary, expected["weight_changes"][name], rtol=1e-7, atol=1e-13)


def test_search_drop_path_draws_as_the_reference_path():
    """Drop path on the supernet's edges: the fast path draws the reference path's masks."""
    x, _ = _data()
    logits = []
    for reference in (False, True):
        net = tiny_float64_supernet(DARTS_OPS8, drop_path_prob=0.3)
        set_reference_path(net, reference)
        torch.manual_seed(3)
        logits.append(net(x))
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-10, atol=1e-12)
    dropping = tiny_float64_supernet(DARTS_OPS8, drop_path_prob=0.3).eval()
    plain = tiny_float64_supernet(DARTS_OPS8).eval()  # no drop path out of training mode
    torch.testing.assert_close(dropping(x), plain(x), rtol=0, atol=0)
    assert not torch.allclose(logits[0], plain.train()(x))  # but in it


def test_the_resource_constraint_refuses_what_it_cannot_count():
    with pytest.raises(ValueError, match="costs must be"):
        ResourceConstraint(costs="latency")
    with pytest.raises(ValueError, match="run the network first"):
        ResourceConstraint()(_snas_resource_supernet())
    with pytest.raises(ValueError, match="a Linear has none"):
        ResourceConstraint()(torch.nn.Linear(2, 2))


def test_gdas_runs_only_the_sampled_ops():
    net = tiny_float64_supernet(DARTS_OPS8, relaxation="gumbel_hard", tau=4.0)
    ran = []
    for edge in net.cells[0]._ops:
        for i, op in enumerate(edge._ops):
            op.register_forward_hook(lambda *_, i=i: ran.append(i))
    torch.manual_seed(5)
    (_, index_normal), _ = net.relaxed()
    torch.manual_seed(5)
    net(_data()[0])
    assert ran == index_normal.flatten().tolist()  # one op per edge, the sampled one


def test_hard_sampling_refuses_partial_channels():
    with pytest.raises(ValueError, match="partial_channels"):
        SearchNetwork(4, 3, 3, steps=2, relaxation="gumbel_hard", partial_channels=2)


def test_fairdarts_matches_authors_code():
    expected = FIGURES["fairdarts"]
    net = tiny_float64_supernet(DRNAS_OPS, relaxation="sigmoid")  # FairDARTS' seven ops, as DrNAS'
    zero_one = ZeroOneLoss(10.0)
    x, y = _data()
    _close(zero_one(net), expected["zero_one"])
    loss = F.cross_entropy(net(x), y) + zero_one(net)
    _close(loss, expected["loss"])
    grad_normal, grad_reduce = torch.autograd.grad(loss, net.arch_parameters())
    _close(grad_normal, expected["grad_normal"])
    _close(grad_reduce, expected["grad_reduce"])

    # FairDARTS' architect: Adam lr 3e-3, betas (0.9, 0.999), weight decay 1e-3, first order.
    architect = Architect(net, lr=3e-3, betas=(0.9, 0.999), weight_decay=1e-3, extra_loss=zero_one)
    architect.step(x, y, x, y, eta=0.1)
    _close(net.alphas_normal, expected["step_normal"], atol=1e-12)
    _close(net.alphas_reduce, expected["step_reduce"], atol=1e-12)
    # Their 'darts' parse reads the sigmoids: our genotype reads the relaxation's readout.
    genotype = net.genotype(skip_primitive=None)
    assert _pairs(genotype.normal) == expected["genotype"]["normal"]
    assert _pairs(genotype.reduce) == expected["genotype"]["reduce"]
    for half, alphas in (("normal", net.alphas_normal), ("reduce", net.alphas_reduce)):
        cell = threshold_cell(torch.sigmoid(alphas).detach().numpy(), DRNAS_OPS, 2, 0.75)
        assert _pairs(cell) == expected["genotype_threshold_0.75"][half]
