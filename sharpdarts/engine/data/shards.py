"""Each process's part of a dataset, for distributed evaluation and per-rank randomness.

``DistributedSampler`` pads the dataset to a multiple of the process count by repeating items,
so test and validation figures under DDP would count some images twice. :class:`ExactShard`
gives process r the items r, r + W, r + 2W, ... (W processes): every item exactly once over all
processes, no padding, so summed totals equal those of one process. The shards may differ in
length by one, which evaluation allows (it synchronises only once, at the end).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ExactShard", "rank_seed"]


class ExactShard(Sampler[int]):
    """The items of one process: ``range(size)[rank::world_size]``, in order.

    Args:
        size: the dataset's length.
        rank: this process's rank.
        world_size: the number of processes.
    """

    def __init__(self, size: int, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.size, self.rank, self.world_size = int(size), rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank`` of a run seeded ``seed``: the run seed itself on rank 0 (a
    one-process run is unchanged), and on other ranks a number derived from both (numpy's
    SeedSequence), so augmentation and drop-path streams differ across ranks yet repeat on a
    re-run."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) % 2**63, int(rank)]).generate_state(1)[0])
