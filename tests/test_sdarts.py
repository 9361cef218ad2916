"""SDARTS' perturbations (engine/perturbation.py) and DARTS-'s auxiliary skip
(nn/auxiliary_skip.py), exact to the authors' code in float64, and through the search job.

``sdarts_figures.json`` holds figures computed by running the authors' code on CPU in float64
with this file's network: our ``SearchNetwork`` built from seed 0 (``_net``: one train-mode
forward fills its batch-norm running statistics, which SDARTS-ADV's attack uses in eval mode)
had its weights, buffers and alphas copied into the authors' network; the authors' code then
ran from ``torch.manual_seed(5)``:

- SDARTS: xiangning-chen/SmoothDARTS @ d3dbfed06643d5fd4056edd90891ec9109634ada,
  ``sota/cnn/model_search.py`` ``Network`` (DARTS's ops without 'none', their 's5') and the
  weight step of ``sota/cnn/train_search.py`` (``softmax_arch_parameters``, then
  ``attacker/perturb.py`` ``Random_alpha`` or ``Linf_PGD_alpha`` with 7 steps, epsilon 0.1,
  then the loss with ``updateType='weight'``): the perturbed op weights, the loss and the
  gradients of five weight tensors.
- DARTS-: Meituan-AutoML/DARTS- @ adb81a8313b17d1a87593a53b0e802fc4199e9b1,
  ``src/search/model_search.py`` ``Network`` with ``--auxiliary_skip`` (DARTS's eight ops) at
  beta 1 and 0.3: logits, the gradients of both alphas and of two weight tensors (one the
  stride-2 skip's convolution), one first-order architecture step
  (``src/search/architect.py``, Adam lr 3e-4, decay 1e-3) and the genotype; and beta of the
  50 epochs from ``src/utils.py`` ``DecayScheduler`` (``--decay linear``, the defaults).
"""

from __future__ import annotations

import json
import pathlib

import gin
import pytest
import torch
import torch.nn.functional as F
from test_engine import (  # the search job's test helpers (tests/test_engine.py)
    SEARCH,
    SEARCH_CELL,
    SEARCH_GRID,
    configure,
    killed_search_resumes_exactly,
)
from test_family_exact import (
    DARTS_OPS8,
    DRNAS_OPS,
    _close,
    _data,
    _pairs,
    tiny_float64_supernet,
)

from sharpdarts.engine import search_job
from sharpdarts.engine.architect import Architect
from sharpdarts.engine.perturbation import AdversarialPGD, RandomSmoothing, clip_to_simplex
from sharpdarts.errors import UserError
from sharpdarts.nn import auxiliary_skip
from sharpdarts.nn.models import SearchNetwork

FIGURES = json.loads((pathlib.Path(__file__).parent / "sdarts_figures.json").read_text())
OPS7 = DRNAS_OPS  # DARTS's ops without 'none': SDARTS's DARTS space ('s5')


def _net(primitives, **kwargs) -> SearchNetwork:
    """The network the figures were computed from (test_family_exact's), its batch norms'
    running statistics filled by one train-mode forward."""
    net = tiny_float64_supernet(primitives, **kwargs)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        net(torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64))
    return net


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


# ---- SDARTS ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key, perturbation",
    [("sdarts_random", RandomSmoothing()), ("sdarts_pgd_linf", AdversarialPGD(steps=7))],
)
def test_sdarts_weight_step_matches_authors_code(key, perturbation):
    expected = FIGURES[key]
    net = _net(OPS7)
    alphas = [a.detach().clone() for a in net.arch_parameters()]
    x, y = _data()
    perturbation.epsilon = expected["epsilon"]
    torch.manual_seed(5)
    normal, reduce = perturbation(net, x, y, F.cross_entropy)
    assert net.training  # the attack's eval mode is undone
    _close(normal, expected["weights_normal"])
    _close(reduce, expected["weights_reduce"])
    loss = F.cross_entropy(net(x, op_weights=(normal, reduce)), y)
    _close(loss, expected["loss"])
    params = dict(net.named_parameters())
    names = list(expected["grads"])
    for name, grad in zip(names, torch.autograd.grad(loss, [params[n] for n in names])):
        _close(grad, expected["grads"][name])
    # The alphas are not touched: the weight step only sees the perturbed weights.
    assert all(torch.equal(a, b) for a, b in zip(net.arch_parameters(), alphas))


