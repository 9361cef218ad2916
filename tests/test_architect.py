"""Architect: first- and second-order (unrolled) architecture gradients, Adam, state.

Numbers are compared in double precision on tiny search networks (3 cells, so both the
normal and the reduction alphas are used). BatchNorm runs in train mode: it normalises by
batch statistics, so the loss is a deterministic function of (weights, alphas).

Where gradients are compared numerically the network is made smooth: ReLU is swapped for
Softplus and max pooling left out of the primitives. With kinks, the unrolled objective
``L_val(w - eta * dL_train/dw, alpha)`` is not even continuous (a ReLU that flips when alpha
moves makes dL_train/dw jump), so neither finite differences of it nor the architect's
finite-difference Hessian-vector product would be meaningful to compare.
"""

import copy
import io

import gin
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sharpdarts.core import genotype_types
from sharpdarts.engine.architect import Architect
from sharpdarts.nn.models import SearchNetwork

ETA = 0.5  # large enough that the second-order term is far above the test tolerances
SMOOTH_PRIMITIVES = ["none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3"]


def make_model(primitives="DARTS_PRIMITIVES", weighting="scalar", double=True, spread=0.5, steps=2):
    model = SearchNetwork(
        C=4,
        num_classes=3,
        layers=3,
        steps=steps,
        multiplier=steps,
        stem_multiplier=2,
        primitives=primitives,
        weighting=weighting,
    )
    if double:
        model.double()
    with torch.no_grad():  # spread the alphas so softmax is far from uniform
        for a in model.arch_parameters():
            a.normal_(0.0, spread)
    return model.train()


def _softplus_for_relu(module):
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Softplus())
        else:
            _softplus_for_relu(child)


def smooth_model(steps=2):
    """A search network whose loss is smooth in weights and alphas (see module docstring)."""
    model = make_model(SMOOTH_PRIMITIVES, steps=steps)
    _softplus_for_relu(model)
    assert not any(isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in model.modules())
    return model


def batches(dtype=torch.float64, n=4, size=8):
    def batch():
        return torch.randn(n, 3, size, size, dtype=dtype), torch.randint(0, 3, (n,))

    return batch() + batch()  # train_x, train_y, valid_x, valid_y


def sgd_with_momentum(model, tx, ty, lr=0.1, momentum=0.9, weight_decay=3e-4):
    """An SGD optimizer on the weights that has taken one step, so momentum buffers exist."""
    opt = torch.optim.SGD(model.weights(), lr, momentum=momentum, weight_decay=weight_decay)
    F.cross_entropy(model(tx), ty).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    for a in model.arch_parameters():
        a.grad = None
    return opt


def named_weights(model):
    names = {id(p): n for n, p in model.named_parameters()}
    weights = model.weights()
    return [names[id(p)] for p in weights], weights


def scratch_buffers(model):
    return {n: b.clone() for n, b in model.named_buffers()}


def virtual_weights(model, opt, tx, ty, eta, create_graph):
    """w' = w - eta * (momentum * buf + dL_train/dw + wd * w), DARTS' virtual step, written
    out directly from the paper's formula (independently of the architect's code)."""
    names, weights = named_weights(model)
    group = opt.param_groups[0]
    loss = F.cross_entropy(functional_call(model, scratch_buffers(model), (tx,)), ty)
    grads = torch.autograd.grad(loss, weights, create_graph=create_graph)
    out = {}
    for n, w, g in zip(names, weights, grads):
        buf = opt.state[w]["momentum_buffer"]
        w0 = w.detach()  # momentum and decay terms do not depend on alpha
        out[n] = w0 - eta * (group["momentum"] * buf + g + group["weight_decay"] * w0)
    return out


def unrolled_loss(model, opt, tx, ty, vx, vy, eta, create_graph=False):
    """L_val(w', alpha), the second-order objective, as a function of the model's alphas."""
    params = virtual_weights(model, opt, tx, ty, eta, create_graph)
    out = functional_call(model, {**params, **scratch_buffers(model)}, (vx,))
    return F.cross_entropy(out, vy)


