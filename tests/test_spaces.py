"""Search spaces (``nn.spaces``): RobustDARTS's S1-S4 on the DARTS supernet, exact to theirs.

``rdarts_figures.json`` holds figures computed with automl/RobustDARTS @
3dec3fedaa1770614bbfd4b98f5299d946ea7ac6 on CPU in float64 (``.cuda()`` made a no-op): their
``src/spaces.py`` op lists, and their ``src/search/model_search.py`` ``Network`` (4 channels,
3 cells of 4 nodes, stem multiplier 1, 3 classes) with this file's network's weights and
alphas copied in (their alphas are the rows below), the same batch and ``torch.manual_seed(5)``
before each forward (so that S4's noise ops draw the same noise): the logits, the alphas'
gradients of the cross-entropy loss, and ``Network.genotype()`` of the given alphas; and on S1
the alphas and their gradients after one second-order step of their ``src/search/architect.py``.
"""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
import torch.nn.functional as F
from test_family_exact import tiny_float64_supernet

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.engine.architect import Architect
from sharpdarts.engine.search_job import _alphas, _genotype
from sharpdarts.face import runner
from sharpdarts.nn.models import SearchNetwork
from sharpdarts.nn.reference import set_reference_path
from sharpdarts.nn.spaces import SPACES, Noise, Space, get_space

FIGURES = json.loads((pathlib.Path(__file__).parent / "rdarts_figures.json").read_text())
SPACE_NAMES = ("s1", "s2", "s3", "s4")


def _supernet(space: str, **kwargs) -> SearchNetwork:
    """The network the figures were computed from: float64, seed 0, normal alphas, 4 nodes."""
    return tiny_float64_supernet(None, space=space, steps=4, multiplier=4, **kwargs)


def _cell_ops(net: SearchNetwork) -> dict[bool, list[list[str]]]:
    return {cell.reduction: [op.primitives for op in cell._ops] for cell in net.cells}


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_each_edge_mixes_the_ops_robustdarts_gives_it(name):
    net = SearchNetwork(4, 3, 3, steps=4, multiplier=4, space=name, op_dict="DARTS_OPS")
    theirs = FIGURES["spaces"][name]
    assert _cell_ops(net) == {False: theirs["normal"], True: theirs["reduce"]}
    # Their rectangular alphas: one column per op of an edge, in both cells.
    assert net.alphas_normal.shape == net.alphas_reduce.shape == (14, len(theirs["normal"][0]))
    for cell in net.cells:  # the modules are the named ops (a pool with its BN, as theirs)
        for ops, mixed in zip(theirs["reduce" if cell.reduction else "normal"], cell._ops):
            kinds = [
                type(op[0] if isinstance(op, torch.nn.Sequential) else op).__name__
                for op in mixed._ops
            ]
            assert len(kinds) == len(ops)
            assert ("Noise" in kinds) == ("noise" in ops) and ("Zero" in kinds) == ("none" in ops)
            assert ("MaxPool2d" in kinds) == ("max_pool_3x3" in ops)
    assert list(SPACES["s5"].ops) == genotypes_lib.DARTS_PRIMITIVES


@pytest.mark.parametrize("name", ["s1", "s4"])
def test_logits_and_alpha_gradients_equal_robustdarts(name):
    net = _supernet(name)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64), torch.tensor([0, 2])
    torch.manual_seed(5)
    logits = net(x)
    F.cross_entropy(logits, y).backward()
    theirs = FIGURES["supernet"][name]
    for ours, key in ((logits, "logits"), (net.alphas_normal.grad, "grad_normal")):
        expected = torch.tensor(theirs[key], dtype=torch.float64)
        torch.testing.assert_close(ours.detach(), expected, rtol=1e-8, atol=1e-12)
    expected = torch.tensor(theirs["grad_reduce"], dtype=torch.float64)
    torch.testing.assert_close(net.alphas_reduce.grad, expected, rtol=1e-8, atol=1e-12)
    if name == "s4":  # the noise is live: another seed, other logits
        torch.manual_seed(6)
        assert not torch.allclose(net(x), logits)
    # The original computation (the reference path) draws the same noise in the same order.
    torch.manual_seed(5)
    torch.testing.assert_close(set_reference_path(net)(x), logits, rtol=1e-10, atol=1e-13)


