"""The HyperCuboid networks: the multi-channel supernet and the network of one grid path.

Part of :mod:`sharpdarts.nn.multichannel` (its package docstring describes the grid, the
alpha layout and the op order); the graph and the paths are in ``graph.py``.

Both networks are gin-configurable and build their parts (ops from an op table, the
weighting, the heads) with plain calls: no internal part is a configurable of its own, so a
binding either reaches one of these two classes or is reported unused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import gin
import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core import validate
from sharpdarts.nn.multichannel.graph import (
    GRID_PRIMITIVES,
    STRIDES,
    InvalidPathError,
    channel_widths,
    check_path,
    greedy_path,
    grid_graph,
    longest_path,
    parse_op_node,
    path_genotype,
    path_list,
    weights_array,
)
from sharpdarts.nn.ops import PRIMITIVES_OF_KNOWN_OPS, SharpSepConv, resolve_ops
from sharpdarts.nn.weighting import get_weighting

# A path's node names that PathNetwork reads (beyond the op nodes): the original's later
# '_opid_{i}' suffix, the stem conv of width index k, and the head of width c.
_OPID_RE = re.compile(r"_opid_\d+$")
_CONV_RE = re.compile(r"Conv3x3_(\d+)")
_HEAD_RE = re.compile(r"SharpSepConv(\d+)")


# ---- The search network ---------------------------------------------------------------------
@gin.configurable
@validate.params(
    C=validate.WIDTH,
    layers=validate.DEPTH,
    steps=validate.COUNT,
    head_channels=validate.WIDTH,
    primitives=PRIMITIVES_OF_KNOWN_OPS.or_none(),
)
class MultiChannelNetwork(nn.Module):
    """The HyperCuboid supernet: a differentiable search over channel widths, strides and ops.

    Args:
        C: initial channels; the widths are ``channel_widths(C, steps)``.
        num_classes: classes.
        layers: grid layers, each a stride-1 and a stride-2 stage (the original's
            ``layers_of_cells / 2``; 4 in the paper).
        steps: how many channel widths (4).
        in_channels: image channels.
        weighting: 'scalar', 'max_w' or a callable; applied to each (stride, layer) block of
            softmax weights as a whole (so Max-W's max is over the block's 32 weights).
        always_apply_ops: compute every op, however small its weight.
        weight_threshold: ops whose softmax weight is ``<=`` this are skipped in the forward
            pass (unless ``always_apply_ops``); None means ``1 / block_size ** 2``
            (``1 / 32 ** 2`` for the paper's grid).
        primitives: op names along the last alpha axis (a list or a primitive-set name);
            ``GRID_PRIMITIVES`` (the published weights' order) by default.
        op_dict: op table (name or mapping); ops are built as ``op(C_in, C_out, stride, True)``.
        head_channels: output width of the per-width SharpSepConv heads (768).

    ``alphas`` (:meth:`arch_parameters`) has shape ``[2, layers, n, n, ops]``:
    ``[stride index (0: stride 1, 1: stride 2), layer, C_in index, C_out index, op]``.
    Module names follow the original (``stem.k``, ``op_grid.layer.stride.c_in.c_out.op``,
    ``base.k``, ``classifier``). The graph and the paths are always derived from the current
    alphas (:meth:`graph`), never cached.
    """

    def __init__(
        self,
        C: int = 36,
        num_classes: int = 10,
        layers: int = 4,
        steps: int = 4,
        in_channels: int = 3,
        weighting="scalar",
        always_apply_ops: bool = False,
        weight_threshold: float | None = None,
        primitives: str | Sequence[str] | None = None,
        op_dict="MULTICHANNELNET_OPS",
        head_channels: int = 768,
    ):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers!r}")
        self.primitives, op_dict = resolve_ops(
            GRID_PRIMITIVES if primitives is None else primitives, op_dict
        )
        self.Cs = channel_widths(C, steps)
        self._layers = layers
        self.weighting = get_weighting(weighting)
        self.always_apply_ops = always_apply_ops
        n, k = len(self.Cs), len(self.primitives)
        self.block_size = n * n * k
        self.weight_threshold = (
            1.0 / self.block_size**2 if weight_threshold is None else float(weight_threshold)
        )
        self.stem = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
            for c in self.Cs
        )
        self.op_grid = nn.ModuleList()
        for _ in range(layers):
            strides = nn.ModuleList()
            for stride in STRIDES:
                strides.append(
                    nn.ModuleList(
                        nn.ModuleList(
                            nn.ModuleList(
                                op_dict[p](c_in, c_out, stride, True) for p in self.primitives
                            )
                            for c_out in self.Cs
                        )
                        for c_in in self.Cs
                    )
                )
            self.op_grid.append(strides)
        self.base = nn.ModuleList(SharpSepConv(c, head_channels, 3) for c in self.Cs)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head_channels, num_classes)
        self.alphas = nn.Parameter(1e-3 * torch.randn(2, layers, n, n, k))

    # -- parameters and weights --
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (one tensor, ``[2, layers, n, n, ops]``)."""
        return [self.alphas]

    def weights(self) -> list[nn.Parameter]:
        """Every parameter but the architecture's, trained by the weight optimizer."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def arch_weights(self) -> torch.Tensor:
        """softmax(alphas), taken per (stride, layer) block over ``C_in x C_out x op``."""
        return F.softmax(self.alphas.flatten(2), dim=-1).view_as(self.alphas)

    def coefficients(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Each op's mixing coefficient: the weighting scheme applied per (stride, layer) block."""
        weights = self.arch_weights() if weights is None else weights
        return self.weighting(weights.flatten(2)).view_as(weights)

    def _raw_order(self) -> list[int]:
        """Indices taking our op axis to ``GRID_PRIMITIVES`` order, when it is a permutation."""
        if sorted(self.primitives) == sorted(GRID_PRIMITIVES):
            return [self.primitives.index(p) for p in GRID_PRIMITIVES]
        return list(range(len(self.primitives)))

    @torch.no_grad()
    def raw_weights(self) -> genotypes_lib.Genotype:
        """The softmax weights as the published raw-weights genotype.

        ``normal`` is the stride-1 half and ``reduce`` the stride-2 half, each nested lists
        ``[layers, n, n, ops]``, ops in ``GRID_PRIMITIVES`` order (for other primitive sets,
        in ``self.primitives`` order).
        """
        w = self.arch_weights()[..., self._raw_order()].float().cpu()
        return genotypes_lib.Genotype(w[0].tolist(), [], w[1].tolist(), [], "raw_weights")

    @torch.no_grad()
    def load_raw_weights(self, genotype) -> None:
        """Sets the alphas so that their softmax equals a raw-weights genotype (or its name).

        Raises:
            ValueError: a genotype of another layout or shape.
        """
        w = torch.as_tensor(weights_array(genotype), dtype=torch.float64)
        if tuple(w.shape) != tuple(self.alphas.shape):
            raise ValueError(
                f"raw weights of shape {list(w.shape)} do not fit alphas of shape "
                f"{list(self.alphas.shape)}"
            )
        mine = torch.empty_like(w)
        mine[..., self._raw_order()] = w
        # softmax(log w) = w / sum(w) = w for weights that sum to 1 per block.
        self.alphas.copy_(mine.clamp_min(1e-30).log().to(self.alphas))

    # -- forward --
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.arch_weights()
        coefficients = self.coefficients(weights)
        # One host transfer per forward decides which ops run (the original compares w > min).
        keep = (
            None
            if self.always_apply_ops
            else (weights.detach() > self.weight_threshold).cpu().tolist()
        )
        states: list[torch.Tensor | None] = [stem(x) for stem in self.stem]
        n, k = len(self.Cs), len(self.primitives)
        for layer in range(self._layers):
            for s_idx in range(len(STRIDES)):
                grid = self.op_grid[layer][s_idx]
                outputs: list[torch.Tensor | None] = []
                for j in range(n):
                    terms = []
                    for i in range(n):
                        if states[i] is None:  # no op reached this width in the last stage
                            continue
                        for o in range(k):
                            if keep is not None and not keep[s_idx][layer][i][j][o]:
                                continue
                            terms.append(
                                coefficients[s_idx, layer, i, j, o] * grid[i][j][o](states[i])
                            )
                    outputs.append(sum(terms) if terms else None)
                states = outputs
        features = [head(s) for head, s in zip(self.base, states) if s is not None]
        if not features:
            raise RuntimeError(
                "every op reaching the head is under weight_threshold "
                f"{self.weight_threshold:g}; set always_apply_ops or lower it"
            )
        out = self.global_pooling(sum(features))
        return self.classifier(out.flatten(1))

    # -- graph and genotypes --
    @torch.no_grad()
    def graph(self) -> nx.DiGraph:
        """The grid graph weighted by the current softmax weights (built afresh each call)."""
        return grid_graph(self.arch_weights(), self.Cs, self._layers, self.primitives)

    def paths(self) -> dict[str, list[str]]:
        """The longest path and both greedy paths of the current weights, by name."""
        graph = self.graph()
        return {
            "longest_path": longest_path(graph),
            "greedy_top_down": greedy_path(graph, "top_down"),
            "greedy_bottom_up": greedy_path(graph, "bottom_up"),
        }

    def genotype(
        self, skip_primitive: str | None = None, method: str = "longest_path"
    ) -> genotypes_lib.Genotype:
        """The chosen path as a ``Genotype(layout='path')``.

        Args:
            skip_primitive: accepted for the SearchNetwork interface and ignored (the grid
                has no 'none' op to leave out).
            method: 'longest_path' (the paper's choice), 'greedy_top_down' or
                'greedy_bottom_up'.
        """
        graph = self.graph()
        if method == "longest_path":
            path = longest_path(graph)
        elif method in ("greedy_top_down", "greedy_bottom_up"):
            path = greedy_path(graph, method[len("greedy_") :])
        else:
            raise ValueError(
                f"unknown path method '{method}'; use 'longest_path', "
                "'greedy_top_down' or 'greedy_bottom_up'"
            )
        return path_genotype(path)


# ---- The path model -------------------------------------------------------------------------
@gin.configurable
@validate.params(
    C=validate.WIDTH,
    steps=validate.COUNT,
    head_channels=validate.WIDTH,
    primitives=PRIMITIVES_OF_KNOWN_OPS.or_none(),
)
class PathNetwork(nn.Module):
    """The network of one grid path: a chain of the path's ops, trained from scratch.

    Stem (3x3 conv + BN) of the path's width, then each op node's op with its ``c_in``,
    ``c_out`` and stride, then the head: SharpSepConv(c -> head_channels), global average
    pooling, linear. Sum nodes on a path have a single input and add nothing.

    Args:
        path: a 'path' genotype, a list of node names, or a registry name
            (e.g. 'MULTI_CHANNEL_MAX_W_PATH'). ``_opid_{i}`` suffixes are ignored.
        num_classes: classes.
        in_channels: image channels.
        head_channels: width of the head SharpSepConv (768).
        C: initial channels of the grid the path came from (widths ``channel_widths(C, steps)``).
        steps: how many widths that grid had.
        op_dict: op table (name or mapping); ops are built as ``op(C_in, C_out, stride, True)``.
        primitives: the grid's op names (``GRID_PRIMITIVES`` by default), for validation.

    ``forward(x)`` returns ``(logits, None)``, as NetworkCIFAR without an auxiliary head;
    ``drop_path_prob`` exists for the training loop and is unused.

    Raises:
        InvalidPathError (a ValueError): the path is not a Source-to-Linear path of the grid;
            the message names the first invalid node or edge.
    """

    def __init__(
        self,
        path=gin.REQUIRED,
        num_classes: int = 10,
        in_channels: int = 3,
        head_channels: int = 768,
        C: int = 36,
        steps: int = 4,
        op_dict="MULTICHANNELNET_OPS",
        primitives: str | Sequence[str] | None = None,
    ):
        super().__init__()
        names = [_OPID_RE.sub("", n) if isinstance(n, str) else n for n in path_list(path)]
        primitives, op_dict = resolve_ops(
            GRID_PRIMITIVES if primitives is None else primitives, op_dict
        )
        Cs = channel_widths(C, steps)
        ops = [parse_op_node(n) for n in names]
        layers = 1 + max((p.layer for p in ops if p is not None), default=-1)
        if layers < 1:
            raise InvalidPathError(
                "the path has no op nodes "
                "('layer_{l}_stride_{s}_c_in_{ci}_c_out_{co}_op_type_{Op}')"
            )
        check_path(names, grid_graph(None, Cs, layers, primitives))
        self.genotype = path_genotype(names)
        self.drop_path_prob = 0.0
        stem_index = next(int(m.group(1)) for m in map(_CONV_RE.fullmatch, names) if m)
        width = Cs[stem_index]
        self.stem = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
                )
            ]
        )
        self.op_grid = nn.ModuleList(
            op_dict[p.op](p.c_in, p.c_out, p.stride, True) for p in ops if p is not None
        )
        head_width = next(int(m.group(1)) for m in map(_HEAD_RE.fullmatch, names) if m)
        self.base = nn.ModuleList([SharpSepConv(head_width, head_channels, 3)])
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor):
        x = self.stem[0](x)
        for op in self.op_grid:
            x = op(x)
        out = self.global_pooling(self.base[0](x))
        return self.classifier(out.flatten(1)), None
