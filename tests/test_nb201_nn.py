"""NAS-Bench-201's networks equal the authors' code, in float64 (figures pinned below)."""

from __future__ import annotations

import gin
import pytest
import torch
import torch.nn.functional as F

from sharpdarts.core.nb201_arch import parse_arch
from sharpdarts.engine import search_job
from sharpdarts.errors import UserError
from sharpdarts.nn.nb201 import NB201Network, NB201SearchNetwork, load_original_state_dict

# A cell with every op: edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.
ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def fill(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every float tensor of the state dict from one generator, in state-dict order (running
    variances in [0.5, 1.5), all else in [-1, 1)); the oracle fills ours the same way."""
    generator = torch.Generator().manual_seed(seed)
    model.double()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator, dtype=torch.float64)
                tensor.copy_(0.5 + values if name.endswith("running_var") else 2 * values - 1)
    return model


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 8x8 images and their labels."""
    generator = torch.Generator().manual_seed(1)
    x = 2 * torch.rand(2, 3, 8, 8, generator=generator, dtype=torch.float64) - 1
    return x, torch.tensor([1, 3])


# Figures of the authors' code, computed by building their networks in float64 on CPU, copying
# the weights of ``fill(ours)`` into theirs key for key (strict load), and running them on
# ``inputs()`` (our networks gave the same figures bit for bit). Sources:
#   xautodl: github.com/D-X-Y/AutoDL-Projects @ f46486e21b71ae6459a700be720d7648b5429569
#     (TinyNetwork; GenericNAS201Model with set_algo('darts-v1') + cal mode 'joint', and
#     set_algo('gdas') + cal mode 'gdas');
#   DrNAS: github.com/xiangning-chen/DrNAS @ f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0
#     (201-space/search_model.py TinyNetwork, species='dirichlet', k = partial channels,
#     pruning(3) then pruning(2) for the pruned row).
# Search figures: torch.manual_seed(7) just before the forward (the method's one random draw),
# train mode, cross-entropy on the labels; grad_rows is (dL/dalpha * [0, 1, 2, 3, 4]).sum(1).
TINY = {
    "train": (
        [-0.5763926698040217, 1.8486182080620464, 0.4023855926700157, 0.6509288060150462,
         -0.28797986635945216, -0.04544594200196839, 1.6290992916583624, 0.40337991830341635,
         -0.10715371826317821, -1.8524303550808245],
        3.5707235902411107,
    ),
    "eval": (
        [6.659540885220714, 8.568798912670433, 5.526932550662127, -0.08822355784560965,
         -1.7308704725000397, 4.9522320977490315, 4.52734002097105, 0.6576175668680431,
         7.268871090466186, -6.320448799986831],
        58.47859639495077,
    ),
}  # fmt: skip
GENOTYPE = "|none~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|"
SEARCH = {
    ("darts", 1, ()): (
        [-1.3045947235894588, -1.272273358550781, -0.4473769030986462, 0.13724641324738585,
         2.3273459103826495, 1.491170674887042, 1.2315670494512532, -0.8416445983857568,
         -0.8329279831841954, -0.7225778479126752],
        -2.8314378740676323,
        [0.46273665671105535, 0.568999771465517, -0.7117119366425735, -0.19976532112718892,
         0.2151266498420662, -0.21569719641855162],
        4.699784129373987,
    ),
    ("gdas", 1, ()): (
        [-1.2419224071204729, -1.6699181689927758, -0.973950998931522, -0.2998493667151576,
         2.3476661369950738, 1.816364229847001, 0.28888931208621504, -0.21484561800513213,
         -1.4979570917862224, -0.3018183168262093],
        -3.31482014530526,
        [0.0, -0.008154958978770324, 0.009009238084377244, 0.028102153726450564,
         -0.008650196612416197, -0.009054749960545122],
        0.09779011605453292,
    ),
    ("drnas", 1, ()): (
        [0.8295838801589108, -1.2106589883728427, 0.22871512167016828, -1.2323151905761436,
         -0.6411678980521338, -0.5886085494883926, 1.439504030815221, -0.1911209366891684,
         2.141781993204215, 1.2863500348552122],
        1.6627612447835525,
        [0.05823952300758328, -0.21891608863653006, 0.0702468298260962, 0.09927560843046945,
         0.11860954433850149, 0.10458854622327379],
        0.9460718535582235,
    ),
    ("drnas", 2, ()): (
        [1.0560079457650273, 0.7318846575503344, -0.9073277302121321, 0.8865781160218131,
         2.2898839207794577, -0.746999890343806, -0.6232552864649452, -1.9589419706639375,
         1.2133941320566035, -0.11998565063457162],
        3.241701904715952,
        [-0.1330488513534343, 0.011819192359189414, -0.16766098157518244, -0.028125145551302633,
         -0.008442109245243676, 0.014687060538822974],
        0.4313880466892534,
    ),
    ("drnas", 2, (3, 2)): (
        [1.1879912174169223, 0.6949718399610731, -0.9353936192039318, 1.1571207425384058,
         2.3807107788802204, -1.0481467222591858, -1.0556222170872034, -1.729466775105863,
         1.213530548827037, -0.4572234868121712],
        3.032323420552663,
        [-0.011788949231460882, -0.0013020383217565792, 0.08037145181576201,
         -0.06596215424887025, 0.06890191999464076, 0.01404853870758399],
        0.3253753756028692,
    ),
}  # fmt: skip
# xautodl's TinyNetworkDarts and TinyNetworkGDAS (same commit; the NAS-Bench-201 paper's
# searches, exps/NAS-Bench-201-algos): an affine, tracked last BN (``plain_lastact=True``).
PLAIN = {
    "darts": (
        [-1.0856561314608635, -0.23776278312169297, 2.2894593895827553, 1.3032314713459625,
         -0.811354978706655, -2.2111770311749437, -0.12844347873545625, -0.33706629590103726,
         1.1198550455608793, -0.04091580610242551],
        0.16324084677525064,
        [-0.2424073814989863, -0.21699528865116616, 0.18766169204017924, -0.2522153666694814,
         0.1379560775390534, -0.12443034619825574],
        1.5534556801344193,
    ),
    "gdas": (
        [-1.1390118228095265, -0.09547636602445797, 2.4726945332442005, 1.5404189869333182,
         -0.9589336837719391, -2.3558678012818297, -0.1589922557568333, -0.061645002616455113,
         1.4047438559970526, -0.5504982216464345],
        0.2509914003574749,
        [0.0, -0.006064176222006025, 0.006699428457801063, 0.0016908327312605696,
         -0.0008939686010730262, -0.002115771163107436],
        0.027613728605416023,
    ),
}  # fmt: skip
# DrNAS's progressive step at C=8, N=1: K=4, pruning(3), torch.manual_seed(5), wider(2) (their
# random channel copies; every tensor of the state dicts equal), then the forward as above.
WIDER = (
    [0.09729342198875132, -1.6667879379248285, 1.6787012511154558, 2.1285564331041638,
     -0.3426134103539562, 1.9238544164532687, -2.3794392832589812, -1.833996323284214,
     0.9561106532926487, -0.00697809033548602],
    0.06066696435023555,
    [0.09683397525663472, -0.030827118359057652, 0.06188923565385209, 0.025131350925130885,
     -0.2676932514563572, -0.02254748828908079],
    1.028692478905899,
    38928,
)  # fmt: skip
# Genotypes of alphas = torch.randn(6, 5) from torch.Generator().manual_seed(seed), float64, read
# by xautodl's GenericNAS201Model.genotype and DrNAS's genotype() (the same strings).
GENOTYPES = {
    3: "|nor_conv_1x1~0|+|nor_conv_1x1~0|none~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
    4: "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
}
# Parameters of TinyNetwork(C=16, N=5) in xautodl (same commit), per class count: CIFAR-10,
# CIFAR-100, ImageNet16-120.
BEST = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    + "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
ALL_CONV = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    + "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
PARAMS = {
    ARCH: {10: 587386, 100: 593236, 120: 594536},
    BEST: {10: 1288506, 100: 1294356, 120: 1295656},
    ALL_CONV: {10: 1531546, 100: 1537396, 120: 1538696},
}
TOL = {"rel": 1e-10, "abs": 1e-12}


def _search(method: str, k: int = 1, prune=(), **options) -> NB201SearchNetwork:
    model = fill(NB201SearchNetwork(C=4, N=1, method=method, partial_channels=k, **options))
    for keep in prune:
        model.prune(keep)
    return model.train()


def _run(model, seed: int = 7):
    """Logits and dL/dalpha of one forward after ``torch.manual_seed(seed)``."""
    x, y = inputs()
    torch.manual_seed(seed)
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), model.arch_parameters())
    return logits.detach(), grad


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_network_logits_equal_xautodl_tiny_network(mode):
    model = fill(NB201Network(ARCH, C=4, N=1, num_classes=10))
    logits = model(inputs()[0])  # train mode; it updates the running statistics
    if mode == "eval":
        logits = model.eval()(inputs()[0])
    row, total = TINY[mode]
    assert logits[0].tolist() == pytest.approx(row, **TOL)
    assert logits.sum().item() == pytest.approx(total, **TOL)


