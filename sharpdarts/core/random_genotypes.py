"""Random genotypes: cells drawn uniformly from DARTS's search spaces (the random-search
baselines of the DARTS paper, Liu et al. 2019, Tables 1 and 2).

A convolutional cell has ``steps`` intermediate nodes; node ``i`` (0-based) picks two distinct
inputs among the ``i + 2`` states before it (the two cell inputs and the earlier nodes) and one
op for each, never ``skip_primitive`` ('none', the zero op, which a derived DARTS cell never
holds either). A recurrent cell has ``steps`` nodes; node ``i + 1`` picks one earlier state
``0..i`` and one activation other than 'none'. Every choice is uniform and independent.

The samplers take a :class:`numpy.random.Generator` (or a seed) and return the project's own
types (:class:`~sharpdarts.core.genotype_types.Genotype`,
:class:`~sharpdarts.core.recurrent_genotypes.RecurrentGenotype`), so a sampled cell trains,
prints and plots like a published one. They are gin configurables (``@sample_cell_genotype``,
``@sample_recurrent_genotype``) for the random-search job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gin
import numpy as np

from sharpdarts.core import validate
from sharpdarts.core.genotype_types import primitives as resolve_primitives
from sharpdarts.core.genotypes import RNN_PRIMITIVES, Genotype
from sharpdarts.core.recurrent_genotypes import RNN_CONCAT, RNN_STEPS, RecurrentGenotype, check

__all__ = ["sample_cell", "sample_cell_genotype", "sample_recurrent_genotype", "sample_genotypes"]

Sampler = Callable[..., Any]


def _generator(rng: np.random.Generator | int) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _ops(primitives: str | Sequence[str], skip_primitive: str | None) -> list[str]:
    """The ops a sample may hold: the set without ``skip_primitive``."""
    ops = [op for op in resolve_primitives(primitives) if op != skip_primitive]
    if not ops:
        raise ValueError(
            f"the primitive set {primitives!r} has no op other than {skip_primitive!r} to sample"
        )
    return ops


def sample_cell(
    rng: np.random.Generator | int,
    primitives: str | Sequence[str],
    steps: int = 4,
    skip_primitive: str | None = "none",
) -> list[tuple[str, int]]:
    """One cell's ``(op_name, input_index)`` pairs, two per node (lower input first).

    Args:
        rng: the random generator (or a seed for a fresh one).
        primitives: the op names (or a ``PRIMITIVE_SETS`` name).
        steps: intermediate nodes.
        skip_primitive: the op never drawn ('none'), or None.
    """
    rng = _generator(rng)
    ops = _ops(primitives, skip_primitive)
    gene = []
    for node in range(steps):
        inputs = sorted(int(j) for j in rng.choice(node + 2, size=2, replace=False))
        gene += [(ops[int(rng.integers(len(ops)))], j) for j in inputs]
    return gene


@gin.configurable(denylist=["rng"])
@validate.params(primitives=validate.PRIMITIVE_SET, steps=validate.COUNT, multiplier=validate.COUNT)
def sample_cell_genotype(
    rng: np.random.Generator | int,
    primitives: str | Sequence[str] = "DARTS_PRIMITIVES",
    steps: int = 4,
    multiplier: int = 4,
    skip_primitive: str | None = "none",
) -> Genotype:
    """A convolutional genotype: a normal and a reduction cell drawn independently.

    Args:
        rng: the random generator (or a seed).
        primitives: the search space's ops (DARTS's 8, 'none' included, by default).
        steps: intermediate nodes per cell (4 in DARTS).
        multiplier: how many of the last states form the output (4: every node).
        skip_primitive: the op never drawn.

    Raises:
        ValueError: ``multiplier`` outside ``1..steps``, or no op left to draw.
    """
    if not 1 <= multiplier <= steps:
        raise ValueError(f"multiplier must be in 1..steps ({steps}), got {multiplier}")
    rng = _generator(rng)
    concat = list(range(2 + steps - multiplier, steps + 2))
    normal = sample_cell(rng, primitives, steps, skip_primitive)
    reduce = sample_cell(rng, primitives, steps, skip_primitive)
    return Genotype(normal, concat, reduce, list(concat), "cell")


@gin.configurable(denylist=["rng"])
@validate.params(primitives=validate.PRIMITIVE_SET, steps=validate.COUNT, concat=validate.COUNT)
def sample_recurrent_genotype(
    rng: np.random.Generator | int,
    primitives: str | Sequence[str] = tuple(RNN_PRIMITIVES),
    steps: int = RNN_STEPS,
    concat: int = RNN_CONCAT,
    skip_primitive: str | None = "none",
) -> RecurrentGenotype:
    """A recurrent genotype: node ``i + 1`` reads a uniform earlier state ``0..i`` through a
    uniform activation.

    Args:
        rng: the random generator (or a seed).
        primitives: the activations ('none', tanh, relu, sigmoid, identity by default).
        steps: nodes (8 in DARTS).
        concat: how many of the last states are averaged into the output (8: every node).
        skip_primitive: the op never drawn.

    Raises:
        ValueError: ``concat`` outside ``1..steps``, or no op left to draw.
    """
    if not 1 <= concat <= steps:
        raise ValueError(f"concat must be in 1..steps ({steps}), got {concat}")
    rng = _generator(rng)
    ops = _ops(list(primitives), skip_primitive)
    nodes = [(ops[int(rng.integers(len(ops)))], int(rng.integers(i + 1))) for i in range(steps)]
    return check(RecurrentGenotype(nodes, list(range(steps + 1))[-concat:]), list(primitives))


def sample_genotypes(sampler: Sampler, count: int, seed: int) -> list:
    """``count`` genotypes from one generator seeded with ``seed``: the same list for the same
    sampler, count and seed (a resumed random search draws exactly the cells it started with).
    """
    rng = np.random.default_rng(seed)
    return [sampler(rng) for _ in range(count)]
