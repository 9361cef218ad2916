"""The fast paths compute what the reference path computes.

The reference path (``cells.set_reference_path``, computed by ``sharpdarts.nn.reference``:
the original DARTS mixed op, every op including the zero op, in the default memory format)
is the yardstick of benchmarks/. The
fast path (zero op skipped, one shared ReLU per edge, in-place accumulation, subsampled
convolutions for stride == dilation, channels-last) must give the same outputs and the same
gradients of weights and alphas, first and second order, for every primitive set and both
weightings. Tiny networks in double precision, so the tolerances are tight.

Partial channels and edge normalization (PC-DARTS) change the math on purpose: they are
tested for building, a search step, and the genotype rule. The shortcuts one by one:
test_fast.py; the cells and the reference module: test_cells.py.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.core import genotypes
from sharpdarts.engine.architect import Architect
from sharpdarts.nn.models import NetworkCIFAR, SearchNetwork
from sharpdarts.nn.ops import Zero
from sharpdarts.nn.reference import set_reference_path

TOL = dict(rtol=1e-9, atol=1e-11)

# (primitive set, op table): every set with the table it belongs to, plus the original
# DARTS op definitions (single-stage dilated convs, plain pools, conv_7x1_1x7).
PRIMITIVE_CASES = [
    ("PRIMITIVES", "OPS"),
    ("SHARPER_PRIMITIVES", "OPS"),
    ("DARTS_PRIMITIVES", "OPS"),
    ("MULTICHANNELNET_PRIMITIVES", "MULTICHANNELNET_OPS"),
    (
        [
            "none",
            "max_pool_3x3",
            "avg_pool_3x3",
            "skip_connect",
            "sep_conv_3x3",
            "dil_conv_3x3",
            "dil_conv_5x5",
            "conv_7x1_1x7",
            "nor_conv_3x3",
        ],
        "DARTS_OPS",
    ),
]
CASE_IDS = ["PRIMITIVES", "SHARPER", "DARTS", "MULTICHANNELNET", "DARTS_OPS"]


def search_pair(primitives, op_dict, weighting="scalar", channels_last=True, steps=2, **kwargs):
    """A reference-path network and a fast one with the same weights, in double precision."""
    torch.manual_seed(0)
    ref = (
        SearchNetwork(
            C=4,
            num_classes=3,
            layers=3,
            steps=steps,
            multiplier=steps,
            stem_multiplier=2,
            primitives=primitives,
            op_dict=op_dict,
            weighting=weighting,
            **kwargs,
        )
        .double()
        .train()
    )
    with torch.no_grad():  # far from uniform, so that every op's coefficient matters
        for a in ref.arch_parameters():
            a.normal_(0.0, 0.5)
    fast_net = (
        SearchNetwork(
            C=4,
            num_classes=3,
            layers=3,
            steps=steps,
            multiplier=steps,
            stem_multiplier=2,
            primitives=primitives,
            op_dict=op_dict,
            weighting=weighting,
            channels_last=channels_last,
            **kwargs,
        )
        .double()
        .train()
    )
    fast_net.load_state_dict(ref.state_dict())
    set_reference_path(ref)
    return ref, fast_net


def batches(n=4, size=8):
    g = torch.Generator().manual_seed(1)
    return [
        torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)
        if i % 2 == 0
        else torch.randint(0, 3, (n,), generator=g)
        for i in range(4)
    ]


def grads_of(model, x, y):
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    params = [p for _, p in model.named_parameters()]
    return logits, loss, torch.autograd.grad(loss, params)


def assert_same_grads(ref, fast_net, x, y):
    """The same logits, loss and gradient of every parameter (one pass of each network)."""
    logits_r, loss_r, g_r = grads_of(ref, x, y)
    logits_f, loss_f, g_f = grads_of(fast_net, x, y)
    torch.testing.assert_close(logits_f, logits_r, **TOL)
    torch.testing.assert_close(loss_f, loss_r, **TOL)
    names = [n for n, _ in ref.named_parameters()]
    assert names == [n for n, _ in fast_net.named_parameters()]
    for name, a, b in zip(names, g_r, g_f):
        torch.testing.assert_close(b, a, **TOL, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("primitives,op_dict", PRIMITIVE_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("weighting", ["scalar", "max_w"])
def test_fast_forward_and_gradients_equal_the_reference(primitives, op_dict, weighting):
    ref, fast_net = search_pair(primitives, op_dict, weighting)
    x, y, _, _ = batches()
    assert_same_grads(ref, fast_net, x, y)  # the outputs too, from the same forward pass


@pytest.mark.parametrize("size", [8, 9])
def test_fast_path_in_the_default_memory_format_and_odd_sizes(size):
    ref, fast_net = search_pair("SHARPER_PRIMITIVES", "OPS", channels_last=False)
    x, y, _, _ = batches(size=size)
    assert_same_grads(ref, fast_net, x, y)


def _engine_like_steps(model, order, data, steps=2):
    """``steps`` search steps as engine.search does them; returns the final state."""
    tx, ty, vx, vy = data
    opt = torch.optim.SGD(model.weights(), 0.1, momentum=0.9, weight_decay=3e-4)
    arch = Architect(model, order=order, lr=0.05)
    for _ in range(steps):
        arch.step(tx, ty, vx, vy, eta=0.1, weight_optimizer=opt)
        loss = F.cross_entropy(model(tx), ty)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.weights(), 5.0)
        opt.step()
    alpha_grads = [a.grad.clone() for a in model.arch_parameters()]
    return alpha_grads, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize(
    "primitives,op_dict,weighting",
    [
        ("PRIMITIVES", "OPS", "scalar"),
        ("DARTS_PRIMITIVES", "OPS", "max_w"),
        (PRIMITIVE_CASES[-1][0], "DARTS_OPS", "scalar"),
    ],
    ids=["PRIMITIVES", "DARTS", "DARTS_OPS"],
)
def test_search_steps_give_the_same_alphas_and_weights(order, primitives, op_dict, weighting):
    # One node a cell: a node of two edges is as much of the fast path as an architecture and
    # weight step take; every node of two-node cells is compared above, pass by pass.
    ref, fast_net = search_pair(primitives, op_dict, weighting, steps=1)
    data = batches()
    grads_r, state_r = _engine_like_steps(ref, order, data)
    grads_f, state_f = _engine_like_steps(fast_net, order, data)
    for a, b in zip(grads_r, grads_f):
        torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-10)
    assert state_r.keys() == state_f.keys()
    for k in state_r:  # alphas, weights and BN running statistics
        torch.testing.assert_close(
            state_f[k], state_r[k], rtol=1e-7, atol=1e-10, msg=lambda m: f"{k}: {m}"
        )


def test_zero_op_is_not_called_on_the_fast_path(monkeypatch):
    calls = []
    original = Zero.forward
    monkeypatch.setattr(Zero, "forward", lambda self, x: calls.append(1) or original(self, x))
    ref, fast_net = search_pair("DARTS_PRIMITIVES", "OPS")
    x, y, _, _ = batches()
    F.cross_entropy(fast_net(x), y).backward()
    assert calls == []
    ref(x)
    assert len(calls) == sum(isinstance(m, Zero) for m in ref.modules()) > 0


def test_a_relu_swapped_for_another_activation_is_not_shared():
    ref, fast_net = search_pair("DARTS_PRIMITIVES", "OPS")
    for model in (ref, fast_net):
        for module in model.modules():
            for name, child in module.named_children():
                if type(child) is nn.ReLU:
                    setattr(module, name, nn.Softplus())
    x, y, _, _ = batches()
    assert_same_grads(ref, fast_net, x, y)


def test_fast_path_at_sixteen_channels():
    """C=16 reaches the shortcuts that small test networks do not (1x1 convs as products)."""
    torch.manual_seed(0)
    kwargs = dict(
        C=16,
        num_classes=3,
        layers=3,
        steps=2,
        multiplier=2,
        stem_multiplier=1,
        primitives="DARTS_PRIMITIVES",
    )
    ref = SearchNetwork(**kwargs).double().train()
    fast_net = SearchNetwork(channels_last=True, **kwargs).double().train()
    fast_net.load_state_dict(ref.state_dict())
    set_reference_path(ref)
    x, y, _, _ = batches(n=2)
    assert_same_grads(ref, fast_net, x, y)


def test_options_keep_the_state_dict_keys():
    plain = SearchNetwork(C=4, num_classes=3, layers=3, steps=2, multiplier=2)
    cl = SearchNetwork(C=4, num_classes=3, layers=3, steps=2, multiplier=2, channels_last=True)
    set_reference_path(cl)
    assert list(plain.state_dict()) == list(cl.state_dict())
    assert [p.shape for p in plain.parameters()] == [p.shape for p in cl.parameters()]


# ---- partial channels and edge normalization (PC-DARTS: different math, on purpose) -------


def pc_network(**kwargs):
    torch.manual_seed(0)
    return SearchNetwork(
        C=8,
        num_classes=3,
        layers=3,
        steps=2,
        multiplier=2,
        primitives="DARTS_PRIMITIVES",
        partial_channels=4,
        edge_normalization=True,
        **kwargs,
    ).train()


def test_partial_channels_build_step_and_genotype():
    model = pc_network()
    arch = model.arch_parameters()
    assert [tuple(a.shape) for a in arch] == [(5, 8), (5, 8), (5,), (5,)]
    assert {id(a) for a in arch}.isdisjoint(id(w) for w in model.weights())
    # Every op sees C // 4 channels.
    edge = model.cells[0]._ops[0]
    assert edge._ops[4].op[1].in_channels == 2  # C=8 in the first cell
    tx, ty, vx, vy = [
        torch.randn(4, 3, 8, 8),
        torch.randint(0, 3, (4,)),
        torch.randn(4, 3, 8, 8),
        torch.randint(0, 3, (4,)),
    ]
    before = [a.detach().clone() for a in arch]
    opt = torch.optim.SGD(model.weights(), 0.1, momentum=0.9)
    for order in (1, 2):
        Architect(model, order=order).step(tx, ty, vx, vy, eta=0.1, weight_optimizer=opt)
    assert all(not torch.equal(a.detach(), b) for a, b in zip(arch, before))  # betas move too
    loss = F.cross_entropy(model(tx), ty)
    opt.zero_grad()
    loss.backward()
    opt.step()
    g = model.genotype()
    assert len(g.normal) == 4 and len(g.reduce) == 4
    assert all(op in genotypes.DARTS_PRIMITIVES and op != "none" for op, _ in g.normal + g.reduce)


def test_partial_channels_fast_equals_its_reference_path():
    ref = pc_network().double()
    fast_net = pc_network(channels_last=True).double()
    fast_net.load_state_dict(ref.state_dict())
    set_reference_path(ref)
    x, y, _, _ = batches()
    assert_same_grads(ref, fast_net, x, y)


def test_partial_channels_must_divide_the_channels():
    with pytest.raises(ValueError, match="partial_channels"):
        SearchNetwork(C=6, num_classes=3, layers=3, partial_channels=4)


def test_genotype_ranks_edges_by_beta_times_alpha():
    model = pc_network()
    prims = model.primitives
    with torch.no_grad():
        for a in model.arch_parameters():
            a.zero_()
        # Node 1 (edges 2, 3, 4): alpha favours input 0 strongly, beta favours inputs 1 and 2
        # far more strongly; PC-DARTS keeps inputs 1 and 2.
        model.alphas_normal[2, prims.index("sep_conv_3x3")] = 1.0
        model.alphas_normal[3, prims.index("max_pool_3x3")] = 0.5
        model.alphas_normal[4, prims.index("dil_conv_3x3")] = 0.5
        model.betas_normal[3] = 3.0
        model.betas_normal[4] = 2.0
    g = model.genotype()
    assert g.normal[2:4] == [("max_pool_3x3", 1), ("dil_conv_3x3", 2)]
    plain = copy.deepcopy(model)
    plain.edge_normalization = False  # the alpha-only rule would keep input 0
    assert plain.genotype().normal[2] == ("sep_conv_3x3", 0)


@pytest.mark.parametrize("genotype", ["SHARPSEPCONV_DARTS", "SHARP_DARTS", "DARTS_V2"])
def test_fixed_network_fast_path_equals_the_reference_with_drop_path(genotype):
    torch.manual_seed(0)
    kwargs = dict(C=4, num_classes=3, layers=3, auxiliary=True, genotype=genotype)
    ref = NetworkCIFAR(**kwargs).double().train()
    fast_net = NetworkCIFAR(channels_last=True, **kwargs).double().train()
    fast_net.load_state_dict(ref.state_dict())
    set_reference_path(ref)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 3, (3,))
    outs = []
    for net in (ref, fast_net):
        net.drop_path_prob = 0.3
        torch.manual_seed(5)  # the same drop path masks
        logits, aux = net(x)
        loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        outs.append((loss, torch.autograd.grad(loss, list(net.parameters()))))
    torch.testing.assert_close(outs[1][0], outs[0][0], **TOL)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(b, a, **TOL)


def test_hooks_are_honoured_on_the_fast_path():
    _, fast_net = search_pair("PRIMITIVES", "OPS")
    seen = []
    for module in fast_net.modules():
        if isinstance(module, (nn.Conv2d, nn.ReLU)):
            module.register_forward_hook(lambda m, i, o: seen.append(type(m)))
    fast_net(batches()[0])
    n_convs = sum(isinstance(m, nn.Conv2d) for m in fast_net.modules())
    assert seen.count(nn.Conv2d) == n_convs  # every conv called once, shortcuts stood down
    assert nn.ReLU in seen