@pytest.mark.parametrize("arch", sorted(PARAMS))
def test_parameter_counts_equal_xautodl_for_the_three_datasets(arch):
    for num_classes, count in PARAMS[arch].items():
        model = NB201Network(arch, num_classes=num_classes)
        assert sum(p.numel() for p in model.parameters()) == count
    # ImageNet16-120's 16x16 images go through the same network.
    small = NB201Network(arch, C=4, N=1, num_classes=120)
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 120)


CASES = [(*key, {}, SEARCH[key]) for key in sorted(SEARCH)] + [
    (method, 1, (), {"plain_lastact": True}, PLAIN[method]) for method in sorted(PLAIN)
]


@pytest.mark.parametrize("method,k,prune,options,figures", CASES)
def test_search_logits_alpha_gradients_and_genotype_equal_the_authors(
    method, k, prune, options, figures
):
    model = _search(method, k, prune, **options)
    logits, grad = _run(model)
    row, total, grad_rows, grad_abs = figures
    assert logits[0].tolist() == pytest.approx(row, **TOL)
    assert logits.sum().item() == pytest.approx(total, **TOL)
    assert (grad * torch.arange(5.0, dtype=grad.dtype)).sum(1).tolist() == pytest.approx(
        grad_rows, **TOL
    )
    assert grad.abs().sum().item() == pytest.approx(grad_abs, **TOL)
    assert model.genotype() == GENOTYPE


