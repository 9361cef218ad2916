"""Differentiable hyperparameter grid search (HyperCuboid): the multi-channel supernet, its
weighted graph, path extraction and the path models trained afterwards.

The grid (FACTS.md, "HyperCuboid"): ``layers`` grid layers, each a stride-1 stage followed by
a stride-2 stage. The feature maps come in the channel widths
``Cs = 2 ** (floor(log2 C) + k)``, ``k = 0 .. steps - 1`` ({32, 64, 128, 256} for C = 36). At
every stage every ``C_in -> C_out`` pair is joined by each primitive, and the outputs with the
same ``C_out`` are summed. A 3x3 conv + BN stem per width feeds the first stage; a
SharpSepConv head per width (``c -> head_channels``) is summed, pooled and classified.

Architecture weights: one parameter ``alphas`` of shape ``[2, layers, n, n, ops]`` indexed
``[stride index (0: stride 1, 1: stride 2), layer, C_in index, C_out index, op]``. The softmax
is taken per ``(stride, layer)`` block over ``C_in x C_out x op`` (32 entries for the paper's
grid). This is the layout of the published raw weights: ``MULTI_CHANNEL_*.normal`` is the
stride-1 half ``[layers, n, n, ops]`` and ``.reduce`` the stride-2 half.

Op order: the published raw weights (and hence the published longest paths) use
``GRID_PRIMITIVES = ['SharpSepConv', 'ResizablePool']``, the op order of the original
network; ``genotypes.MULTICHANNELNET_PRIMITIVES`` lists the same two ops the other way
round. Read with that order, the published weights do not give the published paths, so
``GRID_PRIMITIVES`` is the default here (see ``tests/test_multichannel.py``).

The graph (:func:`grid_graph`) names its nodes as the published paths do::

    Source -> Conv3x3_{k} -> BatchNorm_{k}
      -> layer_{l}_stride_{s}_c_in_{ci}_c_out_{co}_op_type_{Op} -> layer_{l}_add_c_out_{co}_stride_{s}
      -> ... -> SharpSepConv{c} -> add-SharpSep -> global_pooling -> Linear

(the original's later ``_opid_{i}`` suffix is not part of the published paths). Each op node's
edge into its sum node carries the op's current softmax weight (also kept as the op node's
``weight`` attribute). A path through it is a genotype with ``layout='path'``.
"""
from __future__ import annotations

import math
import re
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

import gin
import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.errors import UserError
from sharpdarts.nn.ops import SharpSepConv, op_table
from sharpdarts.nn.weighting import get_weighting

__all__ = [
    "GRID_PRIMITIVES",
    "SOURCE",
    "HEAD_SUM",
    "POOLING",
    "LINEAR",
    "OpNode",
    "InvalidPathError",
    "channel_widths",
    "stem_nodes",
    "op_node",
    "sum_node",
    "head_node",
    "parse_op_node",
    "grid_graph",
    "longest_path",
    "greedy_path",
    "check_path",
    "path_nodes_valid",
    "path_genotype",
    "MultiChannelNetwork",
    "PathNetwork",
]

# The op order of the original network and of the published raw weights.
GRID_PRIMITIVES: list[str] = ["SharpSepConv", "ResizablePool"]

SOURCE = "Source"
HEAD_SUM = "add-SharpSep"
POOLING = "global_pooling"
LINEAR = "Linear"
STRIDES = (1, 2)

OpNode = namedtuple("OpNode", ["layer", "stride", "c_in", "c_out", "op"])
OpNode.__doc__ = "The parts of an op node's name: grid layer, stride, widths and primitive."

# The original's later code appended '_opid_{primitive index}'; the published paths do not.
_OP_RE = re.compile(r"layer_(\d+)_stride_(\d+)_c_in_(\d+)_c_out_(\d+)_op_type_(\w+?)(?:_opid_\d+)?")
_OPID_RE = re.compile(r"_opid_\d+$")
_CONV_RE = re.compile(r"Conv3x3_(\d+)")
_HEAD_RE = re.compile(r"SharpSepConv(\d+)")


class InvalidPathError(UserError, ValueError):
    """A path that is not a Source-to-Linear path of the grid graph (a user mistake)."""


