"""Search spaces: the ops of every edge of the DARTS supernet's normal and reduction cells.

A space gives, for each cell type and each edge (edges ordered node by node: node 0 has edges
0-1, node 1 edges 2-4, ...), the list of primitive names that edge mixes. Every primitive set
(``'DARTS_PRIMITIVES'``, a list of names, ...) is a *uniform* space, one list for all edges of
both cells. RobustDARTS (Zela et al., "Understanding and Robustifying Differentiable
Architecture Search", ICLR 2020; automl/RobustDARTS ``src/spaces.py``) adds four small spaces
in which DARTS fails: ``'s1'`` gives each edge its own pair of ops (the two strongest of a
DARTS search), ``'s2'`` is {skip_connect, sep_conv_3x3}, ``'s3'`` adds 'none' to it and
``'s4'`` is {noise, sep_conv_3x3}. ``'s5'`` is their name for the DARTS space. docs/spaces.md
gives the details and sources.

Every edge of a space has the same number of ops (the alphas are one (edges x ops) matrix per
cell type, as RobustDARTS keeps them). A space may list more edges than a cell has: a cell of
fewer nodes takes the first edges, as RobustDARTS's cell does (it reads its list by the edge's
index). ``SearchNetwork.space`` names the space a supernet is built from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from sharpdarts.core import genotype_types, validate
from sharpdarts.nn.ops import DARTS_OPS, OPS
from sharpdarts.registry import Registry, unknown_name

EdgeOps = tuple[tuple[str, ...], ...]


class Noise(nn.Module):
    """RobustDARTS's 'noise' op (``src/operations.py`` ``NoiseOp``, mean 0, std 1): fresh
    normal noise of the (strided) input's shape, drawn from torch's global generator at every
    call, in training and in evaluation alike. It does not depend on its input, so no gradient
    flows back through it.

    The noise is drawn into a new contiguous tensor, as theirs (``x.new(size).normal_()``), so
    one seed gives the same noise whatever the input's memory format.
    """

    def __init__(self, stride: int, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.stride = stride
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x[:, :, :: self.stride, :: self.stride].shape
        noise = torch.empty(shape, dtype=x.dtype, device=x.device)
        return noise.normal_(self.mean, self.std)


for _table in (OPS, DARTS_OPS):  # an op of its own in both tables (their OPS['noise'])
    _table.register("noise")(lambda C_in, C_out, stride, affine, C_mid=None: Noise(stride))


@dataclasses.dataclass(frozen=True)
class Space:
    """One search space.

    Attributes:
        name: the space's name (a registry key, or the primitive set it was made from).
        normal: the normal cell's op list per edge; None in a uniform space.
        reduce: the reduction cell's op list per edge; None in a uniform space.
        ops: a uniform space's one op list (every edge of both cells); None otherwise.
    """

    name: str
    normal: EdgeOps | None = None
    reduce: EdgeOps | None = None
    ops: tuple[str, ...] | None = None

    def __post_init__(self):
        if (self.ops is None) == (self.normal is None or self.reduce is None):
            raise ValueError(f"space {self.name!r}: give one op list, or one list per edge")
        rows = [self.ops] if self.ops is not None else [*self.normal, *self.reduce]
        if self.ops is None and len(self.normal) != len(self.reduce):
            raise ValueError(f"space {self.name!r}: the two cells have different edge counts")
        for ops in rows:
            if not ops or len(set(ops)) != len(ops):
                raise ValueError(
                    f"space {self.name!r}: an edge's ops {list(ops)} are empty or repeat"
                )
        if len({len(ops) for ops in rows}) != 1:
            raise ValueError(
                f"space {self.name!r}: every edge needs the same number of ops (the alphas are "
                f"one matrix per cell), got {sorted({len(ops) for ops in rows})}"
            )
        object.__setattr__(self, "_columns", _merged_order(self.name, rows))

    @property
    def uniform(self) -> bool:
        """One op list for every edge of both cells."""
        return self.ops is not None

    @property
    def width(self) -> int:
        """Ops per edge: the alphas' columns."""
        return len(self.ops if self.ops is not None else self.normal[0])

    @property
    def columns(self) -> list[str]:
        """Every op of the space, in one order that keeps each edge's own order (each edge's
        list is a subsequence of it): the columns genotypes are read from."""
        return list(self._columns)

    def cell(self, reduction: bool, edges: int) -> list[list[str]]:
        """The op lists of a cell's ``edges`` edges (the first ones of the space's).

        Raises:
            ValueError: the space has fewer edges.
        """
        if self.ops is not None:
            return [list(self.ops) for _ in range(edges)]
        rows = self.reduce if reduction else self.normal
        if edges > len(rows):
            raise ValueError(
                f"space {self.name!r} has {len(rows)} edges per cell; a cell of {edges} edges "
                "needs more (bind SearchNetwork.steps to at most the space's nodes)"
            )
        return [list(ops) for ops in rows[:edges]]


