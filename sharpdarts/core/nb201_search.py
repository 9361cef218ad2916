"""NAS-Bench-201's own non-weight-sharing baselines: random search and regularised evolution.

Both search the benchmark's table instead of training: evaluating a cell is a look-up of its
12-epoch validation accuracy, and the search pays the training time that the benchmark
recorded for it, until a budget of simulated seconds is spent. They follow the authors' code
for the NAS-Bench-201 paper (github.com/D-X-Y/AutoDL-Projects, commit f46486e,
``exps/NAS-Bench-201-algos/RANDOM.py`` and ``R_EA.py``; docs/nb201_benchmark.md):

- a random cell draws each edge's op uniformly, edges in :data:`EDGES` order;
- REA (Real et al., AAAI 2019, "aging evolution") fills a population with random cells, then
  repeatedly draws ``sample_size`` members with replacement, mutates the most accurate (one
  uniformly chosen edge gets a different op, uniformly chosen) and replaces the oldest member
  with the child;
- a cell whose cost would overrun the budget ends the search without joining it (REA's first
  population joins regardless, as in the authors' code).

Every draw comes from one ``random.Random`` in the authors' order (the cell's ops, then the
trial that ``simulate`` picks), so one seed gives the authors' sequence of cells. The
authors' REA also adds the wall-clock seconds of its own bookkeeping to the budget; ours does
not, so that a seed gives one result.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Callable, Sequence

from sharpdarts.core.nb201_arch import EDGES, arch_string, parse_arch

__all__ = ["Evaluation", "best", "random_cell", "random_search", "regularized_evolution"]

# arch -> (validation accuracy, simulated seconds of training and evaluating it)
Simulate = Callable[[str], "tuple[float, float]"]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One evaluated cell: its arch string, its (simulated) validation accuracy, what it cost
    and the search's simulated seconds once it was paid for."""

    arch: str
    valid_acc: float
    seconds: float
    total_seconds: float


def random_cell(ops: Sequence[str], rng: random.Random) -> str:
    """A cell with each edge's op drawn uniformly from ``ops``, edges in :data:`EDGES` order."""
    return arch_string([rng.choice(ops) for _ in EDGES])


def mutate(arch: str, ops: Sequence[str], rng: random.Random) -> str:
    """``arch`` with one edge's op changed: a node (1-3) uniformly, one of its inputs
    uniformly, then an op of ``ops`` other than the current one (drawn until it differs)."""
    cell = list(parse_arch(arch))
    node = rng.randint(0, 2) + 1
    source = rng.randint(0, node - 1)
    edge = EDGES.index((node, source))
    op = rng.choice(ops)
    while op == cell[edge]:
        op = rng.choice(ops)
    cell[edge] = op
    return arch_string(cell)


def best(history: Sequence[Evaluation]) -> Evaluation:
    """The most accurate evaluation (the first of equals, as the authors' ``max``)."""
    return max(history, key=lambda e: e.valid_acc)


def random_search(
    simulate: Simulate, ops: Sequence[str], rng: random.Random, time_budget: float
) -> list[Evaluation]:
    """Random cells until the next one would overrun ``time_budget`` simulated seconds.

    Returns:
        The evaluations that were paid for, in order.
    """
    history: list[Evaluation] = []
    total = 0.0
    while total < time_budget:
        arch = random_cell(ops, rng)
        acc, seconds = simulate(arch)
        if total + seconds > time_budget:
            break
        total += seconds
        history.append(Evaluation(arch, acc, seconds, total))
    return history


def regularized_evolution(
    simulate: Simulate,
    ops: Sequence[str],
    rng: random.Random,
    time_budget: float,
    population_size: int = 10,
    sample_size: int = 3,
) -> list[Evaluation]:
    """Regularised (aging) evolution until a child would overrun ``time_budget`` seconds.

    Returns:
        Every evaluation, the first population included, in order.
    """
    if population_size < 1 or sample_size < 1:
        raise ValueError("population_size and sample_size are at least 1")
    population: collections.deque[Evaluation] = collections.deque()
    history: list[Evaluation] = []
    total = 0.0
    while len(population) < population_size:
        arch = random_cell(ops, rng)
        acc, seconds = simulate(arch)
        total += seconds
        population.append(Evaluation(arch, acc, seconds, total))
        history.append(population[-1])
    while total < time_budget:
        sample = [rng.choice(list(population)) for _ in range(sample_size)]
        parent = best(sample)
        child = mutate(parent.arch, ops, rng)
        acc, seconds = simulate(child)
        if total + seconds > time_budget:
            break
        total += seconds
        population.append(Evaluation(child, acc, seconds, total))
        history.append(population[-1])
        population.popleft()
    return history
