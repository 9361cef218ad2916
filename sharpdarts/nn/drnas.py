"""DrNAS's progressive supernet: pruned edges and wider partial channels, on both spaces.

DrNAS (Chen et al., ICLR 2021; xiangning-chen/DrNAS @ f2caa4d) searches in stages
(``engine.stages.DirichletStages``). Between them the supernet is changed in place, not
rebuilt, by the same rules in both of their spaces: ``DARTS-space`` and ``201-space`` import
one top-level ``utils.py`` (``prune``, ``process_step_matrix``) and ``net2wider.py``
(``configure_optimizer``, ``configure_scheduler``, the channel wideners). This module holds
those rules once, for :class:`DrNASNetwork` (the DARTS space) and
``nn.nb201.NB201SearchNetwork(method='drnas')``:

- **pruning** (:func:`prune_alphas`, their ``utils.prune``): each edge keeps the ``keep``
  largest alphas (the concentration ``elu(alpha) + 1`` ranks them alike); the others are set
  to 0 and masked. The Dirichlet draw still covers every op; the masked ops' weights are
  zeroed and each edge's renormalised (:func:`masked_weights`, their ``process_step_vector``),
  and those ops no longer run (``if not w == 0``). The genotype reads the softmax, masked and
  renormalised alike.
- **widening** (:func:`widen_op`, their ``wider``): partial channels go from K to a smaller
  K', and every op of every edge (the pruned ones too) grows from ``C // K`` to ``C // K'``
  channels by copying randomly drawn existing channels (``torch.randint``, module by module in
  their order: a conv's input channels, then its output channels; the copies are not
  rescaled). The BN statistics copy the same channels.
- **the optimizer** (:func:`grow_optimizer`, their ``configure_optimizer``): each widened
  parameter's state (the SGD momentum) grows by the same copied channels.

docs/family.md and docs/nb201.md give the sources.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import gin
import torch
from torch import nn

from sharpdarts.nn.cells import MixedOp
from sharpdarts.nn.models import SearchNetwork
from sharpdarts.nn.ops import FactorizedReduce


@dataclasses.dataclass
class Growth:
    """How a widened parameter grew from ``origin``, the parameter it replaced: ``steps`` of
    (dimension, indices of the copied entries), applied in order."""

    origin: nn.Parameter
    steps: list[tuple[int, torch.Tensor]]


def prune_alphas(alphas: torch.Tensor, keep: int, mask: torch.Tensor | None) -> torch.Tensor:
    """DrNAS's ``utils.prune``, in place: each row keeps its ``keep`` largest entries among
    those ``mask`` still keeps (all when None); the rest are set to 0. Returns the new mask."""
    with torch.no_grad():
        ranked = alphas.detach().clone()
        if mask is not None:  # the ops already pruned rank last
            ranked[~mask] -= 1000000
        top, index = ranked.topk(k=keep, dim=-1)
        alphas.copy_(torch.zeros_like(alphas).scatter(1, index, top))
        return torch.zeros_like(alphas, dtype=torch.bool).scatter(1, index, True)


def masked_weights(weights: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The pruned ops' weights zeroed and each row renormalised (their ``process_step_vector``)."""
    if mask is None:
        return weights
    weights = torch.where(mask, weights, torch.zeros_like(weights))
    return weights / weights.sum(dim=-1, keepdim=True)


def _copied(size: int, width: int) -> torch.Tensor:
    """Indices of the ``width - size`` copied channels, drawn as their ``*Wider`` draws them."""
    return torch.randint(low=0, high=size, size=(width - size,))


def _grow(module: nn.Module, name: str, dim: int, index: torch.Tensor, growth: dict) -> None:
    """Replaces ``module.name`` by a new parameter with the entries ``index`` of ``dim``
    copied at its end (a new parameter, as theirs: autograd keeps the old one's shape)."""
    old = getattr(module, name)
    index = index.to(old.device)
    new = nn.Parameter(torch.cat([old.data, old.data.index_select(dim, index)], dim=dim))
    setattr(module, name, new)
    earlier = growth.pop(old, None)
    if earlier is None:
        growth[new] = Growth(old, [(dim, index)])
    else:  # grown twice (a conv's inputs, then its outputs): one growth from the origin
        growth[new] = Growth(earlier.origin, [*earlier.steps, (dim, index)])


