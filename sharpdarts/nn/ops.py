"""Primitive operations and the op tables that name them.

An op table maps a primitive name to a factory called as
``factory(C_in, C_out, stride, affine, C_mid)``. Fixed cells pass ``affine=True`` and the
choke width ``C_mid``; search cells pass ``affine=False`` and no ``C_mid``. Module layouts
(``op.0``, ``op.1``, ... inside each op) follow the original DARTS / sharpDARTS code so that
their checkpoints load into our networks unchanged.

Tables: ``OPS`` (sharpDARTS, the default everywhere), ``DARTS_OPS`` (the original DARTS
definitions) and ``MULTICHANNELNET_OPS`` (the HyperCuboid grid). Users extend a table with
``@OPS.register('my_op')`` or create a new one with ``OpTable('MY_OPS')``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from sharpdarts.core import genotype_types, validate
from sharpdarts.registry import Registry, unknown_name

OpFactory = Callable[..., nn.Module]

# The choke ops' middle width when no one says otherwise (the CIFAR scripts' default).
DEFAULT_C_MID = 32


class OpTable(Registry[OpFactory]):
    """A named registry ``primitive name -> op factory``, listed in ``OP_TABLES``.

    A :class:`~sharpdarts.registry.Registry` whose entries are op factories; creating one
    files it under its name, so that gin configs can name it (``op_dict = 'MY_OPS'``).
    """

    def __init__(self, name: str):
        super().__init__("op", name, hint=f"Ops are registered with @{name}.register('name').")
        OP_TABLES[name] = self


OP_TABLES: Registry[OpTable] = Registry("op table", "OP_TABLES")


def op_table(table: str | Mapping | None = "OPS") -> Mapping:
    """Resolves an op table given by name (``'OPS'``, ``'DARTS_OPS'``, ...), mapping or None.

    None means ``OPS``. Gin configs name tables by string, e.g.
    ``SearchNetwork.op_dict = 'DARTS_OPS'``. Not gin-configurable: every caller passes the
    table, so a binding of its own could never take effect.

    Raises:
        UnknownNameError: (a KeyError) an unknown table name, with close matches.
    """
    if table is None:
        return OPS
    if isinstance(table, str):
        return OP_TABLES[table]
    return table


def resolve_ops(
    primitives: str | Sequence[str], table: str | Mapping | None
) -> tuple[list[str], Mapping]:
    """A primitive set (a name or a list) and an op table (a name, a mapping or None), checked
    against each other: every primitive must be in the table.

    Returns:
        ``(primitive names, op table)``.

    Raises:
        UnknownNameError: (a KeyError) an unknown set or table name.
        ValueError: primitives the table lacks, named.
    """
    names = genotype_types.primitives(primitives)
    op_dict = op_table(table)
    missing = [p for p in names if p not in op_dict]
    if missing:
        raise ValueError(
            f"primitives {missing} are not in the op table {getattr(op_dict, 'name', '')}".rstrip()
        )
    return names, op_dict


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zeroes whole samples with probability ``drop_prob`` and rescales the rest.

    A per-sample Bernoulli keep mask, output divided by the keep probability (two passes
    over ``x``, as the original).
    """
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x.div(keep).mul(mask)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: channel ``i * (C // groups) + j`` moves to ``j * groups + i``.

    A channels-last input stays channels-last (the shuffle is done on the NHWC view).
    """
    b, c, h, w = x.shape
    if groups == 1:
        return x
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1).reshape(b, h, w, groups, c // groups).transpose(3, 4)
        return nhwc.reshape(b, h, w, c).permute(0, 3, 1, 2)
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class Zero(nn.Module):
    """The 'none' op: zeros of the (strided) input's shape."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Identity(nn.Module):
    """The stride-1 skip connection. Drop path never applies to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ReLUConvBN(nn.Module):
    """ReLU, convolution (no bias), batch norm."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        affine: bool = True,
    ):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ConvBNReLU(nn.Module):
    """Convolution (no bias), batch norm, ReLU: the 'nor_conv' ops of DARTS_OPS."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        affine: bool = True,
    ):
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
            nn.ReLU(inplace=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """The original DARTS dilated conv: one stage of ReLU, depthwise conv, 1x1 conv, BN."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=C_in,
                bias=False,
            ),
            nn.Conv2d(C_in, C_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SharpSepConv(nn.Module):
    """sharpDARTS' separable conv block with an adjustable middle width.

    ReLU, depthwise k x k (stride, dilation), 1x1 to C_mid, BN, ReLU, depthwise k x k
    (stride 1, no dilation), 1x1 to C_out, BN. Stride and dilation apply to the first
    depthwise conv only, so a dilated op is as deep as a plain one.

    Args:
        C_in: input channels.
        C_out: output channels.
        kernel_size: depthwise kernel size.
        stride: stride of the first depthwise conv.
        padding: padding of the first depthwise conv.
        dilation: dilation of the first depthwise conv.
        affine: learn the batch norms' scale and shift.
        C_mid_mult: middle width as a multiple of C_out (when C_mid is None).
        C_mid: explicit middle width.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        affine: bool = True,
        C_mid_mult: float = 1,
        C_mid: int | None = None,
    ):
        super().__init__()
        c_mid = C_mid if C_mid is not None else int(C_out * C_mid_mult)
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=C_in,
                bias=False,
            ),
            nn.Conv2d(C_in, c_mid, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_mid, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_mid,
                c_mid,
                kernel_size,
                stride=1,
                padding=(kernel_size - 1) // 2,
                groups=c_mid,
                bias=False,
            ),
            nn.Conv2d(c_mid, C_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResizablePool(nn.Module):
    """A 3x3 pool that can change the channel count (pool, then 1x1 conv + BN)."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        affine: bool = True,
        pool_type: type = nn.MaxPool2d,
    ):
        super().__init__()
        pool = pool_type(kernel_size=kernel_size, stride=stride, padding=padding)
        if C_in == C_out:
            self.op = pool
        else:
            self.op = nn.Sequential(
                pool,
                nn.Conv2d(C_in, C_out, 1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(C_out, eps=1e-3, affine=affine),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset 1x1 stride-2 convs, concatenated, then BN."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int = 1,
        stride: int = 2,
        padding: int = 0,
        affine: bool = True,
    ):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(
            C_in, C_out // 2, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.conv_2 = nn.Conv2d(
            C_in, C_out // 2, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(C_out, affine=affine)
        # Pad right and bottom, then drop the first row and column: a one-pixel shift.
        self.pad = nn.ConstantPad2d((0, 1, 0, 1), 0.0)

    @property
    def starts_with_relu(self) -> bool:
        """Whether ``forward(x) == forward_relu_applied(relu(x))``, so that a mixed op may
        compute the ReLU of its input once for every op that begins with one."""
        return type(self.relu) is nn.ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_relu_applied(self.relu(x))

    def forward_relu_applied(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` of an input that is already ReLU'd."""
        shifted = self.pad(x)[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def conv_7x1_1x7(C_in: int, C_out: int, stride: int, affine: bool, eps: float = 1e-5) -> nn.Module:
    """ReLU, 1x7 conv, 7x1 conv, BN (a plain Sequential, as the original)."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C_in, C_in, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C_in, C_out, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C_out, eps=eps, affine=affine),
    )


def _skip(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C_in, C_out, affine=affine)


def _sharp(kernel: int, padding: int, dilation: int = 1, mult: float = 1) -> OpFactory:
    def factory(C_in, C_out, stride, affine, C_mid=None):
        return SharpSepConv(C_in, C_out, kernel, stride, padding, dilation, affine, mult)

    return factory


def _choke(padding: int, dilation: int) -> OpFactory:
    def factory(C_in, C_out, stride, affine, C_mid=None):
        c_mid = DEFAULT_C_MID if C_mid is None else C_mid
        return SharpSepConv(C_in, C_out, 3, stride, padding, dilation, affine, C_mid=c_mid)

    return factory


def _resizable_pool(pool_type: type) -> OpFactory:
    def factory(C_in, C_out, stride, affine, C_mid=None):
        return ResizablePool(C_in, C_out, 3, stride, padding=1, affine=affine, pool_type=pool_type)

    return factory


OPS = OpTable("OPS")
OPS.update(
    {
        "none": lambda C_in, C_out, stride, affine, C_mid=None: Zero(stride),
        "avg_pool_3x3": _resizable_pool(nn.AvgPool2d),
        "max_pool_3x3": _resizable_pool(nn.MaxPool2d),
        "skip_connect": lambda C_in, C_out, stride, affine, C_mid=None: _skip(
            C_in, C_out, stride, affine
        ),
        "sep_conv_3x3": _sharp(3, 1),
        "sep_conv_5x5": _sharp(5, 2),
        "sep_conv_7x7": _sharp(7, 3),
        "dil_conv_3x3": _sharp(3, 2, dilation=2),
        "dil_conv_5x5": _sharp(5, 4, dilation=2),
        "flood_conv_3x3": _sharp(3, 1, mult=4),
        "flood_conv_5x5": _sharp(5, 2, mult=4),
        "dil_flood_conv_3x3": _sharp(3, 2, dilation=2, mult=4),
        "choke_conv_3x3": _choke(1, 1),
        "dil_choke_conv_3x3": _choke(2, 2),
        "conv_7x1_1x7": lambda C_in, C_out, stride, affine, C_mid=None: conv_7x1_1x7(
            C_in, C_out, stride, affine, eps=1e-3
        ),
    }
)

# The original DARTS definitions: ops map C -> C (C_out is ignored, as in the original),
# dilated convs are a single stage and the pools are plain (average excludes padding).
DARTS_OPS = OpTable("DARTS_OPS")
DARTS_OPS.update(
    {
        "none": lambda C, C_out, stride, affine, C_mid=None: Zero(stride),
        "avg_pool_3x3": lambda C, C_out, stride, affine, C_mid=None: nn.AvgPool2d(
            3, stride=stride, padding=1, count_include_pad=False
        ),
        "max_pool_3x3": lambda C, C_out, stride, affine, C_mid=None: nn.MaxPool2d(
            3, stride=stride, padding=1
        ),
        "skip_connect": lambda C, C_out, stride, affine, C_mid=None: _skip(C, C, stride, affine),
        "sep_conv_3x3": lambda C, C_out, stride, affine, C_mid=None: SharpSepConv(
            C, C, 3, stride, 1, affine=affine
        ),
        "sep_conv_5x5": lambda C, C_out, stride, affine, C_mid=None: SharpSepConv(
            C, C, 5, stride, 2, affine=affine
        ),
        "sep_conv_7x7": lambda C, C_out, stride, affine, C_mid=None: SharpSepConv(
            C, C, 7, stride, 3, affine=affine
        ),
        "dil_conv_3x3": lambda C, C_out, stride, affine, C_mid=None: DilConv(
            C, C, 3, stride, 2, 2, affine
        ),
        "dil_conv_5x5": lambda C, C_out, stride, affine, C_mid=None: DilConv(
            C, C, 5, stride, 4, 2, affine
        ),
        "conv_7x1_1x7": lambda C, C_out, stride, affine, C_mid=None: conv_7x1_1x7(
            C, C, stride, affine
        ),
        "nor_conv_3x3": lambda C, C_out, stride, affine, C_mid=None: ConvBNReLU(
            C, C, 3, stride, 1, affine
        ),
        "nor_conv_5x5": lambda C, C_out, stride, affine, C_mid=None: ConvBNReLU(
            C, C, 5, stride, 2, affine
        ),
        "nor_conv_7x7": lambda C, C_out, stride, affine, C_mid=None: ConvBNReLU(
            C, C, 7, stride, 3, affine
        ),
    }
)

# The HyperCuboid grid joins every (C_in, C_out) pair with each of these.
MULTICHANNELNET_OPS = OpTable("MULTICHANNELNET_OPS")
MULTICHANNELNET_OPS.update(
    {
        "ResizablePool": _resizable_pool(nn.MaxPool2d),
        "SharpSepConv": _sharp(3, 1),
    }
)


def _primitives_of_known_ops(value) -> None:
    """A primitive set whose every op is in some op table (which table a network uses is
    bound apart, so a name known to none is the typo worth refusing before a build)."""
    validate.PRIMITIVE_SET.test(value)
    known = set().union(*(table.names() for table in OP_TABLES.values()))
    for name in genotype_types.primitives(value):
        if name not in known:
            raise unknown_name("op", name, known, where="in any op table")


# The kind of a network's ``primitives`` parameter (see sharpdarts.core.validate).
PRIMITIVES_OF_KNOWN_OPS = validate.Satisfies(
    validate.PRIMITIVE_SET.what, test=_primitives_of_known_ops
)
