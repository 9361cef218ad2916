"""The HyperCuboid grid as a graph: node names, the weighted DAG, its paths (no torch).

Part of :mod:`sharpdarts.nn.multichannel` (its package docstring describes the grid, the
alpha layout and the op order). This module itself is plain networkx and numpy (it never
imports torch); the networks are in ``networks.py``.

The graph (:func:`grid_graph`) names its nodes as the published paths do::

    Source -> Conv3x3_{k} -> BatchNorm_{k}
      -> layer_{l}_stride_{s}_c_in_{ci}_c_out_{co}_op_type_{Op}
      -> layer_{l}_add_c_out_{co}_stride_{s}
      -> ... -> SharpSepConv{c} -> add-SharpSep -> global_pooling -> Linear

(the original's later ``_opid_{i}`` suffix is not part of the published paths). Each op node's
edge into its sum node carries the op's current softmax weight (also kept as the op node's
``weight`` attribute). A path through it is a genotype with ``layout='path'``.
"""

from __future__ import annotations

import math
import re
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.errors import UserError

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
    "path_list",
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
def weights_array(weights: Any) -> np.ndarray:
    """``[2, layers, n, n, ops]`` floats from a tensor, array, nested list or raw weights."""
    if isinstance(weights, (str, Mapping)):
        weights = genotypes_lib.resolve(weights)
    if isinstance(weights, genotypes_lib.Genotype):
        if weights.layout != "raw_weights":
            raise ValueError(f"expected a 'raw_weights' genotype, got layout '{weights.layout}'")
        weights = [weights.normal, weights.reduce]
    if hasattr(weights, "detach"):  # a torch tensor (torch itself is not imported here)
        weights = weights.detach().float().cpu().numpy()
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim != 5 or array.shape[0] != 2 or array.shape[2] != array.shape[3]:
        raise ValueError(
            "grid weights must have the shape [2 strides, layers, widths, widths, ops], "
            f"got {list(array.shape)}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("grid weights contain NaN or infinite values")
    return array


def grid_graph(
    weights: Any = None,
    Cs: Sequence[int] | None = None,
    layers: int | None = None,
    primitives: Sequence[str] | None = None,
) -> nx.DiGraph:
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
    w = None if weights is None else weights_array(weights)
    if w is not None:
        if layers is not None and layers != w.shape[1]:
            raise ValueError(f"layers={layers} but the weights have {w.shape[1]} layers")
        layers = w.shape[1]
        if Cs is None:
            Cs = channel_widths(36, w.shape[2])
        if len(Cs) != w.shape[2] or len(primitives) != w.shape[4]:
            raise ValueError(
                f"weights of shape {list(w.shape)} do not fit {len(Cs)} widths and "
                f"{len(primitives)} primitives {primitives}"
            )
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
                        attrs = dict(
                            kind="op", layer=layer, stride=stride, c_in=c_in, c_out=c_out, op=op
                        )
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
def path_list(path: Any) -> list[str]:
    """Node names from a path genotype, a list of names or a registry name."""
    if isinstance(path, (str, genotypes_lib.Genotype, Mapping)):
        path = genotypes_lib.resolve(path)
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
    names = path_list(path)
    where = f"(grid: widths {graph.graph.get('Cs')}, {graph.graph.get('layers')} layers)"
    if not names:
        raise InvalidPathError("the path is empty")
    for index, name in enumerate(names):
        if name not in graph:
            raise InvalidPathError(f"path node {index} '{name}' is not a node of the grid {where}")
        if index and not graph.has_edge(names[index - 1], name):
            raise InvalidPathError(
                f"path edge {index - 1}->{index} '{names[index - 1]}' -> "
                f"'{name}' is not an edge of the grid {where}"
            )
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