def _grow_bn(bn: nn.BatchNorm2d, width: int, index: torch.Tensor | None, growth: dict) -> None:
    index = _copied(bn.num_features, width) if index is None else index
    for name in ("running_mean", "running_var"):
        stat = getattr(bn, name)
        if stat is not None:
            setattr(bn, name, torch.cat([stat, stat[index.to(stat.device)]]))
    if bn.affine:
        _grow(bn, "weight", 0, index, growth)
        _grow(bn, "bias", 0, index, growth)
    bn.num_features = width


def _grow_conv(
    conv: nn.Conv2d, width_in: int, width_out: int, in_index, growth, depthwise: bool = False
) -> torch.Tensor:
    """Widens a conv to ``width_in`` input and ``width_out`` output channels; returns the
    indices its output channels copied.

    A depthwise conv grows its output channels only (its groups with them); another conv its
    input channels first, copying ``in_index`` (the previous depthwise conv's) or, when None,
    drawing its own (their ``InChannelWider``), then its output channels."""
    if not depthwise:
        in_index = _copied(conv.weight.shape[1], width_in) if in_index is None else in_index
        _grow(conv, "weight", 1, in_index, growth)
    out_index = _copied(conv.weight.shape[0], width_out)
    _grow(conv, "weight", 0, out_index, growth)
    if conv.bias is not None:  # (DrNAS's convs have none; one bound with a bias grows alike)
        _grow(conv, "bias", 0, out_index, growth)
    if depthwise:
        conv.groups = width_out
    conv.in_channels, conv.out_channels = width_in, width_out
    return out_index


def _depthwise(layers: nn.Sequential, k: int) -> bool:
    """Whether conv ``k`` is the depthwise half of a separable conv (one group per channel,
    a 1x1 conv next): told by its place, as one channel makes both halves look alike."""
    conv, after = layers[k], layers[k + 1] if k + 1 < len(layers) else None
    return (
        conv.groups == conv.in_channels
        and isinstance(after, nn.Conv2d)
        and tuple(after.kernel_size) == (1, 1)
    )