# ---- Names ----------------------------------------------------------------------------------
def channel_widths(C: int, steps: int) -> list[int]:
    """The grid's channel widths ``2 ** (floor(log2 C) + k)`` for ``k = 0 .. steps - 1``.

    Args:
        C: the initial channels (36 in the paper, giving 32 as the smallest width).
        steps: how many widths.

    Raises:
        ValueError: C or steps below 1.
    """
    if C < 1 or steps < 1:
        raise ValueError(f"C and steps must be positive, got C={C!r}, steps={steps!r}")
    start = int(math.floor(math.log2(C)))
    return [2 ** (start + k) for k in range(steps)]


def stem_nodes(index: int) -> tuple[str, str]:
    """The conv and batch-norm node names of the stem of width ``Cs[index]``."""
    return f"Conv3x3_{index}", f"BatchNorm_{index}"


def op_node(layer: int, stride: int, c_in: int, c_out: int, op: str) -> str:
    """The name of the op joining ``c_in`` to ``c_out`` at ``(layer, stride)``."""
    return f"layer_{layer}_stride_{stride}_c_in_{c_in}_c_out_{c_out}_op_type_{op}"


def sum_node(layer: int, c_out: int, stride: int) -> str:
    """The name of the node summing the ops into width ``c_out`` at ``(layer, stride)``."""
    return f"layer_{layer}_add_c_out_{c_out}_stride_{stride}"


def head_node(c: int) -> str:
    """The name of the head SharpSepConv reading width ``c``."""
    return f"SharpSepConv{c}"


def parse_op_node(name: str) -> OpNode | None:
    """Splits an op node name into its parts; None when ``name`` is not an op node.

    A trailing ``_opid_{i}`` (written by the original's later code) is accepted and ignored.
    """
    m = _OP_RE.fullmatch(name)
    if m is None:
        return None
    layer, stride, c_in, c_out, op = m.groups()
    return OpNode(int(layer), int(stride), int(c_in), int(c_out), op)


