"""A random cell genotype from a search space: the baseline a searched cell is compared with.

The space is the DARTS cell's: node ``i`` of ``steps`` takes two distinct inputs among the
``i + 2`` states before it (the two cell inputs and the earlier nodes), each through one op
of the primitive set other than ``'none'`` (a searched cell never keeps ``'none'`` either).
The draw uses Python's own :class:`random.Random`, so a seed gives the same cell on every
machine and with every numpy or torch version.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from sharpdarts.core.genotype_types import Genotype, primitives as primitive_list

__all__ = ["random_cell", "random_genotype"]


def random_cell(ops: Sequence[str], steps: int, rng: random.Random) -> list[tuple[str, int]]:
    """One cell's ``(op, input)`` entries, two per node, drawn from ``rng``.

    Args:
        ops: The ops to choose from (already without ``'none'``).
        steps: Intermediate nodes in the cell.
        rng: The random source.

    Returns:
        ``2 * steps`` entries; node ``i``'s two have distinct inputs in ``0 .. i + 1``.
    """
    entries = []
    for node in range(steps):
        for inp in sorted(rng.sample(range(node + 2), 2)):
            entries.append((rng.choice(list(ops)), inp))
    return entries


def random_genotype(seed: int, primitives: str | Sequence[str] = "DARTS_PRIMITIVES",
                    steps: int = 4, multiplier: int = 4) -> Genotype:
    """A random normal and reduction cell of the DARTS space, fixed by ``seed``.

    Args:
        seed: Fixes the draw.
        primitives: A primitive set name (e.g. ``'DARTS_PRIMITIVES'``) or a list of op names.
        steps: Intermediate nodes per cell (4 in DARTS).
        multiplier: How many of the last nodes are concatenated into the cell's output.

    Returns:
        A ``'cell'`` layout Genotype.

    Raises:
        KeyError: An unknown primitive set name (with close matches).
        ValueError: Bad ``steps``/``multiplier``, or no op besides ``'none'``.
    """
    if steps < 1 or not 1 <= multiplier <= steps:
        raise ValueError(f"Need steps >= 1 and 1 <= multiplier <= steps, got steps={steps}, "
                         f"multiplier={multiplier}.")
    ops = [op for op in primitive_list(primitives) if op != "none"]
    if not ops:
        raise ValueError("The primitive set has no op besides 'none' to draw from.")
    rng = random.Random(seed)
    normal = random_cell(ops, steps, rng)
    reduce = random_cell(ops, steps, rng)
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(normal, concat, reduce, list(concat))
