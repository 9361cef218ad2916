"""Networks: the search supernet, the CIFAR and ImageNet networks of a genotype, their heads.

Module names follow the original DARTS / sharpDARTS code (``stem``, ``cells.N.preprocess0``,
``cells.N._ops.K.op.J``, ``auxiliary_head.features``, ``classifier``), so checkpoints of the
original code load with :func:`load_original_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import gin
import torch
from torch import nn

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core import validate
from sharpdarts.nn import auxiliary_skip as auxiliary_skip_lib
from sharpdarts.nn import derivation as derivation_lib
from sharpdarts.nn.cells import Cell, SearchCell, edge_softmax, num_edges
from sharpdarts.nn.ops import DEFAULT_C_MID, PRIMITIVES_OF_KNOWN_OPS, op_table, resolve_ops
from sharpdarts.nn.recurrent.model import RNNModel, RNNSearchModel  # noqa: F401  (public here)
from sharpdarts.nn.relaxation import get_relaxation
from sharpdarts.nn.weighting import get_weighting


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
    ) -> int:
        name = genotype if isinstance(genotype, str) else "genotype"  # for messages
        genotype = genotypes_lib.resolve(genotype)
        if genotype.layout != "cell":
            raise ValueError(f"{name} is a '{genotype.layout}' genotype, not a cell genotype")
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
            cell = Cell(
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
            C, C_stem, num_classes, layers, genotype, op_dict, C_mid, reduction_prev=False
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
@validate.params(C=validate.WIDTH, layers=validate.DEPTH, C_mid=validate.WIDTH.or_none())
class NetworkImageNet(_FixedNetwork):
    """The ImageNet network of a genotype: two strided stems, cells, pooling, linear.

    Same arguments as :class:`NetworkCIFAR` (paper: C=48, 14 layers, 1000 classes);
    ``stem_multiplier`` is accepted for a uniform signature and unused, as in the original.
    ``auxiliary_bn=False`` builds DARTS's auxiliary head (no batch norm after its 2x2
    convolution), which DARTS's ImageNet weights need.
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
            C, C, num_classes, layers, genotype, op_dict, C_mid, reduction_prev=True
        )
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadImageNet(C_aux, num_classes, final_bn=auxiliary_bn)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor):
        s0 = self.stem0(x)
        return self._forward_cells(s0, self.stem1(s0))