def test_drnas_widening_equals_drnas():
    model = fill(NB201SearchNetwork(C=8, N=1, method="drnas", partial_channels=4))
    model.prune(3)
    torch.manual_seed(5)
    model.wider(2)
    logits, grad = _run(model.train())
    row, total, grad_rows, grad_abs, count = WIDER
    assert logits[0].tolist() == pytest.approx(row, **TOL)
    assert logits.sum().item() == pytest.approx(total, **TOL)
    assert (grad * torch.arange(5.0, dtype=grad.dtype)).sum(1).tolist() == pytest.approx(
        grad_rows, **TOL
    )
    assert grad.abs().sum().item() == pytest.approx(grad_abs, **TOL)
    assert sum(p.numel() for p in model.parameters()) == count
    with pytest.raises(UserError, match="only go down"):
        model.wider(4)


@pytest.mark.parametrize("method", ["gdas", "drnas"])
def test_genotypes_of_given_alphas_equal_the_authors(method):
    model = NB201SearchNetwork(C=4, N=1, method=method).double()
    for seed, expected in GENOTYPES.items():
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            model.alphas.copy_(torch.randn(6, 5, generator=generator, dtype=torch.float64))
        assert model.genotype() == expected


@pytest.mark.parametrize("method", ["gdas", "drnas"])
def test_one_draw_per_forward_from_the_global_seed(method):
    model = _search(method)
    first, again, other = _run(model, 3)[0], _run(model, 3)[0], _run(model, 4)[0]
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_gdas_runs_one_op_per_edge_and_keeps_every_weight_in_the_graph():
    model = _search("gdas")
    torch.manual_seed(7)
    weights, choice = model.op_weights()
    one_hot = torch.zeros_like(weights).scatter(1, torch.tensor(choice)[:, None], 1.0)
    assert torch.allclose(weights, one_hot, rtol=0, atol=1e-15)
    _, grad = _run(model, 7)
    # The non-sampled ops' alphas get a gradient too, through their weights.
    assert (grad[one_hot == 0] != 0).sum() > 10


def test_drnas_pruning_keeps_the_largest_alphas_and_saves_the_mask():
    model = _search("drnas", k=2, prune=(3,))
    assert model.mask.sum(1).tolist() == [3] * 6
    assert (model.alphas[~model.mask] == 0).all()
    weights, _ = model.op_weights()
    assert (weights[~model.mask] == 0).all()
    resumed = NB201SearchNetwork(C=4, N=1, method="drnas", partial_channels=2).double()
    resumed.load_state_dict(model.state_dict())
    assert torch.equal(resumed.mask, model.mask)
    with pytest.raises(UserError, match="DrNAS"):
        _search("darts").prune(3)


def _authors_keys(state: dict, method: str, plain: bool = False) -> dict:
    """Our state dict under the authors' names: xautodl's GenericNAS201Model (``_stem``,
    ``_cells``, ``arch_parameters``), its TinyNetworkDarts/GDAS (``arch_parameters``), DrNAS
    (``_arch_parameters``)."""
    if method == "drnas":
        return {("_arch_parameters" if k == "alphas" else k): v for k, v in state.items()}
    renamed = {}
    for key, value in state.items():
        if key.split(".")[0] in ("stem", "cells") and not plain:
            key = "_" + key
        renamed["arch_parameters" if key == "alphas" else key] = value
    return renamed


