"""Identical-math shortcuts of the search supernet's fast path (see ``cells.MixedOp``).

Every function here computes exactly what the module it stands in for computes (the same
products, summed in possibly another order, so equal within float rounding); the
equivalence tests (tests/test_fast.py one by one, tests/test_performance_equivalence.py for
whole networks) pin this against the reference path (:mod:`sharpdarts.nn.reference`), and
benchmarks/ measure what it buys.

- A convolution whose stride equals its dilation (and whose padding is a multiple of it)
  reads only every ``d``-th row and column of its input: it is the undilated, unstrided
  convolution of the subsampled input ``x[:, :, ::d, ::d]`` with padding ``p / d``. The
  reduction cells' dilated ops (stride 2, dilation 2) are the case: oneDNN's dilated strided
  depthwise kernels are 10-40x slower per output than its plain ones on CPU.
- On CPU, a channels-last 1x1 convolution from C to C channels (C >= 16) is a matrix
  product over the channels of the NHWC view (``F.linear``).
- On CPU, batch norms of channels-last tensors with fewer than 8 channels (partial
  channels) run in NCHW, where they are 3x faster.
- On CPU, a stride-1 'same' depthwise convolution computes its input gradient as a forward
  convolution with the flipped kernel, and its weight gradient only when it is needed.
- A FactorizedReduce's 1x1 stride-2 convolutions are unstrided convolutions of the even and
  the odd pixels of its input (no padded, shifted copy).
- Subsampling and channel concatenation hand back dense gradients in the memory format of
  the forward tensors (:func:`subsample`, :func:`cat_channels`): mixed layouts make every
  later backward op several times slower.
- The ops whose ``forward`` is ``self.op(x)`` run layer by layer, so that an edge shares one
  ReLU of its input between every op that begins with a ReLU, and their convolutions go
  through :func:`conv2d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

from sharpdarts.nn.ops import (
    ConvBNReLU,
    DilConv,
    FactorizedReduce,
    ReLUConvBN,
    ResizablePool,
    SharpSepConv,
)

# Ops whose forward is exactly ``self.op(x)`` (a Sequential or a single module).
SEQUENTIAL_OPS = (ReLUConvBN, ConvBNReLU, DilConv, SharpSepConv, ResizablePool)


def hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` runs hooks (its own or global ones, e.g. ptflops' counters).

    A shortcut that bypasses a module's ``__call__`` would skip them, so every shortcut here
    stands down for a hooked module and calls it.
    """
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or _module._global_forward_hooks
        or _module._global_forward_pre_hooks
    )


def layers_of(op: nn.Module) -> nn.Sequential | None:
    """The Sequential that ``op`` applies, or None when ``op`` is anything else."""
    if type(op) is nn.Sequential:
        return op
    if isinstance(op, SEQUENTIAL_OPS) and type(op.op) is nn.Sequential:
        return op.op
    return None


def starts_with_relu(op: nn.Module) -> bool:
    """Whether ``op(x)`` begins with a plain ReLU of ``x`` (checked at call time: a ReLU that
    someone swapped for another activation is honoured)."""
    if hooked(op):
        return False
    layers = layers_of(op)
    if layers is not None:
        return len(layers) > 1 and type(layers[0]) is nn.ReLU and not hooked(layers[0])
    if type(op) is FactorizedReduce and hooked(op.relu):
        return False
    return bool(getattr(op, "starts_with_relu", False)) and hasattr(op, "forward_relu_applied")


def run_after_relu(op: nn.Module, relu_x: torch.Tensor) -> torch.Tensor:
    """``op(x)`` given ``relu_x = relu(x)``, for an op with :func:`starts_with_relu`."""
    layers = layers_of(op)
    if layers is None:
        if type(op) is FactorizedReduce:
            return factorized_reduce_after_relu(op, relu_x)
        return op.forward_relu_applied(relu_x)
    return run_layers(layers, relu_x, start=1)