def widen_op(op: nn.Module, width: int, growth: dict) -> None:
    """Widens one op of a mixed op to ``width`` channels, as DrNAS's ``wider`` of that op
    (``DARTS-space/operations.py``, ``201-space``'s ``ReLUConvBN.wider``): convs and BNs in
    their order; skip, zero and pool ops have no channels to grow. ``growth`` collects how
    each parameter grew."""
    if isinstance(op, FactorizedReduce):  # each half-conv on its own, the BN copies both
        one = _grow_conv(op.conv_1, width, width // 2, None, growth)
        two = _grow_conv(op.conv_2, width, width // 2, None, growth)
        _grow_bn(op.bn, width, torch.cat([one, two]), growth)
        return
    layers = op.op if isinstance(getattr(op, "op", None), nn.Sequential) else op
    if not isinstance(layers, nn.Sequential):  # Identity, Zero, a bare pool: no channels
        return
    last = None  # the output channels copied by the previous conv, for its BN or next conv
    for k, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            depthwise = _depthwise(layers, k)
            # A 1x1 conv after a depthwise conv reads the channels that one copied.
            in_index = None if depthwise else last
            last = _grow_conv(layer, width, width, in_index, growth, depthwise)
        elif isinstance(layer, nn.BatchNorm2d):
            _grow_bn(layer, width, last, growth)


def unwidenable(op: nn.Module) -> str | None:
    """Why :func:`widen_op` cannot widen ``op`` (a conv that changes the width, as the
    sharpDARTS ops' fixed middle width), or None: it can (DrNAS's ops, ``DARTS_OPS``)."""
    for conv in op.modules():
        if isinstance(conv, nn.Conv2d) and not isinstance(op, FactorizedReduce):
            if conv.in_channels != conv.out_channels:
                return f"{type(op).__name__} has a {conv.in_channels} -> {conv.out_channels} conv"
    return None


@gin.configurable
class DrNASNetwork(SearchNetwork):
    """DrNAS's supernet: :class:`~sharpdarts.nn.models.SearchNetwork` (Dirichlet relaxation,
    partial channels) that can be pruned (:meth:`prune`) and widened (:meth:`wider`).

    Args:
        *args, **kwargs: :class:`~sharpdarts.nn.models.SearchNetwork`'s (DrNAS: the
            'dirichlet' relaxation, partial channels).

    The masks are buffers (``mask_normal``, ``mask_reduce``; None until the first pruning),
    saved with the state dict; loading one restores which ops run.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("mask_normal", None)
        self.register_buffer("mask_reduce", None)
        self._register_load_state_dict_pre_hook(self._make_room_for_masks)
        self.register_load_state_dict_post_hook(lambda module, keys: module._run_kept_ops())

    def _make_room_for_masks(self, state_dict, prefix, *args) -> None:
        for name in ("mask_normal", "mask_reduce"):
            if getattr(self, name) is None and prefix + name in state_dict:
                setattr(self, name, torch.zeros_like(state_dict[prefix + name]))

    def _masked(self, weights: torch.Tensor, reduction: bool) -> torch.Tensor:
        return masked_weights(weights, self.mask_reduce if reduction else self.mask_normal)

    def _mixed_ops(self) -> Iterator[tuple[MixedOp, bool, int]]:
        """Every mixed op, its cell's kind (reduction) and its edge, in the cells' order."""
        for cell in self.cells:
            for edge, mixed in enumerate(cell._ops):
                yield mixed, cell.reduction, edge

    def _run_kept_ops(self) -> None:
        for mixed, reduction, edge in self._mixed_ops():
            mask = self.mask_reduce if reduction else self.mask_normal
            mixed.run_only(None if mask is None else mask[edge].tolist())

    def prune(self, keep: int) -> None:
        """Each edge keeps its ``keep`` largest alphas (their ``Network.pruning``); the other
        ops no longer run."""
        self.mask_normal = prune_alphas(self.alphas_normal, keep, self.mask_normal)
        self.mask_reduce = prune_alphas(self.alphas_reduce, keep, self.mask_reduce)
        self._run_kept_ops()

    def unwidenable(self) -> str | None:
        """Why :meth:`wider` cannot widen this supernet's ops, or None."""
        reasons = (unwidenable(op) for mixed, _, _ in self._mixed_ops() for op in mixed._ops)
        return next((r for r in reasons if r is not None), None)

    @torch.no_grad()
    def wider(self, partial_channels: int) -> dict[nn.Parameter, Growth]:
        """Partial channels K become ``partial_channels``; every op of every edge widens to
        ``C // partial_channels`` channels (their ``Network.wider``). Returns each new
        parameter's growth from the one it replaced (see :func:`grow_optimizer`)."""
        growth: dict[nn.Parameter, Growth] = {}
        for cell in self.cells:
            cell.set_partial_channels(partial_channels)
        for mixed, _, _ in self._mixed_ops():
            for op in mixed._ops:
                widen_op(op, mixed.channels // partial_channels, growth)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        return growth


def grow_like(tensor: torch.Tensor, growth: Growth) -> torch.Tensor:
    """A tensor shaped as ``growth.origin`` (its momentum, say), grown as the parameter grew."""
    for dim, index in growth.steps:
        tensor = torch.cat([tensor, tensor.index_select(dim, index.to(tensor.device))], dim=dim)
    return tensor


def grow_optimizer(optimizer: torch.optim.Optimizer, growth: dict[nn.Parameter, Growth]) -> None:
    """Puts each new parameter of ``growth`` in its origin's place in ``optimizer``, with the
    origin's state grown alike (their ``configure_optimizer``: the SGD momentum copies the
    weights' copied channels)."""
    new_of = {id(g.origin): new for new, g in growth.items()}
    for group in optimizer.param_groups:
        group["params"] = [new_of.get(id(p), p) for p in group["params"]]
    for new, g in growth.items():
        state = optimizer.state.pop(g.origin, None)
        if state is not None:
            optimizer.state[new] = {
                key: grow_like(v, g) if torch.is_tensor(v) and v.shape == g.origin.shape else v
                for key, v in state.items()
            }