def test_second_order_architecture_step_on_s1_equals_robustdarts():
    """Their ``Architect.step(..., unrolled=True)`` (``src/search/architect.py``; arch Adam lr
    3e-4, betas (0.5, 0.999), decay 1e-3), after one SGD weight step (lr 0.025, momentum 0.9,
    decay 3e-4) on both, so that the unrolled weights use a momentum buffer. Stem multiplier 3:
    their ``Network.new()``, which builds the unrolled copy, keeps only C, classes and layers."""
    net = _supernet("s1", stem_multiplier=3)
    gen = torch.Generator().manual_seed(1)
    tx, vx = (torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    ty, vy = torch.tensor([0, 2]), torch.tensor([1, 0])
    opt = torch.optim.SGD(net.weights(), 0.025, momentum=0.9, weight_decay=3e-4)
    F.cross_entropy(net(tx), ty).backward()
    opt.step()
    architect = Architect(net, order=2, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    architect.step(tx, ty, vx, vy, eta=0.025, weight_optimizer=opt)
    theirs = FIGURES["second_order_s1"]
    for half in ("normal", "reduce"):
        alphas = getattr(net, f"alphas_{half}")
        expected = torch.tensor(theirs[f"grad_{half}"], dtype=torch.float64)
        torch.testing.assert_close(alphas.grad, expected, rtol=1e-8, atol=1e-12)
        expected = torch.tensor(theirs[f"alphas_{half}"], dtype=torch.float64)
        torch.testing.assert_close(alphas.detach(), expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_genotype_of_given_alphas_equals_robustdarts(name):
    net = SearchNetwork(4, 3, 3, steps=4, multiplier=4, space=name, op_dict="DARTS_OPS").double()
    theirs = FIGURES["genotype"][name]
    with torch.no_grad():
        net.alphas_normal.copy_(torch.tensor(theirs["alphas_normal"]))
        net.alphas_reduce.copy_(torch.tensor(theirs["alphas_reduce"]))
    genotype = net.genotype()  # skip_primitive 'none' (the search's default), absent in s1, s2, s4
    assert [list(p) for p in genotype.normal] == theirs["normal"]
    assert [list(p) for p in genotype.reduce] == theirs["reduce"]
    assert list(genotype.normal_concat) == theirs["concat"]
    if name == "s3":  # 'none' is some edge's strongest op, yet never chosen
        assert (net.alphas_normal.argmax(1) == 0).any()
        assert all(op != "none" for op, _ in genotype.normal + genotype.reduce)
    # The logged weights are spread over the space's ops, rows summing to one.
    logged = torch.tensor(net.logged_alphas()["alphas_normal"])
    assert logged.shape == (14, len(net.primitives))
    torch.testing.assert_close(logged.sum(1), torch.ones(14, dtype=logged.dtype))


def test_noise_is_fresh_normal_noise_in_train_and_eval_and_passes_no_gradient():
    op = Noise(stride=2)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    for training in (True, False):
        op.train(training)
        torch.manual_seed(3)
        noise = op(x)
        torch.manual_seed(3)
        assert torch.equal(noise, torch.randn(2, 3, 3, 3)) and not noise.requires_grad
    torch.manual_seed(3)  # the same draws whatever the input's memory format
    assert torch.equal(op(x.contiguous(memory_format=torch.channels_last)), noise)


def test_spaces_refuse_what_does_not_fit_and_primitive_sets_are_spaces():
    assert get_space("DARTS_PRIMITIVES").ops == tuple(genotypes_lib.DARTS_PRIMITIVES)
    assert get_space(["skip_connect", "sep_conv_3x3"]).uniform
    with pytest.raises(KeyError, match="s1"):
        get_space("s11")
    with pytest.raises(ValueError, match="same number of ops"):
        Space("x", normal=(("a", "b"),), reduce=(("a",),))
    with pytest.raises(ValueError, match="contradict"):
        Space("x", normal=(("a", "b"),), reduce=(("b", "a"),))
    assert Space("x", normal=(("b", "c"),), reduce=(("a", "b"),)).columns == ["a", "b", "c"]
    with pytest.raises(ValueError, match="14 edges"):
        SearchNetwork(4, 3, 2, steps=5, multiplier=4, space="s1")
    # A smaller cell takes the space's first edges, as RobustDARTS's cell reads them.
    net = SearchNetwork(4, 3, 3, steps=2, multiplier=2, space="s1", op_dict="DARTS_OPS")
    assert _cell_ops(net)[False] == FIGURES["spaces"]["s1"]["normal"][:5]


@pytest.mark.parametrize("experiment", ["search/darts_second_order", "search/gdas", "search/drnas"])
def test_every_method_searches_s1_with_one_binding(experiment, tmp_path):
    bindings = ["SearchNetwork.space = 's1'"]
    if experiment == "search/drnas":  # its stages keep 4 of 7 ops per edge; S1 has 2
        bindings.append("drnas_stages.keep_ops = (1,)")
    configured = runner.configure(experiment, bindings, True, str(tmp_path))
    job = runner.build_checked(configured, seed=0, data_root=None)
    model = job.model
    assert model.space is SPACES["s1"] and model.alphas_normal.shape[1] == 2
    job.start_epoch(1)
    job.train_arch = True  # DrNAS' warm-up would skip the architecture step
    before = [a.detach().clone() for a in model.arch_parameters()]
    x, y = next(iter(job.train_loader))
    loss, _ = job.train_step(x, y)
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, a) for b, a in zip(before, model.arch_parameters()))
    genotype = _genotype(model, job.params.skip_primitive)
    s1 = FIGURES["spaces"]["s1"]
    for half in ("normal", "reduce"):
        for op, j in genotype[half][:2]:  # node 0's edges 0 and 1
            assert op in s1[half][j]
    assert len(_alphas(model)["alphas_normal"][0]) == len(model.primitives)