@pytest.mark.parametrize(
    "method,k,count,conv_bias,options",
    # The authors' state dicts at C=4, N=1 have 218 (xautodl's GenericNAS201Model), 220 (its
    # TinyNetworkDarts/GDAS: the last BN's affine too) and 184 (DrNAS) entries: xautodl's
    # search convs have a bias (its BN has no affine), DrNAS's never do.
    [
        ("darts", 1, 218, True, {}),
        ("gdas", 1, 218, True, {}),
        ("gdas", 1, 220, True, {"plain_lastact": True}),
        ("drnas", 2, 184, False, {}),
    ],
)
def test_load_original_state_dict_takes_the_authors_names(method, k, count, conv_bias, options):
    model = _search(method, k, **options)
    state = _authors_keys(model.state_dict(), method, bool(options))
    assert len(state) == count
    cells = "cells" if method == "drnas" or options else "_cells"
    assert (f"{cells}.0.edges.3<-2.3.op.1.bias" in state) == conv_bias
    fresh = NB201SearchNetwork(C=4, N=1, method=method, partial_channels=k, **options).double()
    load_original_state_dict(fresh, {"search_model": state} if method != "drnas" else state)
    assert torch.equal(_run(fresh)[0], _run(model)[0])
    with pytest.raises(UserError, match="do not fit"):
        load_original_state_dict(NB201SearchNetwork(C=8, N=1, method=method), state)


def test_load_original_state_dict_of_a_tiny_network_checkpoint():
    model = fill(NB201Network(ARCH, C=4, N=1))
    state = model.state_dict()
    assert len(state) == 93  # as xautodl's TinyNetwork at C=4, N=1
    fresh = load_original_state_dict(NB201Network(ARCH, C=4, N=1).double(), {"state_dict": state})
    x = inputs()[0]
    assert torch.equal(fresh(x), model(x))


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="arch string"):
        NB201Network("|conv~0|")
    with pytest.raises(UserError, match="method"):
        NB201SearchNetwork(method="enas")
    with pytest.raises(UserError, match="partial_channels"):
        NB201SearchNetwork(method="darts", partial_channels=2)


def test_networks_are_gin_configurable_and_take_in_channels():
    with gin.unlock_config():
        gin.parse_config(
            [f"NB201Network.arch = '{ARCH}'", "NB201Network.C = 4", "NB201Network.N = 1"]
        )
    try:
        model = NB201Network(num_classes=5, in_channels=1)
    finally:
        gin.clear_config()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 5)
    search = NB201SearchNetwork(C=4, N=1, method="gdas", in_channels=1, num_classes=5)
    assert search(torch.randn(2, 1, 8, 8)).shape == (2, 5)
    assert search.tau == 10.0 and NB201SearchNetwork(C=4, N=1).tau is None
    assert len(search.weights()) + 1 == len(list(search.parameters()))


def test_genotype_can_leave_none_out_as_darts_does():
    model = _search("darts")
    assert model.genotype() == GENOTYPE
    with torch.no_grad():
        model.alphas[:, 0] = 10.0  # 'none' wins every edge unless it is left out
    assert model.genotype() == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert "none" not in parse_arch(model.genotype(skip_primitive="none"))
    with pytest.raises(UserError, match="not a NAS-Bench-201 op"):
        model.genotype(skip_primitive="zero")


@pytest.mark.parametrize("method", ["darts", "gdas", "drnas", "snas", "pc_darts"])
def test_the_search_job_searches_the_space(method):
    gin.parse_config(
        [
            "make_context.device = 'cpu'",
            "build_datasets.name = 'synthetic'",
            "build_datasets.synthetic_shape = (3, 8, 8)",
            "build_datasets.synthetic_size = (8, 4)",
            "build_datasets.synthetic_classes = 3",
            "search.epochs = 1",
            "search.batch_size = 4",
            "search.show_progress = False",
            "search.skip_primitive = None",
            "search.network = @NB201SearchNetwork",
            "NB201SearchNetwork.C = 4",
            "NB201SearchNetwork.N = 1",
            f"NB201SearchNetwork.method = '{method}'",
        ]
    )
    job = search_job.search(seed=0, build_only=True)
    before = job.model.alphas.detach().clone()
    final = job.fit(None)
    assert not torch.equal(job.model.alphas, before)  # the architect stepped the alphas
    assert parse_arch(final["genotype"]) and final["genotype"] == job.model.genotype()
    assert final["best_genotype"] == final["genotype"]
