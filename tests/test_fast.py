"""The fast path's shortcuts (sharpdarts.nn.fast), one by one: each computes exactly what the
module it stands in for computes (values, gradients, running statistics and memory layout).

Whole networks on the fast path against the reference path: test_performance_equivalence.py.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.nn import fast, fold
from sharpdarts.nn.ops import OPS, FactorizedReduce, SharpSepConv, channel_shuffle

TOL = dict(rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("size", [7, 8, 9, 16])
@pytest.mark.parametrize("kernel,dilation,groups", [(3, 2, 6), (5, 2, 6), (3, 2, 1), (3, 3, 6)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_with_stride_equal_to_dilation_runs_subsampled(
    size, kernel, dilation, groups, channels_last
):
    conv = nn.Conv2d(
        6,
        6,
        kernel,
        stride=dilation,
        padding=dilation * (kernel - 1) // 2,
        dilation=dilation,
        groups=groups,
        bias=False,
    ).double()
    assert fast._subsampling(conv) == (dilation, dilation)
    x = torch.randn(2, 6, size, size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    want = conv(x)
    got = fast.conv2d(conv, x)
    torch.testing.assert_close(got, want, **TOL)
    g = torch.randn_like(want)
    want_grads = torch.autograd.grad(want, [x, conv.weight], g)
    got_grads = torch.autograd.grad(got, [x, conv.weight], g)
    for a, b in zip(want_grads, got_grads):
        torch.testing.assert_close(b, a, **TOL)


@pytest.mark.parametrize("channels", [16, 32])
def test_square_pointwise_conv_as_a_matrix_product(channels):
    conv = nn.Conv2d(channels, channels, 1, bias=False).double()
    conv = conv.to(memory_format=torch.channels_last)
    x = (
        torch.randn(2, channels, 5, 6, dtype=torch.float64)
        .contiguous(memory_format=torch.channels_last)
        .requires_grad_()
    )
    assert fast._square_pointwise_on_cpu(conv, x)
    want, got = conv(x), fast.conv2d(conv, x)
    torch.testing.assert_close(got, want, **TOL)
    assert got.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(want)
    for a, b in zip(
        torch.autograd.grad(want, [x, conv.weight], g),
        torch.autograd.grad(got, [x, conv.weight], g),
    ):
        torch.testing.assert_close(b, a, **TOL)


@pytest.mark.parametrize("channels", [4, 16])
def test_batch_norm_shortcut_keeps_outputs_gradients_stats_and_layout(channels):
    ref_bn = nn.BatchNorm2d(channels, affine=False).double()
    fast_bn = nn.BatchNorm2d(channels, affine=False).double()
    x = (
        torch.randn(3, channels, 5, 6, dtype=torch.float64)
        .contiguous(memory_format=torch.channels_last)
        .requires_grad_()
    )
    want, got = ref_bn(x), fast.batch_norm(fast_bn, x)
    torch.testing.assert_close(got, want, **TOL)
    assert got.is_contiguous(memory_format=torch.channels_last)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(fast_bn, name), getattr(ref_bn, name), **TOL)
    g = torch.randn_like(want)
    torch.testing.assert_close(
        torch.autograd.grad(got, x, g)[0], torch.autograd.grad(want, x, g)[0], **TOL
    )


@pytest.mark.parametrize(
    "channels,affine,momentum,train",
    [
        (4, False, 0.1, True),
        (16, False, 0.1, True),
        (16, True, None, True),
        (16, False, 0.1, False),
    ],
)
def test_scaled_batch_norm_is_the_scale_times_the_norm(channels, affine, momentum, train):
    ref_bn = nn.BatchNorm2d(channels, affine=affine, momentum=momentum).double().train(train)
    fast_bn = nn.BatchNorm2d(channels, affine=affine, momentum=momentum).double().train(train)
    if affine:
        for bn in (ref_bn, fast_bn):
            torch.manual_seed(1)
            bn.weight.data.uniform_(0.5, 2.0)
            bn.bias.data.uniform_(-1.0, 1.0)
    x = (
        torch.randn(3, channels, 5, 6, dtype=torch.float64)
        .contiguous(memory_format=torch.channels_last)
        .requires_grad_()
    )
    scale = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    for _ in range(2):  # twice: the running statistics (and a None momentum's count) move
        want = scale * ref_bn(x)
        got = fold.scaled_batch_norm(fast_bn, x, scale)
    torch.testing.assert_close(got, want, **TOL)
    assert got.is_contiguous(memory_format=torch.channels_last)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(fast_bn, name), getattr(ref_bn, name), **TOL)
    g = torch.randn_like(want)
    params = [x, scale] + ([ref_bn.weight, ref_bn.bias] if affine else [])
    fast_params = [x, scale] + ([fast_bn.weight, fast_bn.bias] if affine else [])
    for a, b in zip(torch.autograd.grad(want, params, g), torch.autograd.grad(got, fast_params, g)):
        torch.testing.assert_close(b, a, **TOL)


@pytest.mark.parametrize(
    "name,stride", [("sep_conv_3x3", 1), ("max_pool_3x3", 2), ("skip_connect", 2)]
)
def test_run_scaled_folds_the_coefficient_into_the_last_batch_norm(name, stride):
    torch.manual_seed(0)
    op = OPS[name](8, 8, stride, False).double()
    if "pool" in name:
        op = nn.Sequential(op, nn.BatchNorm2d(8, affine=False).double())
    twin = copy.deepcopy(op)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64).requires_grad_()
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    want = scale * op(x)
    got = fold.run_scaled(twin, x, fast.LazyReLU(x), scale)
    torch.testing.assert_close(got, want, **TOL)
    g = torch.randn_like(want)
    for a, b in zip(
        torch.autograd.grad(want, [x, scale], g), torch.autograd.grad(got, [x, scale], g)
    ):
        torch.testing.assert_close(b, a, **TOL)


def test_run_scaled_leaves_ops_without_a_final_batch_norm_and_hooked_ops_to_the_caller():
    x = torch.randn(2, 8, 6, 6)
    scale = torch.tensor(0.5)
    assert fold.run_scaled(OPS["skip_connect"](8, 8, 1, False), x, fast.LazyReLU(x), scale) is None
    hooked = OPS["sep_conv_3x3"](8, 8, 1, False)
    hooked.op[-1].register_forward_hook(lambda *args: None)
    assert fold.run_scaled(hooked, x, fast.LazyReLU(x), scale) is None


def test_other_convolutions_are_left_alone():
    assert fast._subsampling(nn.Conv2d(4, 4, 3, stride=2, padding=1)) is None
    assert fast._subsampling(nn.Conv2d(4, 4, 3, padding=2, dilation=2)) is None
    assert fast._subsampling(nn.Conv2d(4, 4, 3, stride=2, padding=1, dilation=2)) is None
    assert (
        fast._subsampling(
            nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2, padding_mode="reflect")
        )
        is None
    )


def test_lazy_relu_computes_once_and_shares():
    x = torch.randn(2, 3, 4, 4)
    relu = fast.LazyReLU(x)
    first = relu()
    assert torch.equal(first, F.relu(x))
    assert relu() is first  # the same tensor, not a second ReLU


def test_starts_with_relu_and_layers_of():
    sep = SharpSepConv(4, 4, 3, 1, 1)
    assert fast.layers_of(sep) is sep.op and fast.starts_with_relu(sep)
    assert fast.layers_of(nn.Conv2d(4, 4, 1)) is None
    assert not fast.starts_with_relu(OPS["max_pool_3x3"](4, 4, 1, False))
    reduce = FactorizedReduce(4, 4)
    assert fast.layers_of(reduce) is None and fast.starts_with_relu(reduce)
    reduce.relu = nn.Softplus()  # a swapped activation is not a ReLU to share
    assert not fast.starts_with_relu(reduce)
    hooked = SharpSepConv(4, 4, 3, 1, 1)
    hooked.register_forward_hook(lambda *args: None)
    assert fast.hooked(hooked) and not fast.starts_with_relu(hooked)


@pytest.mark.parametrize("name", ["sep_conv_3x3", "dil_conv_5x5", "skip_connect", "avg_pool_3x3"])
@pytest.mark.parametrize("stride", [1, 2])
def test_run_and_run_shared_equal_calling_the_op(name, stride):
    op = OPS[name](4, 4, stride, True).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    want = op(x)
    torch.testing.assert_close(fast.run(op, x), want, **TOL)
    got = fast.run_shared(op, x, fast.LazyReLU(x))
    torch.testing.assert_close(got, want, **TOL)
    g = torch.randn_like(want)
    torch.testing.assert_close(
        torch.autograd.grad(got, x, g)[0], torch.autograd.grad(want, x, g)[0], **TOL
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_reduce_after_relu_equals_the_op(channels_last):
    op = FactorizedReduce(4, 6).double().train()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    if channels_last:
        op = op.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    twin = FactorizedReduce(4, 6).double().train()
    twin.load_state_dict(op.state_dict())
    want = twin(x)
    got = fast.factorized_reduce_after_relu(op, F.relu(x))
    torch.testing.assert_close(got, want, **TOL)
    g = torch.randn_like(want)
    torch.testing.assert_close(
        torch.autograd.grad(got, x, g)[0], torch.autograd.grad(want, x, g)[0], **TOL
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_subsample_and_cat_channels_keep_the_layout_of_their_gradients(channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=fmt).requires_grad_()
    sub = fast.subsample(x, 2, 2, 1, 1)
    assert torch.equal(sub, x[:, :, 1::2, 1::2])
    (grad,) = torch.autograd.grad(sub.sum(), x)
    assert grad.is_contiguous(memory_format=fmt)
    assert torch.equal(grad[:, :, 1::2, 1::2], torch.ones_like(sub)) and grad.sum() == sub.numel()
    a = torch.randn(2, 3, 4, 4).contiguous(memory_format=fmt).requires_grad_()
    b = torch.randn(2, 5, 4, 4).contiguous(memory_format=fmt).requires_grad_()
    out = fast.cat_channels([a, b])
    assert torch.equal(out, torch.cat([a, b], dim=1))
    grads = torch.autograd.grad(out, [a, b], torch.randn_like(out))
    assert all(g.is_contiguous(memory_format=fmt) for g in grads)


def test_partial_channel_output_is_the_shuffled_concatenation():
    mixed = torch.randn(2, 2, 3, 3).contiguous(memory_format=torch.channels_last)
    bypass = torch.randn(2, 6, 3, 3).contiguous(memory_format=torch.channels_last)
    got = fast.partial_channel_output(mixed, bypass, 4)
    assert torch.equal(got, channel_shuffle(torch.cat([mixed, bypass], dim=1), 4))
    # Other layouts are left to the plain shuffle.
    assert fast.partial_channel_output(mixed.contiguous(), bypass.contiguous(), 4) is None