@gin.configurable
@validate.params(
    C=validate.WIDTH,
    layers=validate.DEPTH,
    steps=validate.COUNT,
    multiplier=validate.COUNT,
    stem_multiplier=validate.COUNT,
    primitives=PRIMITIVES_OF_KNOWN_OPS.or_none(),
    partial_channels=validate.COUNT,
    tau=validate.Real("a temperature > 0", low=0.0, low_open=True),
)
class SearchNetwork(nn.Module):
    """The DARTS supernet: every edge of every cell mixes all primitives.

    Args:
        C: initial channels (16 in the paper's searches).
        num_classes: classes.
        layers: cells (8); reductions at layers//3 and 2*layers//3.
        steps: intermediate nodes per cell (4).
        multiplier: states concatenated into a cell's output (the last ``multiplier``).
        stem_multiplier: stem width is stem_multiplier * C.
        in_channels: image channels.
        primitives: a primitive set name (e.g. 'DARTS_PRIMITIVES') or a list; None is PRIMITIVES.
        op_dict: op table (name or mapping); None is OPS.
        weighting: 'scalar', 'max_w' or a callable mapping softmax weights to coefficients.
        partial_channels: PC-DARTS partial channel connections (changes the math, on purpose):
            only 1/K of each edge's channels go through its ops; see ``cells.MixedOp``.
            1 (the default): off, the DARTS supernet.
        edge_normalization: PC-DARTS edge normalization (changes the math, on purpose): each
            edge's output is scaled by a softmax of per-edge ``betas_normal`` /
            ``betas_reduce`` over the inputs of its node; genotypes rank edges and ops by
            ``beta * softmax(alpha)``.
        channels_last: keep parameters and activations in the channels-last memory format
            (the same math, faster: docs/speed.md); False: NCHW.
        relaxation: how alphas become op weights, a ``relaxation.RELAXATIONS`` name
            ('softmax' for DARTS, 'sigmoid', 'gumbel_hard', 'gumbel_soft', 'dirichlet'); the
            weighting scheme applies to its weights. With 'gumbel_hard' only each edge's
            sampled op runs.
        tau: the relaxation's temperature (the ``tau`` attribute; a schedule may set it).
        hard_all_weights: with a hard sample, add the unsampled ops' weights as scalars (GDAS's
            NAS-Bench-201 cell) rather than only the sampled op's (its DARTS-space cell).
        derivation: the genotype rule, a ``derivation.DERIVATIONS`` name ('darts', 'gdas').
        auxiliary_skip: DARTS-'s auxiliary skip on every edge, scaled by ``skip_beta``
            (changes the math, on purpose; see ``nn.auxiliary_skip``); its coefficient is
            the ``auxiliary_skip`` attribute's ``beta``, which a search's schedule sets.
        skip_beta: the auxiliary skips' initial coefficient.

    The architecture parameters ``alphas_normal`` and ``alphas_reduce`` (edges x ops), and with
    edge normalization ``betas_normal`` and ``betas_reduce`` (edges), are returned by
    :meth:`arch_parameters`; :meth:`weights` returns all other parameters.
    """

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        in_channels: int = 3,
        primitives: str | Sequence[str] | None = None,
        op_dict=None,
        weighting="scalar",
        partial_channels: int = 1,
        edge_normalization: bool = False,
        channels_last: bool = True,
        relaxation="softmax",
        tau: float = 1.0,
        hard_all_weights: bool = False,
        derivation: str = "darts",
        auxiliary_skip: bool = False,
        skip_beta: float = 1.0,
    ):
        super().__init__()
        self.primitives, op_dict = resolve_ops(primitives or "PRIMITIVES", op_dict)
        self.relaxation = get_relaxation(relaxation)
        self.tau = tau
        self.hard_all_weights = hard_all_weights
        derivation_lib.DERIVATIONS[derivation]  # an unknown rule fails now, not at the end
        self.derivation = derivation
        if self.relaxation.hard and (partial_channels > 1 or edge_normalization):
            raise ValueError(
                f"relaxation {relaxation!r} runs one sampled op per edge; it does not combine "
                "with partial_channels > 1 or edge_normalization"
            )
        self._steps = steps
        self._multiplier = multiplier
        self._layers = layers
        self.weighting = get_weighting(weighting)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_curr),
        )
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = SearchCell(
                steps,
                multiplier,
                C_prev_prev,
                C_prev,
                C_curr,
                reduction,
                reduction_prev,
                self._cell_primitives(reduction),
                op_dict,
                partial_channels,
            )
            reduction_prev = reduction
            self.cells.append(cell)
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        shape = (num_edges(steps), self._alpha_columns())
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        self.edge_normalization = edge_normalization
        if edge_normalization:
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(shape[0]))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(shape[0]))
        # After the alphas, so the rest of the network is initialised as without the skips.
        self.auxiliary_skip = (
            auxiliary_skip_lib.attach(self.cells, skip_beta) if auxiliary_skip else None
        )
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _cell_primitives(self, reduction: bool) -> Sequence:
        """The ops of a cell's edges: one list for all (a subclass may give each edge its own
        list, as ``nn.pdarts.PDartsNetwork``)."""
        del reduction
        return self.primitives

    def _alpha_columns(self) -> int:
        """Columns of the alphas: ops per edge."""
        return len(self.primitives)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters, trained by the architect."""
        if self.edge_normalization:
            return [self.alphas_normal, self.alphas_reduce, self.betas_normal, self.betas_reduce]
        return [self.alphas_normal, self.alphas_reduce]

    def weights(self) -> list[nn.Parameter]:
        """Every parameter but the architecture's, trained by the weight optimizer."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixing coefficients of normal and reduction cells: the relaxation's weights
        under the weighting scheme (a sampling relaxation draws a new sample)."""
        (normal, _), (reduce, _) = self.relaxed()
        return normal, reduce

    def relaxed(self, op_weights=None) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
        """``((coefficients, index), (coefficients, index))`` of normal and reduction cells;
        ``index`` is a hard sample's op per edge, else None. Draws normal before reduce, as
        the authors' code does. ``op_weights``: given ``(normal, reduce)`` op weights used in
        place of the relaxation's (SDARTS' perturbed weights, ``engine.perturbation``)."""
        out = []
        for i, alphas in enumerate((self.alphas_normal, self.alphas_reduce)):
            if op_weights is None:
                weights, index = self.relaxation.relax(alphas, self.tau)
            else:
                weights, index = op_weights[i], None
            out.append((self.weighting(weights), index))
        return tuple(out)

    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """Edge normalization's (edges,) weights of normal and reduction cells (or Nones)."""
        if not self.edge_normalization:
            return None, None
        return (
            edge_softmax(self.betas_normal, self._steps),
            edge_softmax(self.betas_reduce, self._steps),
        )

    def forward(self, x: torch.Tensor, op_weights=None) -> torch.Tensor:
        """Logits; ``op_weights``: see :meth:`relaxed`."""
        normal, reduce = self.relaxed(op_weights)
        edges_normal, edges_reduce = self.edge_weights()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            (coefficients, index), edges = (
                (reduce, edges_reduce) if cell.reduction else (normal, edges_normal)
            )
            if index is None:
                s0, s1 = s1, cell(s0, s1, coefficients, edges)
            else:  # a hard sample: each edge runs its sampled op only
                s0, s1 = s1, cell(s0, s1, coefficients, edges, index, self.hard_all_weights)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))

    @torch.no_grad()
    def genotype(self, skip_primitive: str | None = "none") -> genotypes_lib.Genotype:
        """The cell genotype read from the relaxation's readout, softmax(alpha) but for
        FairDARTS's sigmoid (see genotypes.parse_cell).

        With edge normalization each edge's row is scaled by its edge weight first (PC-DARTS:
        edges are ranked by ``beta * softmax(alpha)``; an edge's op choice is unchanged).
        """
        normal = self.relaxation.readout(self.alphas_normal)
        reduce = self.relaxation.readout(self.alphas_reduce)
        edges_normal, edges_reduce = self.edge_weights()
        if edges_normal is not None:
            normal = normal * edges_normal[:, None]
            reduce = reduce * edges_reduce[:, None]
        return derivation_lib.derive(
            self.derivation,
            normal.cpu().numpy(),
            reduce.cpu().numpy(),
            self.primitives,
            steps=self._steps,
            multiplier=self._multiplier,
            skip_primitive=skip_primitive,
        )


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
