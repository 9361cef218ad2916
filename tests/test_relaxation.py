"""Relaxations (sharpdarts.nn.relaxation) against figures computed with the authors' code.

The figures below were computed in float64 on CPU by running the authors'
code itself, from the alphas of ``_alphas()`` and ``torch.manual_seed(7)`` just before the
draws (normal cell first, then reduction):

- gumbel_hard: GDAS, D-X-Y/AutoDL-Projects @ f46486e21b71ae6459a700be720d7648b5429569,
  ``xautodl/models/cell_searchs/search_model_gdas_nasnet.py`` (``NASNetworkGDAS.forward``'s
  ``get_gumbel_prob``, captured from a real forward, tau 3);
- dirichlet: DrNAS, xiangning-chen/DrNAS @ f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0,
  ``utils.process_step_matrix(alphas, 'dirichlet', None)``;
- gumbel_soft: SNAS, SNAS-Series/SNAS-Series @ 9a43adbdf90d4969b19e448c0d094091bc5efb4f,
  ``SNAS/model_search.py`` ``Network._get_categ_mask`` (temperature 0.5);
- sigmoid: FairDARTS, xiaomi-automl/FairDARTS @ 270cfc94ef4bf851f359ab5caf741f23316ea7c9,
  ``fairdarts/model_search.py`` (``F.sigmoid(alphas)``).

The gradients are those of ``sum(w_normal * COEF) + sum(w_reduce * COEF.flip(0)) ** 2``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sharpdarts.nn import relaxation
from sharpdarts.registry import UnknownNameError

TAU = {"gumbel_hard": 3.0, "gumbel_soft": 0.5, "dirichlet": 1.0, "sigmoid": 1.0}
COEF = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(5, 4)


def _alphas() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(5, 4, generator=g, dtype=torch.float64)
    reduce = torch.randn(5, 4, generator=g, dtype=torch.float64)
    return normal.requires_grad_(), reduce.requires_grad_()


FIGURES = {
    "gumbel_hard": {
        "normal": [
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
        ],
        "reduce": [
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 1.0, 0.0, 0.0],
        ],
        "index": [[3, 2, 3, 1, 0], [3, 1, 3, 3, 1]],
        "grad_normal": [
            [-0.0101447094014, -0.00784921073762, 0.00164888833622, 0.0163450318028],
            [-0.0104832978572, -0.00480531255543, 0.00523322264348, 0.0100553877691],
            [-0.00930215088522, -0.00581715080117, -0.000880567646586, 0.015999869333],
            [-0.00673781447053, -0.00349455744583, 0.00573528091035, 0.00449709100601],
            [-0.015659652021, 0.00097304120924, 0.0106510890718, 0.00403552173994],
        ],
        "grad_reduce": [
            [-0.00592543431398, -0.00353140104965, -0.000778921604942, 0.0102357569686],
            [-0.00643762978102, -0.0059437943927, 0.00171840671572, 0.010663017458],
            [-0.0145039111762, -0.00151890657624, 0.00142338775591, 0.0145994299965],
            [-0.00656315767509, -0.00544486557504, 0.00134021574107, 0.0106678075091],
            [-0.00898987711439, 0.0011734058142, 0.0038048970901, 0.00401157421009],
        ],
    },
    "dirichlet": {
        "normal": [
            [0.016948634864, 0.108512289653, 0.0347749467921, 0.839764128691],
            [0.44213931314, 0.288078871641, 0.268075098963, 0.0017067162562],
            [0.0765769813717, 0.395579268274, 0.000861355534594, 0.52698239482],
            [0.0218921639067, 0.793884325151, 0.0487757558804, 0.135447755062],
            [0.110522194552, 0.417460927729, 0.461871008304, 0.0101458694151],
        ],
        "reduce": [
            [5.88287991166e-05, 0.000495499720852, 0.35153237017, 0.64791330131],
            [0.00942211647531, 0.35805069926, 0.274216011757, 0.358311172508],
            [0.320211600188, 0.023087833788, 0.561612511437, 0.0950880545873],
            [0.0336437927673, 0.719962592091, 0.23879162643, 0.00760198871178],
            [0.790493059887, 0.155876579262, 0.053629877055, 4.83795477315e-07],
        ],
        "grad_normal": [
            [-0.0136779590258, -0.0361752090558, -0.00638045275878, 0.0141984839953],
            [-0.0380019967732, 0.00558645167332, 0.0375421718134, 0.00201787770564],
            [-0.0246986763555, -0.024428918146, 1.03529674413e-05, 0.0248901477952],
            [-0.00831234155443, -0.0102757282703, 0.0079872594953, 0.0321310807006],
            [-0.017605151641, -0.00883019374318, 0.0219597993776, 0.00548468761098],
        ],
        "grad_reduce": [
            [-1.22627755511e-06, -4.78674559181e-06, -0.000134096090678, 0.000107272967005],
            [-5.70947240003e-05, -0.000207736921574, 5.10286264969e-06, 0.000223189863462],
            [-0.000253454733011, -2.34560043434e-05, 0.000180059268629, 0.000135861430298],
            [-9.34092520438e-05, -6.76779258121e-05, 0.000219831149915, 4.67651536537e-05],
            [-0.00011520023583, 0.000181868321947, 0.000208875775038, 1.67335326769e-08],
        ],
    },
    "gumbel_soft": {
        "normal": [
            [0.000127540680602, 0.00594770499741, 0.114644934971, 0.879279819351],
            [0.742275189398, 0.250077952256, 0.00479623373637, 0.00285062460959],
            [0.272181530018, 0.706691335917, 0.000114898948617, 0.0210122351172],
            [0.00972836126425, 0.22381541221, 0.0113304094361, 0.75512581709],
            [2.42002718554e-05, 0.36039781884, 3.28195846273e-05, 0.639545161303],
        ],
        "reduce": [
            [0.155576774165, 0.0617539951887, 0.727017711443, 0.0556515192039],
            [0.017413624118, 0.123186139365, 0.541684347213, 0.317715889304],
            [0.00274094440667, 0.990270265067, 0.00486115434108, 0.002127636185],
            [0.0085753363291, 0.983763543661, 0.00753673610191, 0.00012438390789],
            [0.359305419738, 0.0132809089977, 0.627254391401, 0.000159279863843],
        ],
        "grad_normal": [
            [-7.71440421493e-05, -0.00234537044835, -0.0210723915099, 0.0234949060004],
            [-0.0419146850003, 0.0385266253335, 0.00174863382306, 0.00163942584377],
            [-0.0441196426764, 0.0342250109384, 2.97538002179e-05, 0.00986487793782],
            [-0.00514446738207, -0.0712370852876, -0.00122094985104, 0.0776025025207],
            [-1.16115397852e-05, -0.0970493618418, -1.92840238815e-06, 0.097062901784],
        ],
        "grad_reduce": [
            [0.00445212934363, 0.000717014441017, -0.00392247184569, -0.00124667193895],
            [0.000639569969191, 0.00242948042966, 0.0014711703779, -0.00454022077675],
            [4.69099792778e-05, 0.000107367230208, -8.21422653015e-05, -7.21349441846e-05],
            [0.000145717923276, -1.32138886287e-05, -0.000128271791257, -4.23224338988e-06],
            [0.00774960574587, 6.05899898914e-05, -0.00780550493873, -4.69079703274e-06],
        ],
    },
    "sigmoid": {
        "normal": [
            [0.0902643233306, 0.407755733051, 0.257153417301, 0.730962100989],
            [0.495008978053, 0.552382060401, 0.54418180372, 0.303537233375],
            [0.559397710713, 0.675579070705, 0.210505376527, 0.788317157624],
            [0.334699947557, 0.815789061982, 0.389737488626, 0.290902879563],
            [0.662589989713, 0.740172511372, 0.538497449211, 0.320844937914],
        ],
        "reduce": [
            [0.220034504748, 0.246097512505, 0.762509205872, 0.716310308033],
            [0.260786858283, 0.725839063473, 0.481403719952, 0.703785487425],
            [0.729986271759, 0.528704454933, 0.536104306352, 0.745389451443],
            [0.317851375113, 0.790002966007, 0.514589549905, 0.268613402069],
            [0.697442255587, 0.427303477516, 0.35922174054, 0.0298972572285],
        ],
        "grad_normal": [
            [-0.0821166752643, -0.216070890456, -0.150809634688, -0.134554452778],
            [-0.144722420353, -0.117121319881, -0.0913860935547, -0.0556322056132],
            [-0.0389166176782, -0.0115353678911, 0.00874699278842, 0.0263484026242],
            [0.0585989191217, 0.0553653093856, 0.112662084593, 0.119424333499],
            [0.152965180957, 0.151829340617, 0.222358162572, 0.217903463729],
        ],
        "grad_reduce": [
            [0.121045545302, 0.150991652315, 0.167024457869, 0.209477622399],
            [0.0522955414946, 0.0755758831469, 0.121904749639, 0.124416678488],
            [-0.0320819731722, -0.0135190315882, 0.0134930122648, 0.0308901607332],
            [-0.129400235335, -0.0810072091941, -0.0948653039628, -0.0532946921659],
            [-0.217525116217, -0.225709154022, -0.187327233196, -0.0204565179432],
        ],
    },
}


def _tensor(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("name", list(FIGURES))
def test_relaxation_matches_authors_code(name):
    expected = FIGURES[name]
    normal, reduce = _alphas()
    relax = relaxation.get_relaxation(name).relax
    torch.manual_seed(7)
    rn, rr = relax(normal, TAU[name]), relax(reduce, TAU[name])
    torch.testing.assert_close(rn.weights, _tensor(expected["normal"]), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(rr.weights, _tensor(expected["reduce"]), rtol=1e-9, atol=1e-12)
    if "index" in expected:
        assert [rn.index.flatten().tolist(), rr.index.flatten().tolist()] == expected["index"]
    else:
        assert rn.index is None and rr.index is None
    loss = (rn.weights * COEF).sum() + (rr.weights * COEF.flip(0)).sum() ** 2
    grad_normal, grad_reduce = torch.autograd.grad(loss, [normal, reduce])
    torch.testing.assert_close(grad_normal, _tensor(expected["grad_normal"]), rtol=1e-8, atol=1e-13)
    torch.testing.assert_close(grad_reduce, _tensor(expected["grad_reduce"]), rtol=1e-8, atol=1e-13)


def test_gumbel_hard_is_one_hot_with_the_gradient_of_the_soft_sample():
    alphas = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.linspace(-1, 1, 30, dtype=torch.float64).reshape(6, 5)
    torch.manual_seed(3)
    hard = relaxation.gumbel_hard(alphas, 2.0)
    assert torch.equal(hard.weights.detach().argmax(-1, keepdim=True), hard.index)
    assert torch.equal(hard.weights.detach().sum(-1), torch.ones(6, dtype=torch.float64))
    # The straight-through estimator: the gradient is that of the soft sample of the same draw.
    torch.manual_seed(3)
    gumbels = -torch.empty_like(alphas).exponential_().log()
    soft = F.softmax((alphas.log_softmax(1) + gumbels) / 2.0, dim=1)
    (g_hard,) = torch.autograd.grad((hard.weights * weights).sum(), alphas)
    (g_soft,) = torch.autograd.grad((soft * weights).sum(), alphas)
    torch.testing.assert_close(g_hard, g_soft)


def test_gumbel_hard_draws_again_when_a_gumbel_is_infinite(monkeypatch):
    draws = iter([torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]])])
    monkeypatch.setattr(torch.Tensor, "exponential_", lambda self: self.copy_(next(draws)))
    hard = relaxation.gumbel_hard(torch.zeros(1, 2), 1.0)  # -log(0) is inf: drawn again
    # Second draw: gumbels -log(1), -log(2); the first op is larger.
    assert hard.index.tolist() == [[0]]


def test_softmax_and_readouts():
    alphas = torch.randn(4, 3)
    torch.testing.assert_close(relaxation.softmax(alphas).weights, F.softmax(alphas, -1))
    for name in relaxation.RELAXATIONS:
        readout = relaxation.RELAXATIONS[name].readout(alphas)
        expected = torch.sigmoid(alphas) if name == "sigmoid" else F.softmax(alphas, -1)
        torch.testing.assert_close(readout, expected)


def test_unknown_relaxation_names_the_known_ones():
    with pytest.raises(UnknownNameError, match="gumbel_hard"):
        relaxation.get_relaxation("gumbel_hrd")


def test_temperature_schedules():
    # GDAS: 10 at the first epoch, 0.1 at the last, linear between.
    taus = [relaxation.linear_tau(e, 5, 10.0, 0.1) for e in range(5)]
    assert taus == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])
    # SNAS: stepped before each epoch, a 150-epoch horizon, floored at the minimum.
    assert relaxation.snas_tau(0, 50, 1.0, 0.03) == pytest.approx(1 - 0.97 / 150)
    assert relaxation.snas_tau(149, 50, 1.0, 0.03) == pytest.approx(0.03)
    assert relaxation.snas_tau(400, 50, 1.0, 0.03) == pytest.approx(0.03)
