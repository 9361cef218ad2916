"""Networks: the CIFAR and ImageNet networks of a genotype and their heads; the public path of
the search supernet (defined in :mod:`sharpdarts.nn.search_network`) and the recurrent models.

Module names follow the original DARTS / sharpDARTS code (``stem``, ``cells.N.preprocess0``,
``cells.N._ops.K.op.J``, ``auxiliary_head.features``, ``classifier``), so checkpoints of the
original code load with :func:`load_original_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping

import gin
import torch
from torch import nn

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core import validate
from sharpdarts.nn.cells import Cell
from sharpdarts.nn.fair_cells import FairCell, cell_edges
from sharpdarts.nn.ops import DEFAULT_C_MID, op_table
from sharpdarts.nn.recurrent.model import RNNModel, RNNSearchModel  # noqa: F401  (public here)
from sharpdarts.nn.search_network import SearchNetwork  # noqa: F401  (public here)


class AuxiliaryHeadCIFAR(nn.Module):
    """Auxiliary classifier on the 8x8 feature map after the second reduction."""

    def __init__(self, C: int, num_classes: int, pool_stride: int = 3, final_bn: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if final_bn else []),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.flatten(1))


class AuxiliaryHeadImageNet(AuxiliaryHeadCIFAR):
    """The ImageNet head: the same layers with an average pool of stride 2.

    ``final_bn=False`` is DARTS's own ImageNet head, which has no batch norm after its 2x2
    convolution (the original comments it out); sharpDARTS restored it.
    """

    def __init__(self, C: int, num_classes: int, final_bn: bool = True):
        super().__init__(C, num_classes, pool_stride=2, final_bn=final_bn)


# The cell a network builds: None, its genotype layout's own (DARTS's for two inputs per node,
# FairDARTS' for edges); 'fairdarts', FairDARTS' (nn/fair_cells.py) for both layouts.
CELL = validate.Choice("'darts' or 'fairdarts'", choices=("darts", "fairdarts")).or_none()


class _FixedNetwork(nn.Module):
    """The cell stack shared by NetworkCIFAR and NetworkImageNet."""

    def _build_cells(
        self,
        C: int,
        C_stem: int,
        num_classes: int,
        layers: int,
        genotype,
        op_dict,
        C_mid: int | None,
        reduction_prev: bool,
        cell_type: str | None = None,
    ) -> int:
        name = genotype if isinstance(genotype, str) else "genotype"  # for messages
        genotype = genotypes_lib.resolve(genotype)
        if genotype.layout not in ("cell", "edges"):
            raise ValueError(f"{name} is a '{genotype.layout}' genotype, not a cell genotype")
        # FairDARTS' cell builds an 'edges' genotype, and a two-input one when asked to.
        fair = cell_type == "fairdarts" or genotype.layout == "edges"
        if cell_type not in (None, "darts", "fairdarts") or (fair and cell_type == "darts"):
            raise ValueError(
                f"cell={cell_type!r} cannot build the '{genotype.layout}' genotype {name}: "
                "'darts' builds two-input cells, 'fairdarts' both layouts, None the layout's own"
            )
        self.genotype = genotype
        op_dict = op_table(op_dict)
        C_mid = DEFAULT_C_MID if C_mid is None else C_mid
        C_prev_prev, C_prev, C_curr = C_stem, C_stem, C
        self.cells = nn.ModuleList()
        C_to_auxiliary = None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
                ops, concat, half = genotype.reduce, genotype.reduce_concat, "reduce"
            else:
                ops, concat, half = genotype.normal, genotype.normal_concat, "normal"
            if fair:
                ops, concat = cell_edges(genotype, half)
            cell = (FairCell if fair else Cell)(
                ops,
                concat,
                C_prev_prev,
                C_prev,
                C_curr,
                reduction,
                reduction_prev,
                op_dict,
                C_mid,
                name=f"{name}.{half}",
            )
            reduction_prev = reduction
            self.cells.append(cell)
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == 2 * layers // 3:
                C_to_auxiliary = C_prev
        return C_prev, C_to_auxiliary

    def _forward_cells(self, s0: torch.Tensor, s1: torch.Tensor):
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == 2 * self._layers // 3 and self._auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1)), logits_aux


@gin.configurable
@validate.params(
    C=validate.WIDTH,
    layers=validate.DEPTH,
    C_mid=validate.WIDTH.or_none(),
    stem_multiplier=validate.COUNT,
    cell=CELL,
)
class NetworkCIFAR(_FixedNetwork):
    """The CIFAR network of a genotype: stem, ``layers`` cells, global pooling, linear.

    Args:
        C: initial channels (36 in the paper).
        num_classes: classes.
        layers: cells (20 in the paper); reductions at layers//3 and 2*layers//3.
        auxiliary: add the auxiliary head after cell 2*layers//3.
        genotype: a Genotype or a registry name.
        in_channels: image channels.
        op_dict: op table (name or mapping); None is OPS.
        C_mid: middle width of the choke ops (32 when None).
        stem_multiplier: stem width is stem_multiplier * C.
        channels_last: keep parameters and activations in the channels-last memory format
            (the same math, faster: docs/speed.md); False: NCHW.
        cell: None builds the genotype's own cell (DARTS's for a 'cell' genotype, FairDARTS'
            for an 'edges' one); 'fairdarts' builds FairDARTS' cell for both (drop path on
            each node's sum: docs/family.md); 'darts' refuses an 'edges' genotype.

    ``forward(x)`` returns ``(logits, logits_aux)``; ``logits_aux`` is None unless training
    with the auxiliary head. Set ``drop_path_prob`` to enable drop path during training.
    """

    def __init__(
        self,
        C: int = 36,
        num_classes: int = 10,
        layers: int = 20,
        auxiliary: bool = False,
        genotype=gin.REQUIRED,
        in_channels: int = 3,
        op_dict=None,
        C_mid: int | None = None,
        stem_multiplier: int = 3,
        channels_last: bool = True,
        cell: str | None = None,
    ):
        super().__init__()
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_stem),
        )
        C_prev, C_aux = self._build_cells(
            C, C_stem, num_classes, layers, genotype, op_dict, C_mid, False, cell
        )
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(C_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s = self.stem(x)
        return self._forward_cells(s, s)


@gin.configurable
@validate.params(C=validate.WIDTH, layers=validate.DEPTH, C_mid=validate.WIDTH.or_none(), cell=CELL)
class NetworkImageNet(_FixedNetwork):
    """The ImageNet network of a genotype: two strided stems, cells, pooling, linear.

    Same arguments as :class:`NetworkCIFAR` (paper: C=48, 14 layers, 1000 classes);
    ``stem_multiplier`` is accepted for a uniform signature and unused, as in the original.
    ``auxiliary_bn=False`` builds DARTS's auxiliary head (no batch norm after its 2x2
    convolution), which DARTS's ImageNet weights need.
    ``cell`` chooses the cell as in :class:`NetworkCIFAR`.
    Global pooling is adaptive, which equals the original's 7x7 average pool at 224x224 and
    also allows reduced resolutions.
    """

    def __init__(
        self,
        C: int = 48,
        num_classes: int = 1000,
        layers: int = 14,
        auxiliary: bool = False,
        genotype=gin.REQUIRED,
        in_channels: int = 3,
        op_dict=None,
        C_mid: int | None = None,
        stem_multiplier: int = 3,
        auxiliary_bn: bool = True,
        cell: str | None = None,
    ):
        super().__init__()
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        C_prev, C_aux = self._build_cells(
            C, C, num_classes, layers, genotype, op_dict, C_mid, True, cell
        )
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadImageNet(C_aux, num_classes, final_bn=auxiliary_bn)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor):
        s0 = self.stem0(x)
        return self._forward_cells(s0, self.stem1(s0))


def _unwrap_state(state) -> dict:
    """Finds the tensor dict inside a checkpoint of the original code (or ours)."""
    if isinstance(state, nn.Module):  # the original recurrent code pickles whole models
        return dict(state.state_dict())
    if isinstance(state, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = state.get(key)
            if isinstance(inner, Mapping):
                return dict(inner)
    return dict(state)


def load_original_state_dict(model: nn.Module, state) -> nn.Module:
    """Loads weights saved by the original DARTS / sharpDARTS code, strictly.

    Handles the differences between their checkpoints and a plain ``state_dict``: a wrapping
    dict (``{'state_dict': ...}``, as their ImageNet trainer saves), the ``module.`` prefix of
    (Distributed)DataParallel, and batch norms without ``num_batches_tracked`` (saved before
    PyTorch 0.4.1). Every tensor of the model must be placed and none may be left over.

    Args:
        model: a NetworkCIFAR, NetworkImageNet, RNNModel or RNNSearchModel built with the
            checkpoint's genotype and sizes. The original recurrent search never saved its
            architecture parameters, so an RNNSearchModel keeps its own when they are absent.
        state: the loaded checkpoint or state dict (or a whole pickled model).

    Returns:
        The model, with the weights loaded.

    Raises:
        ValueError: naming the missing, unexpected or wrongly shaped tensors.
    """
    tensors = {}
    for key, value in _unwrap_state(state).items():
        while key.startswith("module."):
            key = key[len("module.") :]
        tensors[key] = value
    saved_auxiliary = any(k.startswith("auxiliary_head.") for k in tensors)
    expected = model.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in tensors:
            tensors[key] = torch.zeros_like(value)
    if isinstance(model, RNNSearchModel) and "alphas" not in tensors:
        tensors["alphas"] = model.alphas.detach().clone()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = sorted(
        k
        for k in set(expected) & set(tensors)
        if tuple(expected[k].shape) != tuple(tensors[k].shape)
    )
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong_shape),
        ):
            if keys:
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        hint = ""
        if missing and all(k.startswith("auxiliary_head.") for k in missing) and not unexpected:
            # The head is training-only: say which network the weights need rather than
            # loading half a model.
            if not saved_auxiliary:  # trained without --auxiliary
                hint = (
                    " The checkpoint has no auxiliary head: build the network without one "
                    f"(--gin_param {type(model).__name__}.auxiliary=False)."
                )
            elif isinstance(model, NetworkImageNet):
                hint = (
                    " The checkpoint's auxiliary head has no batch norm after its 2x2 "
                    "convolution, as DARTS's ImageNet head "
                    "(--gin_param NetworkImageNet.auxiliary_bn=False)."
                )
        raise ValueError(
            "the checkpoint does not fit this network (is it the same genotype, "
            "width, depth and C_mid?): " + "; ".join(parts) + "." + hint
        )
    model.load_state_dict(tensors, strict=True)
    return model