def exact_unrolled_grad(model, opt, tx, ty, vx, vy, eta):
    """d/dalpha L_val(w'(alpha), alpha) by autograd through the virtual step."""
    loss = unrolled_loss(model, opt, tx, ty, vx, vy, eta, create_graph=True)
    return torch.autograd.grad(loss, model.arch_parameters())


def finite_difference_unrolled_grad(model, opt, tx, ty, vx, vy, eta, h=1e-5):
    """The same gradient by central differences, one alpha entry at a time."""
    grads = []
    for a in model.arch_parameters():
        g = torch.zeros_like(a)
        flat, gflat = a.data.view(-1), g.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            plus = unrolled_loss(model, opt, tx, ty, vx, vy, eta).item()
            flat[i] = old - h
            minus = unrolled_loss(model, opt, tx, ty, vx, vy, eta).item()
            flat[i] = old
            gflat[i] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def rel_err(got, want):
    return (flat(got) - flat(want)).norm().item() / flat(want).norm().item()


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- construction and configuration ------------------------------------------------------


def test_adam_defaults_follow_the_paper():
    model = make_model(double=False)
    arch = Architect(model)
    assert arch.order == 1
    (group,) = arch.optimizer.param_groups
    assert group["lr"] == 3e-4
    assert tuple(group["betas"]) == (0.5, 0.999)
    assert group["weight_decay"] == 1e-3
    assert [id(p) for p in group["params"]] == [id(p) for p in model.arch_parameters()]
    assert isinstance(arch.criterion, torch.nn.CrossEntropyLoss)


def test_hyperparameters_are_gin_configurable():
    model = make_model(double=False)
    with gin.unlock_config():
        gin.parse_config(
            [
                "Architect.order = 2",
                "Architect.lr = 0.01",
                "Architect.betas = (0.9, 0.99)",
                "Architect.weight_decay = 0.0",
            ]
        )
    try:
        arch = Architect(model)
    finally:
        gin.clear_config()
    (group,) = arch.optimizer.param_groups
    assert arch.order == 2
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"]) == (0.01, (0.9, 0.99), 0)


def test_bad_order_is_rejected():
    with pytest.raises(ValueError):
        Architect(make_model(double=False), order=3)


# ---- first order ------------------------------------------------------------------------


def test_first_order_gradient_is_the_validation_gradient_and_adam_steps():
    model = make_model()
    tx, ty, vx, vy = batches()
    arch = Architect(model, order=1, lr=0.01, betas=(0.5, 0.999), weight_decay=1e-3)
    alphas = model.arch_parameters()
    want_loss = F.cross_entropy(model(vx), vy)
    want = torch.autograd.grad(want_loss, alphas)
    before = [a.detach().clone() for a in alphas]

    loss = arch.step(tx, ty, vx, vy, eta=ETA)

    assert isinstance(loss, torch.Tensor) and not loss.requires_grad
    torch.testing.assert_close(loss, want_loss.detach())
    for a, g in zip(alphas, want):
        torch.testing.assert_close(a.grad, g)
    # The alphas moved by exactly one step of an Adam with these hyperparameters.
    shadow = [b.clone().requires_grad_() for b in before]
    ref = torch.optim.Adam(shadow, lr=0.01, betas=(0.5, 0.999), weight_decay=1e-3)
    for s, g in zip(shadow, want):
        s.grad = g.clone()
    ref.step()
    for a, s, b in zip(alphas, shadow, before):
        torch.testing.assert_close(a.detach(), s.detach())
        assert not torch.equal(a.detach(), b)


# ---- second order -----------------------------------------------------------------------


def make_second_order_case(steps=2):
    model = smooth_model(steps)
    tx, ty, vx, vy = batches()
    # Weight decay far above the paper's 3e-4, so that leaving it out would show.
    opt = sgd_with_momentum(model, tx, ty, weight_decay=0.05)
    return model, opt, (tx, ty, vx, vy)


@pytest.fixture
def second_order_case():
    return make_second_order_case()


def architect_grads(model, opt, data, eta=ETA):
    """The architect's second-order gradient (alpha.grad after a step with lr 0)."""
    arch = Architect(model, order=2, lr=0.0, weight_decay=0.0)
    arch.step(*data, eta=eta, weight_optimizer=opt)
    return [a.grad.clone() for a in model.arch_parameters()]