# ---- The weighted graph ---------------------------------------------------------------------
def _weights_array(weights: Any) -> np.ndarray:
    """``[2, layers, n, n, ops]`` floats from a tensor, array, nested list or raw-weights genotype."""
    if isinstance(weights, genotypes_lib.Genotype):
        if weights.layout != "raw_weights":
            raise ValueError(f"expected a 'raw_weights' genotype, got layout '{weights.layout}'")
        weights = [weights.normal, weights.reduce]
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().float().cpu().numpy()
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim != 5 or array.shape[0] != 2 or array.shape[2] != array.shape[3]:
        raise ValueError("grid weights must have the shape [2 strides, layers, widths, widths, ops], "
                         f"got {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise ValueError("grid weights contain NaN or infinite values")
    return array


def grid_graph(weights: Any = None, Cs: Sequence[int] | None = None, layers: int | None = None,
               primitives: Sequence[str] | None = None) -> nx.DiGraph:
    """The grid as a networkx DAG, each op's edge into its sum node weighted by the op's weight.

    Nodes are added in a fixed order (stems by width; per layer and stride, ops by
    ``C_in``, ``C_out``, primitive; heads by width), which is the tie order of
    :func:`greedy_path`. Node attribute ``kind`` is one of ``source, stem_conv, stem_bn, op,
    sum, head, head_sum, pooling, linear``; op nodes also hold ``layer, stride, c_in, c_out,
    op`` and (when weighted) ``weight``.

    Args:
        weights: ``[2, layers, n, n, ops]`` softmax weights (tensor, array or nested lists),
            a 'raw_weights' genotype (``normal`` = stride 1, ``reduce`` = stride 2), or None
            for the unweighted structure (then ``layers`` and ``Cs`` are required).
        Cs: the channel widths (``n`` of them); by default ``channel_widths(36, n)``.
        layers: grid layers; by default read from ``weights``.
        primitives: op names along the last weight axis; ``GRID_PRIMITIVES`` by default.

    Returns:
        A ``networkx.DiGraph`` with graph attributes ``Cs``, ``layers`` and ``primitives``.

    Raises:
        ValueError: shapes that do not agree, or missing sizes for an unweighted graph.
    """
    primitives = list(GRID_PRIMITIVES if primitives is None else primitives)
    w = None if weights is None else _weights_array(weights)
    if w is not None:
        if layers is not None and layers != w.shape[1]:
            raise ValueError(f"layers={layers} but the weights have {w.shape[1]} layers")
        layers = w.shape[1]
        if Cs is None:
            Cs = channel_widths(36, w.shape[2])
        if len(Cs) != w.shape[2] or len(primitives) != w.shape[4]:
            raise ValueError(f"weights of shape {list(w.shape)} do not fit {len(Cs)} widths and "
                             f"{len(primitives)} primitives {primitives}")
    if layers is None or Cs is None:
        raise ValueError("an unweighted grid graph needs both layers and Cs")
    Cs = [int(c) for c in Cs]
    graph = nx.DiGraph(Cs=Cs, layers=int(layers), primitives=primitives)
    graph.add_node(SOURCE, kind="source")
    for k in range(len(Cs)):
        conv, bn = stem_nodes(k)
        graph.add_node(conv, kind="stem_conv", c=Cs[k])
        graph.add_node(bn, kind="stem_bn", c=Cs[k])
        graph.add_edge(SOURCE, conv)
        graph.add_edge(conv, bn)
    inputs = [stem_nodes(k)[1] for k in range(len(Cs))]
    for layer in range(layers):
        for s_idx, stride in enumerate(STRIDES):
            outputs = [sum_node(layer, c, stride) for c in Cs]
            for j, c_out in enumerate(Cs):
                graph.add_node(outputs[j], kind="sum", layer=layer, stride=stride, c=c_out)
            for i, c_in in enumerate(Cs):
                for j, c_out in enumerate(Cs):
                    for o, op in enumerate(primitives):
                        name = op_node(layer, stride, c_in, c_out, op)
                        attrs = dict(kind="op", layer=layer, stride=stride, c_in=c_in,
                                     c_out=c_out, op=op)
                        edge = {}
                        if w is not None:
                            attrs["weight"] = edge["weight"] = float(w[s_idx, layer, i, j, o])
                        graph.add_node(name, **attrs)
                        graph.add_edge(inputs[i], name)
                        graph.add_edge(name, outputs[j], **edge)
            inputs = outputs
    for c in Cs:
        graph.add_node(head_node(c), kind="head", c=c)
    graph.add_node(HEAD_SUM, kind="head_sum")
    for c, last in zip(Cs, inputs):
        graph.add_edge(last, head_node(c))
        graph.add_edge(head_node(c), HEAD_SUM)
    graph.add_node(POOLING, kind="pooling")
    graph.add_node(LINEAR, kind="linear")
    graph.add_edge(HEAD_SUM, POOLING)
    graph.add_edge(POOLING, LINEAR)
    return graph


def longest_path(graph: nx.DiGraph) -> list[str]:
    """The heaviest Source-to-Linear path: ``networkx.dag_longest_path`` on the op weights.

    As in the original, edges without a weight count 1. Every Source-to-Linear path crosses
    the same number of them, so the path chosen is the one with the largest sum of op weights
    (one op per stage), and it always runs from Source to Linear. Ties follow networkx (the
    graph's insertion order).
    """
    path = nx.dag_longest_path(graph, weight="weight", default_weight=1)
    if not path or path[0] != SOURCE or path[-1] != LINEAR:  # pragma: no cover - by construction
        raise ValueError("the graph is not a grid graph from Source to Linear")
    return path


def _score(graph: nx.DiGraph, node: str) -> float:
    """A node's weight for the greedy walk: its op weight, 0 for any other node."""
    return graph.nodes[node].get("weight", 0.0)


def greedy_path(graph: nx.DiGraph, direction: str = "top_down") -> list[str]:
    """A greedy Source-to-Linear path, as the original's ``gen_greedy_path``.

    The rule: start at ``Source`` (``'top_down'``, walking successors) or at ``Linear``
    (``'bottom_up'``, walking predecessors, the result reversed) and repeatedly step to the
    neighbour with the largest weight, where an op node weighs its op weight and every other
    node 0; ties keep the first neighbour in the graph's insertion order. So top-down always
    starts from the smallest stem width (``Conv3x3_0``) and at each sum or stem node takes the
    heaviest op leaving that width; bottom-up always enters the head through the smallest
    width (``SharpSepConv{Cs[0]}``) and at each sum node takes the heaviest op arriving there.

    Unlike the original code, the start node is not repeated (its bottom-up list ended in
    ``'Linear'`` twice) and the walk uses the op's own weight at every step. The published
    ``MULTI_CHANNEL_GREEDY_SCALAR_BOTTOM_UP`` is reproduced from the published weights; the
    other three published greedy paths are not (they came from graphs not published).

    Args:
        graph: a graph from :func:`grid_graph`.
        direction: ``'top_down'`` or ``'bottom_up'``.

    Raises:
        ValueError: an unknown direction, or a graph in which the walk gets stuck.
    """
    if direction == "top_down":
        start, end, neighbours = SOURCE, LINEAR, graph.successors
    elif direction == "bottom_up":
        start, end, neighbours = LINEAR, SOURCE, graph.predecessors
    else:
        raise ValueError(f"unknown greedy direction '{direction}'; use 'top_down' or 'bottom_up'")
    node, path = start, [start]
    while node != end:
        candidates = list(neighbours(node))
        if not candidates:
            raise ValueError(f"the greedy {direction} walk is stuck at '{node}'")
        node = max(candidates, key=lambda n: _score(graph, n))  # max keeps the first of ties
        path.append(node)
    return path if direction == "top_down" else path[::-1]


# ---- Paths ----------------------------------------------------------------------------------
def _path_list(path: Any) -> list[str]:
    """Node names from a path genotype, a list of names or a registry name."""
    if isinstance(path, str):
        path = genotypes_lib.get(path)
    if isinstance(path, genotypes_lib.Genotype):
        if path.layout != "path":
            raise InvalidPathError(f"expected a 'path' genotype, got layout '{path.layout}'")
        path = path.normal
    names = list(path)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise InvalidPathError(f"a path is a list of node names, got {bad[0]!r}")
    return names


def check_path(path: Any, graph: nx.DiGraph) -> list[str]:
    """Checks that ``path`` is a Source-to-Linear path of ``graph``; returns its node names.

    Args:
        path: a 'path' genotype, a list of node names, or a registry name.
        graph: a graph from :func:`grid_graph` (weighted or not).

    Raises:
        InvalidPathError (a ValueError): naming the first node or edge that is not in the
            graph, or a wrong start or end.
    """
    names = _path_list(path)
    where = f"(grid: widths {graph.graph.get('Cs')}, {graph.graph.get('layers')} layers)"
    if not names:
        raise InvalidPathError("the path is empty")
    for index, name in enumerate(names):
        if name not in graph:
            raise InvalidPathError(f"path node {index} '{name}' is not a node of the grid {where}")
        if index and not graph.has_edge(names[index - 1], name):
            raise InvalidPathError(f"path edge {index - 1}->{index} '{names[index - 1]}' -> "
                                   f"'{name}' is not an edge of the grid {where}")
    if names[0] != SOURCE:
        raise InvalidPathError(f"a path must start at '{SOURCE}', this one starts at '{names[0]}'")
    if names[-1] != LINEAR:
        raise InvalidPathError(f"a path must end at '{LINEAR}', this one ends at '{names[-1]}'")
    return names


def path_nodes_valid(path: Any, graph: nx.DiGraph) -> bool:
    """Whether ``path`` is a Source-to-Linear path of ``graph`` (see :func:`check_path`)."""
    try:
        check_path(path, graph)
    except InvalidPathError:
        return False
    return True


def path_genotype(path: Sequence[str]) -> genotypes_lib.Genotype:
    """A ``Genotype(layout='path')`` holding the node names of ``path``."""
    return genotypes_lib.Genotype(list(path), [], [], [], "path")


# ---- The search network ---------------------------------------------------------------------
def _grid_ops(primitives, op_dict) -> tuple[list[str], dict]:
    primitives = list(genotypes_lib.primitives(primitives))
    op_dict = op_table(op_dict)
    missing = [p for p in primitives if p not in op_dict]
    if missing:
        raise ValueError(f"primitives {missing} are not in the op table "
                         f"{getattr(op_dict, 'name', '')}".rstrip())
    return primitives, op_dict


@gin.configurable
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

    def __init__(self, C: int = 36, num_classes: int = 10, layers: int = 4, steps: int = 4,
                 in_channels: int = 3, weighting="scalar", always_apply_ops: bool = False,
                 weight_threshold: float | None = None,
                 primitives: str | Sequence[str] | None = None,
                 op_dict="MULTICHANNELNET_OPS", head_channels: int = 768):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers!r}")
        self.primitives, op_dict = _grid_ops(GRID_PRIMITIVES if primitives is None else primitives,
                                             op_dict)
        self.Cs = channel_widths(C, steps)
        self._layers = layers
        self.weighting = get_weighting(weighting)
        self.always_apply_ops = always_apply_ops
        n, k = len(self.Cs), len(self.primitives)
        self.block_size = n * n * k
        self.weight_threshold = (1.0 / self.block_size ** 2 if weight_threshold is None
                                 else float(weight_threshold))
        self.stem = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
            for c in self.Cs)
        self.op_grid = nn.ModuleList()
        for _ in range(layers):
            strides = nn.ModuleList()
            for stride in STRIDES:
                strides.append(nn.ModuleList(
                    nn.ModuleList(
                        nn.ModuleList(op_dict[p](c_in, c_out, stride, True) for p in self.primitives)
                        for c_out in self.Cs)
                    for c_in in self.Cs))
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
        if isinstance(genotype, str):
            genotype = genotypes_lib.get(genotype)
        w = torch.as_tensor(_weights_array(genotype), dtype=torch.float64)
        if tuple(w.shape) != tuple(self.alphas.shape):
            raise ValueError(f"raw weights of shape {list(w.shape)} do not fit alphas of shape "
                             f"{list(self.alphas.shape)}")
        mine = torch.empty_like(w)
        mine[..., self._raw_order()] = w
        # softmax(log w) = w / sum(w) = w for weights that sum to 1 per block.
        self.alphas.copy_(mine.clamp_min(1e-30).log().to(self.alphas))

    # -- forward --
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.arch_weights()
        coefficients = self.coefficients(weights)
        # One host transfer per forward decides which ops run (the original compares w > min).
        keep = None if self.always_apply_ops else (weights.detach() > self.weight_threshold).cpu().tolist()
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
                            terms.append(coefficients[s_idx, layer, i, j, o] * grid[i][j][o](states[i]))
                    outputs.append(sum(terms) if terms else None)
                states = outputs
        features = [head(s) for head, s in zip(self.base, states) if s is not None]
        if not features:
            raise RuntimeError("every op reaching the head is under weight_threshold "
                               f"{self.weight_threshold:g}; set always_apply_ops or lower it")
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
        return {"longest_path": longest_path(graph),
                "greedy_top_down": greedy_path(graph, "top_down"),
                "greedy_bottom_up": greedy_path(graph, "bottom_up")}

    def genotype(self, skip_primitive: str | None = None,
                 method: str = "longest_path") -> genotypes_lib.Genotype:
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
            path = greedy_path(graph, method[len("greedy_"):])
        else:
            raise ValueError(f"unknown path method '{method}'; use 'longest_path', "
                             "'greedy_top_down' or 'greedy_bottom_up'")
        return path_genotype(path)