def test_the_perturbed_weights_stay_in_the_ball_and_on_the_simplex():
    net = _net(OPS7)
    x, y = _data()
    attack = AdversarialPGD(steps=3)
    attack.epsilon = 0.05
    torch.manual_seed(3)
    for w, alphas in zip(attack(net, x, y, F.cross_entropy), net.arch_parameters()):
        assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones(len(w), dtype=w.dtype))
        # clipping renormalises, so the ball holds before it: a loose bound after
        assert (w - F.softmax(alphas, -1)).abs().max() < 0.3


def test_clip_puts_a_row_of_zeros_on_its_largest_entry():
    rows = torch.tensor([[-0.2, -0.1, -0.3], [0.5, 1.5, -1.0]])
    torch.testing.assert_close(
        clip_to_simplex(rows), torch.tensor([[0.0, 1, 0], [1 / 3, 2 / 3, 0]])
    )


class _Bowl(torch.nn.Module):
    """A model whose loss is largest at softmax(alpha): every attack lowers it."""

    def __init__(self):
        super().__init__()
        self.alphas_normal = torch.nn.Parameter(torch.zeros(2, 3))
        self.alphas_reduce = torch.nn.Parameter(torch.ones(2, 3))

    def forward(self, x, op_weights):
        return -sum(((w - 1 / 3) ** 2).sum() for w in op_weights).reshape(1)


def test_an_attack_that_lowers_the_loss_returns_the_unperturbed_weights():
    attack = AdversarialPGD(steps=2)
    attack.epsilon = 0.1
    normal, reduce = attack(_Bowl(), None, None, lambda logits, y: logits.sum())
    torch.testing.assert_close(normal, torch.full((2, 3), 1 / 3))
    torch.testing.assert_close(reduce, torch.full((2, 3), 1 / 3))


def test_epsilon_grows_linearly_from_003_to_03():
    rs = RandomSmoothing()
    assert rs.epsilon_at(0, 50) == pytest.approx(0.03)
    assert rs.epsilon_at(25, 50) == pytest.approx(0.165)
    assert rs.epsilon_at(49, 50) == pytest.approx(0.03 + 0.27 * 49 / 50)


def test_the_search_perturbs_every_weight_step_not_the_architecture_step():
    configure(
        *SEARCH,
        *SEARCH_CELL,
        "import sharpdarts.engine.perturbation",
        "Architect.order = 1",
        "search.perturbation = @RandomSmoothing()",
        "search.epochs = 4",
    )
    job = search_job.search(seed=0, build_only=True)
    job.start_epoch(3)
    assert job.params.perturbation.epsilon == pytest.approx(0.03 + 0.27 * 2 / 4)
    seen = []
    forward = job.model.forward
    job.model.forward = lambda x, op_weights=None: seen.append(op_weights) or forward(x, op_weights)
    job.step_model = job.model
    x, y = next(iter(job.train_loader))
    job.train_step(x, y)
    assert seen[0] is None  # the architecture step: softmax(alpha)
    assert seen[-1] is not None and len(seen) == 2
    assert not torch.equal(seen[-1][0], F.softmax(job.model.alphas_normal, -1))


# ---- DARTS- ---------------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_darts_minus_matches_authors_code(beta):
    expected = FIGURES[f"darts_minus_{beta}"]
    net = _net(DARTS_OPS8, auxiliary_skip=True)
    net.auxiliary_skip.beta = beta
    x, y = _data()
    logits = net(x)
    _close(logits, expected["logits"])
    loss = F.cross_entropy(logits, y)
    params = dict(net.named_parameters())
    names = list(expected["grads"])
    grads = torch.autograd.grad(loss, net.arch_parameters() + [params[n] for n in names])
    _close(grads[0], expected["grad_normal"])
    _close(grads[1], expected["grad_reduce"])
    for name, grad in zip(names, grads[2:]):
        _close(grad, expected["grads"][name])
    Architect(net, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3).step(x, y, x, y, eta=0.025)
    _close(net.alphas_normal, expected["step_normal"], atol=1e-12)
    _close(net.alphas_reduce, expected["step_reduce"], atol=1e-12)
    genotype = net.genotype()
    assert _pairs(genotype.normal) == expected["genotype"]["normal"]
    assert _pairs(genotype.reduce) == expected["genotype"]["reduce"]