def test_second_order_matches_exact_autograd_unrolled_gradient(second_order_case):
    model, opt, data = second_order_case
    want = exact_unrolled_grad(model, opt, *data, eta=ETA)
    got = architect_grads(model, opt, data)
    # Only the finite-difference Hessian-vector product (radius 0.01) is approximate.
    assert rel_err(got, want) < 1e-2
    # The implicit term matters: the gradient at w' alone is far from the unrolled gradient,
    # so a missing or wrongly signed second-order term would fail the check above.
    params = virtual_weights(model, opt, data[0], data[1], ETA, create_graph=False)
    out = functional_call(model, {**params, **scratch_buffers(model)}, (data[2],))
    at_w_prime = torch.autograd.grad(F.cross_entropy(out, data[3]), model.arch_parameters())
    assert rel_err(at_w_prime, want) > 0.05


def test_second_order_matches_finite_differences_of_the_unrolled_objective():
    # One node a cell: finite differences cost two losses per alpha entry, 16 entries here
    # (40 with two nodes), and a node's edges all take the same path through the architect.
    model, opt, data = make_second_order_case(steps=1)
    got = architect_grads(model, opt, data)
    want = finite_difference_unrolled_grad(model, opt, *data, eta=ETA)
    assert rel_err(got, want) < 1e-2
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-2 * flat(want).abs().max().item())


def test_second_order_without_weight_optimizer_is_a_plain_gradient_step():
    model = smooth_model()
    data = batches()
    # A zero-momentum, zero-decay SGD describes the same virtual step as no optimizer.
    opt = torch.optim.SGD(model.weights(), lr=0.1, momentum=0.0, weight_decay=0.0)
    for w in model.weights():
        opt.state[w]["momentum_buffer"] = torch.zeros_like(w)
    want = exact_unrolled_grad(model, opt, *data, eta=ETA)
    got = architect_grads(model, None, data)
    assert rel_err(got, want) < 1e-2


@pytest.mark.parametrize(
    "momentum,dampening,nesterov,weight_decay",
    [
        (0.0, 0.0, False, 0.0),
        (0.0, 0.0, False, 3e-4),
        (0.9, 0.0, False, 3e-4),
        (0.9, 0.1, False, 1e-2),
        (0.9, 0.0, True, 3e-4),
    ],
)
def test_virtual_step_is_the_weight_optimizers_next_step(
    momentum, dampening, nesterov, weight_decay
):
    weights = [
        torch.randn(3, 4, dtype=torch.float64, requires_grad=True),
        torch.randn(5, dtype=torch.float64, requires_grad=True),
    ]
    opt = torch.optim.SGD(
        weights,
        lr=0.05,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
    )
    for _ in range(2):  # the second step is checked before it is taken
        grads = [torch.randn_like(w) for w in weights]
        directions = Architect._virtual_direction(weights, grads, opt)
        want = [w.detach() - 0.05 * d for w, d in zip(weights, directions)]
        for w, g in zip(weights, grads):
            w.grad = g.clone()
        opt.step()
        for w, e in zip(weights, want):
            torch.testing.assert_close(w.detach(), e)


# ---- the model is left alone ------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
def test_step_changes_only_the_alphas(order):
    model = make_model(double=False)
    tx, ty, vx, vy = batches(torch.float32)
    opt = sgd_with_momentum(model, tx, ty)
    before = snapshot(model)
    alpha_names = {
        n for n, p in model.named_parameters() if any(p is a for a in model.arch_parameters())
    }
    Architect(model, order=order).step(tx, ty, vx, vy, eta=0.1, weight_optimizer=opt)
    after = model.state_dict()
    for k, v in before.items():
        if k in alpha_names:
            assert not torch.equal(after[k], v), k
        else:
            assert torch.equal(after[k], v), k  # weights and BN buffers bit-identical
    assert all(w.grad is None for w in model.weights())
    assert model.training