# ---- The path model -------------------------------------------------------------------------
@gin.configurable
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

    def __init__(self, path=gin.REQUIRED, num_classes: int = 10, in_channels: int = 3,
                 head_channels: int = 768, C: int = 36, steps: int = 4,
                 op_dict="MULTICHANNELNET_OPS", primitives: str | Sequence[str] | None = None):
        super().__init__()
        names = [_OPID_RE.sub("", n) if isinstance(n, str) else n for n in _path_list(path)]
        primitives, op_dict = _grid_ops(GRID_PRIMITIVES if primitives is None else primitives, op_dict)
        Cs = channel_widths(C, steps)
        ops = [parse_op_node(n) for n in names]
        layers = 1 + max((p.layer for p in ops if p is not None), default=-1)
        if layers < 1:
            raise InvalidPathError("the path has no op nodes "
                                   "('layer_{l}_stride_{s}_c_in_{ci}_c_out_{co}_op_type_{Op}')")
        check_path(names, grid_graph(None, Cs, layers, primitives))
        self.genotype = path_genotype(names)
        self.drop_path_prob = 0.0
        stem_index = next(int(m.group(1)) for m in map(_CONV_RE.fullmatch, names) if m)
        width = Cs[stem_index]
        self.stem = nn.ModuleList([nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))])
        self.op_grid = nn.ModuleList(op_dict[p.op](p.c_in, p.c_out, p.stride, True)
                                     for p in ops if p is not None)
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