def test_beta_decays_as_their_scheduler():
    ours = [auxiliary_skip.linear_beta(e, 50) for e in range(50)]
    assert ours == pytest.approx(FIGURES["darts_minus_betas"], abs=1e-15)
    assert auxiliary_skip.linear_beta(60, 50) == pytest.approx(0.0)  # held after the stop
    assert auxiliary_skip.linear_beta(2, 50, start=5) == 1.0


def test_a_zero_beta_supernet_is_the_darts_supernet():
    plain, skipped = _net(DARTS_OPS8), _net(DARTS_OPS8, auxiliary_skip=True)
    skipped.load_state_dict(plain.state_dict(), strict=False)
    skipped.auxiliary_skip.beta = 0.0
    x, _ = _data()
    torch.testing.assert_close(skipped(x), plain(x), rtol=0, atol=1e-14)
    extra = set(skipped.state_dict()) - set(plain.state_dict())
    assert extra and all(".auxiliary_op." in k for k in extra)  # their key, no new alpha
    assert len(skipped.arch_parameters()) == 2


DARTS_MINUS = [
    *SEARCH,
    *SEARCH_CELL,
    "Architect.order = 1",
    "SearchNetwork.primitives = 'DARTS_PRIMITIVES'",
    "SearchNetwork.auxiliary_skip = True",
    "search.skip_beta_schedule = @linear_beta_schedule()",
]


def test_the_search_sets_beta_each_epoch_and_checkpoints_it():
    configure(*DARTS_MINUS, "search.epochs = 4")
    job = search_job.search(seed=0, build_only=True)
    betas = []
    for epoch in (1, 2, 3, 4):
        job.start_epoch(epoch)
        betas.append(job.model.auxiliary_skip.beta)
    assert betas == [1.0, 0.75, 0.5, 0.25]
    assert job.extra_state()["skip_beta"] == 0.25
    job.load_extra_state({**job.extra_state(), "skip_beta": 0.6})
    assert job.model.auxiliary_skip.beta == 0.6


def test_a_beta_schedule_without_the_skip_is_refused():
    configure(*SEARCH, *SEARCH_CELL, "search.skip_beta_schedule = @linear_beta_schedule()")
    with pytest.raises(UserError, match="auxiliary_skip = True"):
        search_job.search(seed=0, build_only=True)


# ---- Resume ---------------------------------------------------------------------------------
def test_a_killed_search_resumes_with_the_same_alphas(tmp_path, monkeypatch):
    """Both hooks at once (DARTS-'s beta and SDARTS-ADV's radius), to keep the test short."""
    configure(
        *DARTS_MINUS,
        "import sharpdarts.engine.perturbation",
        "search.perturbation = @AdversarialPGD()",
        "AdversarialPGD.steps = 1",
        "search.epochs = 2",
    )
    a, b = killed_search_resumes_exactly(tmp_path, monkeypatch)
    assert a["skip_beta"] == b["skip_beta"] == 0.5


@pytest.mark.parametrize(
    "network, match",
    [
        (["SearchNetwork.relaxation = 'sigmoid'"], "relaxation = 'softmax'"),
        (["SearchNetwork.relaxation = 'gumbel_hard'"], "relaxation = 'softmax'"),
        (["import sharpdarts.nn.multichannel.networks", *SEARCH_GRID], "MultiChannelNetwork has"),
    ],
)
def test_a_perturbation_refuses_networks_it_cannot_serve(network, match):
    configure(
        *SEARCH,
        *SEARCH_CELL,
        *network,
        "import sharpdarts.engine.perturbation",
        "search.perturbation = @RandomSmoothing()",
    )
    with pytest.raises(UserError, match=match):
        search_job.search(seed=0, build_only=True)