@pytest.mark.parametrize("order,passes", [(1, 1), (2, 3)])
def test_update_buffers_follows_the_original_passes(order, passes):
    model = make_model(double=False)
    data = batches(torch.float32)
    before = snapshot(model)
    Architect(model, order=order, update_buffers=True).step(*data, eta=0.1)
    after = model.state_dict()
    tracked = [k for k in before if k.endswith("num_batches_tracked")]
    assert tracked
    for k in tracked:
        assert after[k].item() == before[k].item() + passes
    for k in before:
        if k.endswith("running_mean"):
            assert not torch.equal(after[k], before[k]), k
    for name, _ in zip(*named_weights(model)):
        assert torch.equal(after[name], before[name])


def test_eval_mode_is_kept_and_works():
    model = make_model(double=False, steps=1).eval()
    data = batches(torch.float32)
    before = snapshot(model)
    Architect(model, order=2).step(*data, eta=0.1)
    assert not model.training
    for name in named_weights(model)[0]:
        assert torch.equal(model.state_dict()[name], before[name])


# ---- every search space -----------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("weighting", ["scalar", "max_w"])
@pytest.mark.parametrize("primitives", ["PRIMITIVES", "SHARPER_PRIMITIVES", "DARTS_PRIMITIVES"])
def test_every_primitive_set_and_weighting(primitives, weighting, order):
    # One node a cell (here and below): the architect sees only the alphas and the loss.
    model = make_model(primitives, weighting, double=False, spread=1e-3, steps=1)
    assert model.alphas_normal.shape[1] == len(genotype_types.primitives(primitives))
    data = batches(torch.float32)
    before = [a.detach().clone() for a in model.arch_parameters()]
    loss = Architect(model, order=order).step(*data, eta=0.025)
    assert torch.isfinite(loss)
    for a, b in zip(model.arch_parameters(), before):
        assert torch.isfinite(a).all()
        assert not torch.equal(a.detach(), b)


# ---- checkpoints ------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
def test_state_dict_round_trip_gives_the_same_next_step(order):
    model = make_model(steps=1)
    arch = Architect(model, order=order, lr=0.01)
    first, second = batches(), batches()
    arch.step(*first, eta=ETA)

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "architect": arch.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed_model = make_model(steps=1)
    resumed_model.load_state_dict(state["model"])
    resumed = Architect(resumed_model, order=order, lr=0.01)
    resumed.load_state_dict(state["architect"])
    fresh_model = copy.deepcopy(resumed_model)
    fresh = Architect(fresh_model, order=order, lr=0.01)  # no Adam state: must differ

    for a in (arch, resumed, fresh):
        a.step(*second, eta=ETA)
    for a, b, c in zip(
        model.arch_parameters(), resumed_model.arch_parameters(), fresh_model.arch_parameters()
    ):
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


# ---- the original's way: a network copy per step (the benchmarks' yardstick) --------------


@pytest.mark.parametrize("update_buffers", [False, True])
def test_copying_second_order_step_equals_the_functional_one(update_buffers):
    functional_model = make_model(steps=1)
    copying_model = copy.deepcopy(functional_model)
    tx, ty, vx, vy = batches()
    results = []
    for model, copying in ((functional_model, False), (copying_model, True)):
        opt = sgd_with_momentum(model, tx, ty)
        before = snapshot(model)
        arch = Architect(model, order=2, update_buffers=update_buffers, copy_network=copying)
        loss = arch.step(tx, ty, vx, vy, eta=ETA, weight_optimizer=opt)
        after = model.state_dict()
        for name in named_weights(model)[0]:
            assert torch.equal(after[name], before[name]), name  # restored exactly
        if not update_buffers:
            for name, _ in model.named_buffers():
                assert torch.equal(after[name], before[name]), name
        alpha_names = [
            n for n, p in model.named_parameters() if any(p is a for a in model.arch_parameters())
        ]
        assert alpha_names and all(not torch.equal(after[n], before[n]) for n in alpha_names)
        results.append((loss, [a.detach().clone() for a in model.arch_parameters()], after))
    (loss_f, alphas_f, state_f), (loss_c, alphas_c, state_c) = results
    torch.testing.assert_close(loss_c, loss_f, rtol=1e-12, atol=0)
    for a, b in zip(alphas_c, alphas_f):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for k in state_f:  # the BN running statistics too, when the passes update them
        torch.testing.assert_close(state_c[k], state_f[k], rtol=1e-9, atol=1e-12)