def _merged_order(name: str, rows: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """One order of all names in which every row keeps its order (names first seen first,
    where the rows leave a choice), so that tie-breaks within an edge survive the spreading
    of its weights over all columns."""
    seen = list(dict.fromkeys(op for ops in rows for op in ops))
    after = {op: set() for op in seen}  # op -> ops that must come before it
    for ops in rows:
        for a, b in zip(ops, ops[1:]):
            after[b].add(a)
    order: list[str] = []
    while len(order) < len(seen):
        ready = [op for op in seen if op not in order and after[op] <= set(order)]
        if not ready:
            raise ValueError(
                f"space {name!r}: its edges list ops in orders that contradict each other "
                f"({[op for op in seen if op not in order]}); give every edge one common order"
            )
        order.append(ready[0])
    return tuple(order)


def per_edge(*edges: Sequence[str]) -> EdgeOps:
    """A cell's op lists, one per edge, as a tuple of tuples."""
    return tuple(tuple(ops) for ops in edges)


# Users add a space with ``SPACES.register('name')(Space('name', normal=..., reduce=...))``.
SPACES: Registry[Space] = Registry(
    "search space",
    "SPACES",
    hint="Spaces are registered with SPACES.register('name')(Space(...)); a primitive set "
    "name is a space too.",
)

_SKIP, _SEP3, _DIL3, _DIL5 = "skip_connect", "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5"
_MAX, _AVG = "max_pool_3x3", "avg_pool_3x3"

# RobustDARTS S1 (automl/RobustDARTS @ 3dec3fedaa1770614bbfd4b98f5299d946ea7ac6,
# src/spaces.py primitives_1): each edge keeps its own two ops, 14 edges (4 nodes) per cell.
SPACES.register("s1")(
    Space(
        "s1",
        normal=per_edge(
            (_SKIP, _DIL3),
            (_SKIP, _DIL5),
            (_SKIP, _DIL5),
            (_SKIP, _SEP3),
            (_SKIP, _DIL3),
            (_MAX, _SKIP),
            (_SKIP, _SEP3),
            (_SKIP, _SEP3),
            (_SKIP, _DIL3),
            (_SKIP, _SEP3),
            (_MAX, _SKIP),
            (_SKIP, _DIL3),
            (_DIL3, _DIL5),
            (_DIL3, _DIL5),
        ),
        reduce=per_edge(
            (_MAX, _AVG),
            (_MAX, _DIL3),
            (_MAX, _AVG),
            (_MAX, _AVG),
            (_SKIP, _DIL5),
            (_MAX, _AVG),
            (_MAX, _SEP3),
            (_SKIP, _DIL3),
            (_SKIP, _DIL5),
            (_MAX, _AVG),
            (_MAX, _AVG),
            (_SKIP, _DIL5),
            (_SKIP, _DIL5),
            (_SKIP, _DIL5),
        ),
    )
)
# S2-S4: one list on all 14 edges of both cells (their primitives_2 .. primitives_4).
SPACES.register("s2")(Space("s2", ops=(_SKIP, _SEP3)))
SPACES.register("s3")(Space("s3", ops=("none", _SKIP, _SEP3)))
SPACES.register("s4")(Space("s4", ops=("noise", _SEP3)))
# Their primitives_5, "the original DARTS space": DARTS's eight ops on every edge.
SPACES.register("s5")(Space("s5", ops=tuple(genotype_types.primitives("DARTS_PRIMITIVES"))))


def get_space(value: str | Sequence[str] | Space) -> Space:
    """The space named ``value`` (a ``SPACES`` name), or the uniform space of a primitive set
    (a ``PRIMITIVE_SETS`` name or a list of op names), or ``value`` itself if a Space.

    Raises:
        UnknownNameError: (a KeyError) a name that is neither a space nor a primitive set.
        ValueError: an empty list, or one that repeats a name.
    """
    if isinstance(value, Space):
        return value
    if isinstance(value, str) and value in SPACES:
        return SPACES[value]
    if isinstance(value, str) and value not in genotype_types.PRIMITIVE_SETS:
        known = [*SPACES.names(), *genotype_types.PRIMITIVE_SETS.names()]
        raise unknown_name("search space", value, known, hint=SPACES.hint)
    validate.PRIMITIVE_SET.test(value)
    name = value if isinstance(value, str) else "custom"
    return Space(name, ops=tuple(genotype_types.primitives(value)))


# The kind of ``SearchNetwork.space`` (see sharpdarts.core.validate).
SPACE = validate.Satisfies(
    "a search space name (e.g. 's1') or a primitive set (a name or a list of op names)",
    test=get_space,
)