def run(op: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``op(x)``, through this module's shortcuts where they apply."""
    if hooked(op):
        return op(x)
    if type(op) is FactorizedReduce and starts_with_relu(op):
        return factorized_reduce_after_relu(op, F.relu(x))
    layers = layers_of(op)
    return op(x) if layers is None else run_layers(layers, x)


def run_shared(op: nn.Module, x: torch.Tensor, relu_x: "LazyReLU") -> torch.Tensor:
    """``op(x)``; an op that begins with a ReLU takes ``relu_x()``, the ReLU of ``x`` that
    every op reading ``x`` shares."""
    if starts_with_relu(op):
        return run_after_relu(op, relu_x())
    return run(op, x)


def run_layers(
    layers: nn.Sequential, x: torch.Tensor, start: int = 0, stop: int | None = None
) -> torch.Tensor:
    """``layers[start:stop](x)``; convolutions through :func:`conv2d`, and a ReLU that follows
    a batch norm applied in place (batch norm's backward needs its input, not its output)."""
    previous = None
    stop = len(layers) if stop is None else stop
    for i, layer in enumerate(layers):
        if i < start or i >= stop:
            continue
        if type(layer) is nn.Conv2d:
            x = conv2d(layer, x)
        elif type(layer) is nn.ReLU and type(previous) is nn.BatchNorm2d and not hooked(layer):
            x = torch.relu_(x)
        elif type(layer) is nn.BatchNorm2d and not hooked(layer):
            x = batch_norm(layer, x)
        else:
            x = layer(x)
        previous = layer
    return x


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)``; on CPU, a channels-last ``x`` with fewer than 8 channels is normalised in
    NCHW and converted back (oneDNN's NHWC batch norm vectorises over channels: at 4
    channels it is 3x slower than NCHW, the two copies included)."""
    if few_channels_last_on_cpu(x):
        return bn(x.contiguous()).contiguous(memory_format=torch.channels_last)
    return bn(x)


def few_channels_last_on_cpu(x: torch.Tensor) -> bool:
    """Whether ``x`` is a channels-last CPU tensor of fewer than 8 channels (its batch norm
    runs in NCHW, :func:`batch_norm`)."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.shape[1] < 8
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def _subsampling(conv: nn.Conv2d) -> tuple[int, int] | None:
    """(d_h, d_w) when ``conv`` may run as an undilated conv of its subsampled input."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    if tuple(conv.stride) != tuple(conv.dilation) or conv.dilation == (1, 1):
        return None
    if any(p % d for p, d in zip(conv.padding, conv.dilation)):
        return None
    return tuple(conv.dilation)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


class _Subsample(torch.autograd.Function):
    """``x[:, :, oh::dh, ow::dw]`` as a contiguous tensor in ``x``'s memory format.

    Plain slicing would do, but its backward scatters the gradient into a zero tensor in the
    default (NCHW) format; a channels-last network then runs every later backward op on mixed
    formats, which is several times slower. This one keeps the gradient in ``x``'s format.
    """

    @staticmethod
    def forward(ctx, x, dh: int, dw: int, oh: int, ow: int):
        fmt = _memory_format(x)
        ctx.shape, ctx.fmt, ctx.steps = x.shape, fmt, (dh, dw, oh, ow)
        return x[:, :, oh::dh, ow::dw].contiguous(memory_format=fmt)

    @staticmethod
    def backward(ctx, grad):
        dh, dw, oh, ow = ctx.steps
        grad_x = torch.empty(
            ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.fmt
        ).zero_()
        grad_x[:, :, oh::dh, ow::dw] = grad
        return grad_x, None, None, None, None


class _CatChannels(torch.autograd.Function):
    """``torch.cat(tensors, dim=1)`` whose backward hands every input a contiguous gradient
    in the output's memory format.

    Plain ``cat`` hands out channel slices of the output's gradient: strided views of a
    channels-last gradient, or NCHW blocks when the gradient arrives in NCHW (as from the
    global pooling). Every backward op of the cell that produced a state then reads them
    with mixed or strided layouts; one copy here is cheaper.
    """

    @staticmethod
    def forward(ctx, *tensors):
        out = torch.cat(tensors, dim=1)
        ctx.sizes = [t.shape[1] for t in tensors]
        ctx.fmt = _memory_format(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return tuple(
            g.contiguous(memory_format=ctx.fmt) for g in torch.split(grad, ctx.sizes, dim=1)
        )


def cat_channels(tensors) -> torch.Tensor:
    """``torch.cat(tensors, dim=1)`` with dense gradients in its own memory format."""
    return _CatChannels.apply(*tensors)


def subsample(x: torch.Tensor, dh: int, dw: int, oh: int = 0, ow: int = 0) -> torch.Tensor:
    """Every ``dh``-th row and ``dw``-th column of ``x``, from row ``oh`` and column ``ow``."""
    return _Subsample.apply(x, dh, dw, oh, ow)


def _square_pointwise_on_cpu(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.groups == 1
        and conv.in_channels == conv.out_channels >= 16
        and x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def _gradient_needed(ctx, index: int) -> bool:
    """Whether the running backward pass uses the gradient of the Function's input ``index``.

    Built-in ops skip the weight gradient when ``autograd.grad`` asks only for other inputs
    (the architect asks for the alphas); a custom Function must ask the engine itself. The
    engine query is internal API, so any doubt answers "needed".
    """
    if not ctx.needs_input_grad[index]:
        return False
    node = ctx.next_functions[index][0]
    if node is None:
        return False
    try:
        return bool(torch._C._will_engine_execute_node(node))
    except (AttributeError, RuntimeError):  # e.g. a leaf that autograd.grad captures
        return True


class _DepthwiseConv(torch.autograd.Function):
    """A stride-1, 'same'-padded depthwise convolution whose input gradient is computed as
    the forward convolution of the output gradient with the flipped kernel.

    On CPU, oneDNN's depthwise backward-data kernels are 1.5-10x slower than its forward
    ones (dilated kernels, many channels); the flipped-kernel forward gives the same sums.
    The weight gradient is oneDNN's, and only computed when the backward pass needs it.
    """

    @staticmethod
    def forward(ctx, x, weight, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation
        return F.conv2d(x, weight, None, 1, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        groups = weight.shape[0]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            flipped = weight.flip(2, 3)
            grad_x = F.conv2d(grad, flipped, None, 1, ctx.padding, ctx.dilation, groups)
        if _gradient_needed(ctx, 1):
            grad_w = torch.ops.aten.convolution_backward(
                grad,
                x,
                weight,
                None,
                [1, 1],
                list(ctx.padding),
                list(ctx.dilation),
                False,
                [0, 0],
                groups,
                [False, True, False],
            )[1]
        return grad_x, grad_w, None, None


def _same_depthwise_on_cpu(
    x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int
) -> bool:
    kh, kw = weight.shape[-2:]
    return (
        x.device.type == "cpu"
        and groups == weight.shape[0] == x.shape[1]
        and weight.shape[1] == 1
        and tuple(stride) == (1, 1)
        and tuple(padding) == (dilation[0] * (kh - 1) // 2, dilation[1] * (kw - 1) // 2)
        and (kh - 1) * dilation[0] % 2 == 0
        and (kw - 1) * dilation[1] % 2 == 0
    )


def _conv(x, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    if bias is None and _same_depthwise_on_cpu(x, weight, stride, padding, dilation, groups):
        return _DepthwiseConv.apply(x, weight, tuple(padding), tuple(dilation))
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``, computed by the fastest identical formulation (module docstring)."""
    if hooked(conv):
        return conv(x)
    if _square_pointwise_on_cpu(conv, x):
        # A matrix product over the channels of the NHWC view (measured 1.1-3x faster than
        # oneDNN's 1x1 convolution for C -> C, C >= 16, on CPU; slower for fewer channels or
        # when C changes, so only then).
        out = F.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias)
        return out.permute(0, 3, 1, 2)
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return conv(x)
    sub = _subsampling(conv)
    if sub is None:
        return _conv(
            x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups
        )
    dh, dw = sub
    padding = (conv.padding[0] // dh, conv.padding[1] // dw)
    return _conv(subsample(x, dh, dw), conv.weight, conv.bias, (1, 1), padding, (1, 1), conv.groups)


def _is_pointwise_stride_2(conv: nn.Conv2d) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (1, 1)
        and conv.stride == (2, 2)
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def factorized_reduce_after_relu(op: FactorizedReduce, relu_x: torch.Tensor) -> torch.Tensor:
    """``op.forward_relu_applied(relu_x)`` of a FactorizedReduce.

    Its two 1x1 stride-2 convs read the even pixels of ``x`` and the even pixels of ``x``
    shifted by one (the odd pixels, when height and width are even): two unstrided 1x1
    convs of subsampled inputs, without the padded copy of ``x``.
    """
    convs = factorized_reduce_convs(op, relu_x)
    return op.forward_relu_applied(relu_x) if convs is None else op.bn(convs)


def factorized_reduce_convs(op: FactorizedReduce, relu_x: torch.Tensor) -> torch.Tensor | None:
    """The concatenated convs of :func:`factorized_reduce_after_relu` (its batch norm's
    input), or None where that shortcut does not apply."""
    h, w = relu_x.shape[-2:]
    if (
        h % 2
        or w % 2
        or hooked(op.conv_1)
        or hooked(op.conv_2)
        or hooked(op.pad)
        or not _is_pointwise_stride_2(op.conv_1)
        or not _is_pointwise_stride_2(op.conv_2)
        or type(op.pad) is not nn.ConstantPad2d
        or tuple(op.pad.padding) != (0, 1, 0, 1)
        or op.pad.value != 0.0
    ):
        return None
    even = F.conv2d(subsample(relu_x, 2, 2), op.conv_1.weight, op.conv_1.bias)
    odd = F.conv2d(subsample(relu_x, 2, 2, 1, 1), op.conv_2.weight, op.conv_2.bias)
    return cat_channels([even, odd])


class LazyReLU:
    """``relu(x)``, computed on the first call and shared by every later one."""

    __slots__ = ("x", "_relu")

    def __init__(self, x: torch.Tensor):
        self.x, self._relu = x, None

    def __call__(self) -> torch.Tensor:
        if self._relu is None:
            self._relu = F.relu(self.x)
        return self._relu


def partial_channel_output(
    mixed: torch.Tensor, bypass: torch.Tensor, groups: int
) -> torch.Tensor | None:
    """``channel_shuffle(torch.cat([mixed, bypass], 1), groups)`` in one copy, for
    channels-last tensors (the concatenation is written straight in shuffled order); None
    for other layouts."""
    if mixed.dim() != 4 or mixed.stride(1) != 1 or bypass.stride(1) != 1:
        return None  # not channels-last (a channel slice of a channels-last tensor will do)
    n, c_mixed, h, w = mixed.shape
    rest = bypass.shape[1] // c_mixed  # groups - 1
    # NHWC views; output channel j * groups + i is mixed[j] (i = 0) or bypass[(i-1)*c + j].
    first = mixed.permute(0, 2, 3, 1).unsqueeze(-1)
    others = bypass.permute(0, 2, 3, 1).unflatten(-1, (rest, c_mixed)).transpose(3, 4)
    out = torch.cat([first, others], dim=-1)
    return out.reshape(n, h, w, c_mixed * groups).permute(0, 3, 1, 2)
