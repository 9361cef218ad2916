"""NAS-Bench-201's networks: the benchmark's fixed network of a cell, its search supernet, and
loading the authors' weights into either.

:class:`NB201Network` is the benchmark's ``TinyNetwork`` (``xautodl.models.cell_infers``):
the macro skeleton of :mod:`sharpdarts.nn.nb201_ops` with one fixed cell (:class:`InferCell`)
repeated ``N`` times per stage. :class:`NB201SearchNetwork` is the same skeleton with search
cells (:mod:`sharpdarts.nn.nb201_search`), one class for DARTS, GDAS, DrNAS, SNAS, PC-DARTS
and RSPS on this space.
docs/nb201.md describes both and the authors' code they equal.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import gin
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.core import validate
from sharpdarts.core.nb201_arch import (
    EDGES,
    NODES,
    OPS,  # (the NAS-Bench-201 contract names OPS here too; it is defined in core)
    arch_from_weights,
    parse_arch,
)
from sharpdarts.core.nb201_search import random_cell
from sharpdarts.errors import UserError
from sharpdarts.nn.drnas import Growth, masked_weights, prune_alphas
from sharpdarts.nn.nb201_ops import MacroNetwork, make_op
from sharpdarts.nn.nb201_search import METHODS, PARTIAL, NB201SearchCell
from sharpdarts.nn.relaxation import dirichlet, gumbel_hard, gumbel_soft


class InferCell(nn.Module):
    """A fixed NAS-Bench-201 cell: ``layers[e]`` is the op on edge ``EDGES[e]``.

    Args:
        ops: six op names, one per edge in :data:`~sharpdarts.core.nb201_arch.EDGES` order (the
            order in which the authors' ``InferCell`` lists its layers).
        C: the cell's width.
    """

    def __init__(self, ops: Sequence[str], C: int):
        super().__init__()
        self.ops = tuple(ops)
        self.layers = nn.ModuleList(make_op(op, C, True, True, False) for op in self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in range(1, NODES):
            nodes.append(
                sum(self.layers[e](nodes[j]) for e, (node, j) in enumerate(EDGES) if node == i)
            )
        return nodes[-1]


@gin.configurable
@validate.params(C=validate.WIDTH, N=validate.DEPTH, in_channels=validate.COUNT)
class NB201Network(MacroNetwork):
    """The benchmark's network of one cell (``TinyNetwork``): ``3N`` cells, 2 residual blocks.

    Args:
        arch: the cell as the benchmark writes it (``'|nor_conv_3x3~0|+|...|'``).
        C: the first stage's width (16).
        N: cells per stage (5).
        num_classes: 10 (CIFAR-10), 100 (CIFAR-100) or 120 (ImageNet16-120).
        in_channels: image channels (3).

    ``forward(x)`` returns the logits (the authors' returns ``(pooled features, logits)``).
    """

    def __init__(
        self,
        arch: str = gin.REQUIRED,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        self.ops = parse_arch(arch)
        self._build(C, N, num_classes, in_channels, lambda width: InferCell(self.ops, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.stem(x)
        for cell in self.cells:
            feature = cell(feature)
        return self._head(feature)


@gin.configurable
@validate.params(
    C=validate.WIDTH,
    N=validate.DEPTH,
    method=validate.Choice("one of " + ", ".join(METHODS), choices=METHODS),
    in_channels=validate.COUNT,
    partial_channels=validate.COUNT,
)
class NB201SearchNetwork(MacroNetwork):
    """The NAS-Bench-201 supernet of one search method (:mod:`sharpdarts.nn.nb201_search`
    describes how each method weights the ops).

    Args:
        C: the first stage's width (16).
        N: cells per stage (5).
        num_classes: classes.
        method: 'darts', 'gdas', 'drnas', 'snas', 'pc_darts' or 'rsps'.
        affine: the cell ops' BN affine (False in the authors' searches).
        track_running_stats: the cell ops' BN running statistics.
        in_channels: image channels.
        partial_channels: DrNAS's and PC-DARTS' K (1: off; DrNAS's progressive search and
            PC-DARTS start at 4).
        conv_bias: whether the cell ops' convs have a bias; None: as the method's authors
            (xautodl: ``not affine``; DrNAS: never).
        plain_lastact: True: the last BN is affine and tracks statistics, as in DrNAS and in
            xautodl's ``TinyNetworkDarts``, ``TinyNetworkGDAS`` and ``TinyNetworkRANDOM`` (the
            NAS-Bench-201 paper's searches); False: it takes the cells' ``affine`` and
            ``track_running_stats``, as in xautodl's ``GenericNAS201Model``. None: as the
            method's authors ('drnas' and 'rsps': True).
        channels_last: parameters and activations in the channels-last memory format (the
            same math; faster steps on CPU, see benchmarks/README.md).

    ``alphas`` (6 edges x 5 ops, edges in :data:`~sharpdarts.core.nb201_arch.EDGES` order) is
    the architecture parameter, with PC-DARTS' (6,) edge ``betas`` (:meth:`arch_parameters`);
    :meth:`weights` returns the rest. ``tau`` is the temperature of GDAS (10 at the start, as
    xautodl sets it) and SNAS (1); None for the others. RSPS has no architecture parameters
    (``alphas`` is None): each forward draws a cell, recorded as ``sampled``, its arch string.
    """

    def __init__(
        self,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        method: str = "darts",
        affine: bool = False,
        track_running_stats: bool = True,
        in_channels: int = 3,
        partial_channels: int = 1,
        conv_bias: bool | None = None,
        plain_lastact: bool | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        if method not in METHODS:
            raise UserError(
                f"NB201SearchNetwork: method={method!r} is not one of {', '.join(METHODS)}."
            )
        drnas = method == "drnas"
        if partial_channels != 1 and method not in PARTIAL:
            raise UserError(
                f"NB201SearchNetwork: partial_channels={partial_channels} is DrNAS's and "
                f"PC-DARTS'; with method={method!r} leave it at 1 (or use method='drnas' or "
                "'pc_darts')."
            )
        if C % partial_channels:
            raise UserError(
                f"NB201SearchNetwork: partial_channels={partial_channels} must divide C={C}."
            )
        self.method = method
        self.C = C

        bias = (False if drnas else not affine) if conv_bias is None else conv_bias
        plain = method in ("drnas", "rsps") if plain_lastact is None else plain_lastact

        def cell(width: int) -> NB201SearchCell:
            return NB201SearchCell(
                width, method, affine, track_running_stats, bias, partial_channels
            )

        self._build(
            C,
            N,
            num_classes,
            in_channels,
            cell,
            lastact_affine=plain or affine,
            lastact_track=plain or track_running_stats,
        )
        rsps = method == "rsps"  # no architecture weights (xautodl's TinyNetworkRANDOM)
        self.alphas = None if rsps else nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS)))
        self.sampled: str | None = None  # RSPS: the cell of the last forward
        # PC-DARTS' edge normalisation weights, one per edge (made after alphas, as there).
        self.betas = nn.Parameter(1e-3 * torch.randn(len(EDGES))) if method == "pc_darts" else None
        # GDAS starts at 10 as xautodl sets it; SNAS at 1, its README's --temp.
        self.tau = {"gdas": 10.0, "snas": 1.0}.get(method)
        # DrNAS's pruning mask (None until :meth:`prune`); saved with the state once set.
        self.register_buffer("mask", None)
        self._register_load_state_dict_pre_hook(self._make_room_for_mask)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _make_room_for_mask(self, state_dict, prefix, *args) -> None:
        if self.mask is None and prefix + "mask" in state_dict:
            self.mask = torch.zeros_like(state_dict[prefix + "mask"])

    def arch_parameters(self) -> list[nn.Parameter]:
        """``[alphas]`` (PC-DARTS: ``[alphas, betas]``; RSPS: none), trained by the architect."""
        return [p for p in (self.alphas, self.betas) if p is not None]

    def weights(self) -> list[nn.Parameter]:
        """Every parameter but the architecture's, trained by the weight optimizer."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def edge_weights(self) -> torch.Tensor | None:
        """PC-DARTS' (6,) edge weights: per node, a softmax of its incoming edges' ``betas``
        (PC-DARTS' ``weights2``, here with ``i`` edges into node ``i``); else None."""
        if self.betas is None:
            return None
        # EDGES lists node i's i incoming edges together, from edge i * (i - 1) / 2 on.
        return torch.cat(
            [
                F.softmax(self.betas[i * (i - 1) // 2 : i * (i + 1) // 2], dim=-1)
                for i in range(1, NODES)
            ]
        )

    def op_weights(self) -> tuple[torch.Tensor, list]:
        """This forward's (6, 5) op weights and per-edge choices: the method's one random draw
        (GDAS: Gumbel noise, DrNAS: a Dirichlet sample per edge, RSPS: a cell) happens here."""
        if self.method == "rsps":  # xautodl's random_genotype: random.choice per edge, in order
            self.sampled = random_cell(OPS, random)
            index = [OPS.index(op) for op in parse_arch(self.sampled)]
            return F.one_hot(torch.tensor(index), len(OPS)), index
        if self.method == "gdas":
            hard = gumbel_hard(self.alphas, self.tau)
            return hard.weights, hard.index.flatten().tolist()
        if self.method == "drnas":
            weights = masked_weights(dirichlet(self.alphas).weights, self.mask)
            return weights, (weights != 0).tolist()
        if self.method == "snas":
            return gumbel_soft(self.alphas, self.tau).weights, [None] * len(EDGES)
        return F.softmax(self.alphas, dim=-1), [None] * len(EDGES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, choice = self.op_weights()
        edge_weights = self.edge_weights()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feature = self.stem(x)
        for cell in self.cells:
            if isinstance(cell, NB201SearchCell):
                feature = cell(feature, weights, choice, edge_weights)
            else:
                feature = cell(feature)
        return self._head(feature)

    @torch.no_grad()
    def logged_alphas(self) -> dict:
        """The op weights a search logs each epoch (``alphas``): ``softmax(alphas)``, after
        DrNAS's pruning masked and renormalised (the weights its genotype reads); none for
        RSPS, which has no alphas."""
        if self.alphas is None:
            return {}
        return {
            "alphas": masked_weights(F.softmax(self.alphas.float(), dim=-1), self.mask).tolist()
        }

    @torch.no_grad()
    def genotype(self, skip_primitive: str | None = None) -> str:
        """The benchmark arch string of each edge's largest alpha.

        Args:
            skip_primitive: None (the default): ``none`` can win, as in xautodl's
                ``genotype`` (DrNAS reads the softmax, masked and renormalised after pruning);
                ``'none'``: DARTS's rule, the largest of the other four ops.
        """
        if self.alphas is None:
            raise UserError(
                "an RSPS supernet has no architecture weights to read a cell from: its search "
                "picks the best of random cells on held-out data (search.selection = "
                "@random_selection(), docs/nb201.md)."
            )
        weights = self.alphas
        if self.method == "drnas":
            weights = masked_weights(F.softmax(weights, dim=-1), self.mask)
        weights = weights.double().cpu().numpy()
        if skip_primitive is not None:
            if skip_primitive not in OPS:
                raise UserError(
                    f"skip_primitive={skip_primitive!r} is not a NAS-Bench-201 op "
                    f"({', '.join(OPS)}); None lets every op win."
                )
            weights[:, OPS.index(skip_primitive)] = -np.inf
        return arch_from_weights(weights)

    def wider(self, partial_channels: int) -> dict[nn.Parameter, Growth]:
        """DrNAS's widening between the stages of its progressive search: K goes down to
        ``partial_channels`` and each search cell's conv ops widen to the new ``C // K``,
        copying randomly drawn channels (``nn.drnas.widen_op``, edges and ops in order).

        Returns:
            Each new parameter's growth from the one it replaced
            (``nn.drnas.grow_optimizer`` grows the optimizer's state alike).
        """
        if self.method != "drnas" or self.C % partial_channels:
            raise UserError(
                f"wider({partial_channels}) needs method='drnas' and a K that divides C={self.C}."
            )
        growth: dict[nn.Parameter, Growth] = {}
        for cell in self.cells:
            if isinstance(cell, NB201SearchCell):
                if partial_channels > cell.k:
                    raise UserError(f"wider: K can only go down (it is {cell.k}).")
                cell.wider(partial_channels, growth)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        return growth

    def prune(self, num_keep: int) -> None:
        """DrNAS's progressive pruning step (``nn.drnas.prune_alphas``, their ``utils.prune``):
        each edge keeps its ``num_keep`` largest alphas (among the ops kept so far), the others
        are set to 0 and masked out of every later Dirichlet draw."""
        if self.method != "drnas":
            raise UserError(f"pruning is DrNAS's; this network's method is {self.method!r}.")
        self.mask = prune_alphas(self.alphas, num_keep, self.mask)


_CHECKPOINT_KEYS = ("state_dict", "search_model", "model")
# The authors' names that differ from ours: xautodl's GenericNAS201Model prefixes its stem and
# cells with '_'; the search models call the alphas 'arch_parameters' or '_arch_parameters'.
_RENAMES = (("_stem.", "stem."), ("_cells.", "cells."))
_ALPHA_KEYS = ("arch_parameters", "_arch_parameters")


def _original_tensors(state) -> dict:
    """The tensor dict inside an authors' checkpoint (or a bare state dict)."""
    for key in _CHECKPOINT_KEYS:
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping):
            return dict(inner)
    return dict(state)


def load_original_state_dict(model: nn.Module, state_dict) -> nn.Module:
    """Loads the authors' weights into an :class:`NB201Network` or :class:`NB201SearchNetwork`,
    strictly (every key, every shape).

    Accepted: the state dict of xautodl's ``TinyNetwork`` (into :class:`NB201Network`), of
    xautodl's ``GenericNAS201Model`` (into ``NB201SearchNetwork(method='darts' or 'gdas')``), of
    its ``TinyNetworkDarts`` and ``TinyNetworkGDAS`` (the same with ``plain_lastact=True``), of
    its ``TinyNetworkRANDOM`` (into ``method='rsps'``) and
    of DrNAS's 201-space ``TinyNetwork`` (into ``method='drnas'``), bare or inside a checkpoint
    (under ``state_dict`` or ``search_model``). The model must be built with the checkpoint's
    sizes (``C``, ``N``, ``num_classes``) and, for a search network, its ``affine`` and
    ``partial_channels``.

    Raises:
        UserError: the keys or shapes do not match the model (the message names them).
    """
    renamed = {}
    for key, value in _original_tensors(state_dict).items():
        key = key.removeprefix("module.")
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
        renamed["alphas" if key in _ALPHA_KEYS else key] = value
    try:
        model.load_state_dict(renamed, strict=True)
    except RuntimeError as error:
        raise UserError(
            f"these weights do not fit this {type(model).__name__}: {error}. Build the model "
            "with the checkpoint's C, N and num_classes (and for a search network its method, "
            "affine and partial_channels): NB201Network takes xautodl's TinyNetwork, "
            "NB201SearchNetwork takes xautodl's GenericNAS201Model ('darts', 'gdas'), its "
            "TinyNetworkDarts and TinyNetworkGDAS (with plain_lastact=True), its "
            "TinyNetworkRANDOM ('rsps') or DrNAS's 201-space TinyNetwork ('drnas')."
        ) from None
    return model
