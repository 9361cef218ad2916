"""NAS-Bench-201's ops and the macro skeleton that its fixed and search networks share.

The benchmark (Dong & Yang, ICLR 2020) builds every network from a stem (3x3 conv + BN),
three stages of ``N`` cells (``C``, ``2C``, ``4C`` channels) joined by two residual blocks
that halve the resolution, then BN + ReLU, global pooling and a linear classifier. Inside a
cell every op keeps the width and the resolution, so the five ops reduce to a ReLU-conv-BN
(1x1 or 3x3), a 3x3 average pool that leaves padding out of the mean, the identity and zero.

Module and parameter names follow the authors' code (``xautodl.models.cell_operations``: each
ReLU-conv-BN is ``op.0`` ReLU, ``op.1`` conv, ``op.2`` BN; the residual block is ``conv_a``,
``conv_b``, ``downsample``), so their state dicts load key for key (see docs/nb201.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


class ReLUConvBN(nn.Module):
    """ReLU, a ``kernel_size`` conv (``stride``, 'same' padding), BN.

    Args:
        C_in, C_out: channels.
        kernel_size: 1 or 3.
        stride: 1 or 2.
        affine, track_running_stats: the BN's.
        bias: the conv's bias. The authors' code changed here: ``xautodl`` gives the conv a bias
            exactly when the BN has no affine (``bias=not affine``, since July 2020), DrNAS's
            copy of the older code never does.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int = 1,
        affine: bool = True,
        track_running_stats: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride, kernel_size // 2, bias=bias),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class AvgPool(nn.Module):
    """3x3 average pooling, stride 1, padding 1, the padding left out of each mean."""

    def __init__(self):
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Identity(nn.Module):
    """``skip_connect`` inside a cell (same width, stride 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """``none``: zeros of the input's shape, made as ``x * 0`` as the authors make them (so a
    NaN or inf in ``x`` stays one, as there)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, C: int, affine: bool, track_running_stats: bool, bias: bool) -> nn.Module:
    """One of the five ops at width ``C`` (inside a cell every op keeps width and size)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return Identity()
    if name == "avg_pool_3x3":
        return AvgPool()
    kernel = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}[name]
    return ReLUConvBN(C, C, kernel, 1, affine, track_running_stats, bias)


class ResNetBasicblock(nn.Module):
    """The block between stages: two ReLU-conv3x3-BN (the first with stride 2) plus a shortcut
    of 2x2 average pooling and a 1x1 conv (no BN). The authors always build it with affine BN
    and tracked statistics, in the search networks too."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(C_in, C_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def stages(C: int, N: int) -> Iterator[tuple[int, bool]]:
    """(width, is the residual block) of each of the ``3N + 2`` layers after the stem."""
    for stage in range(3):
        if stage:
            yield C * 2**stage, True
        for _ in range(N):
            yield C * 2**stage, False


class MacroNetwork(nn.Module):
    """The skeleton: ``stem``, ``cells`` (cells and residual blocks), ``lastact``,
    ``global_pooling``, ``classifier``. Subclasses add the cells through :meth:`_build`."""

    def _build(
        self,
        C: int,
        N: int,
        num_classes: int,
        in_channels: int,
        make_cell,
        lastact_affine: bool = True,
        lastact_track: bool = True,
    ) -> None:
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        self.cells = nn.ModuleList()
        C_prev = C
        for C_curr, residual in stages(C, N):
            self.cells.append(ResNetBasicblock(C_prev, C_curr) if residual else make_cell(C_curr))
            C_prev = C_curr
        self.lastact = nn.Sequential(
            nn.BatchNorm2d(C_prev, affine=lastact_affine, track_running_stats=lastact_track),
            nn.ReLU(inplace=True),
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def _head(self, feature: torch.Tensor) -> torch.Tensor:
        out = self.global_pooling(self.lastact(feature))
        return self.classifier(out.flatten(1))
