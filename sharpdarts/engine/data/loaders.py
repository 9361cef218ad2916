"""The DARTS search split, and data loaders (seeded, optionally distributed)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Subset,
    SubsetRandomSampler,
)

from sharpdarts.engine.data.shards import ExactShard, rank_seed
from sharpdarts.errors import UserError


def search_split(
    dataset: Sequence | Dataset, train_portion: float = 0.5
) -> tuple[list[int], list[int]]:
    """Splits a training set for architecture search, as DARTS does.

    The first ``floor(train_portion * N)`` images train the network weights and the rest train
    the architecture parameters; each loader then samples its part randomly every epoch
    (``make_loader(..., indices=...)``).

    Args:
        dataset: The training set (anything with a length).
        train_portion: Fraction for the weights, in (0, 1].

    Returns:
        (weights_indices, arch_indices).

    Raises:
        UserError: ``train_portion`` outside (0, 1].
    """
    if not 0.0 < train_portion <= 1.0:
        raise UserError(f"train_portion must be in (0, 1], got {train_portion}.")
    num = len(dataset)
    split = int(np.floor(train_portion * num))
    return list(range(split)), list(range(split, num))


def seed_worker(worker_id: int) -> None:
    """Seeds Python's and NumPy's generators in a loader worker from its torch seed.

    torch seeds each worker differently (from the loader's base seed), but not ``random`` or
    ``numpy``; transforms that use them would otherwise repeat across workers.
    """
    del worker_id  # torch.initial_seed() already differs per worker
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


class Skipping:
    """A sampler mixin that can start its next pass partway: the pass draws its order exactly
    as a whole pass would (the same generator calls), and the first ``skip`` items are dropped
    before any of them is loaded. A run resumed inside an epoch reads the rest of that epoch's
    order this way, with no item read twice or left out."""

    _skip = 0

    def skip_next(self, items: int) -> None:
        """Drops the first ``items`` items of the next pass (once)."""
        self._skip = int(items)

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return itertools.islice(super().__iter__(), skip, None)

    def __len__(self) -> int:
        return max(0, super().__len__() - self._skip)


class SkippingRandomSampler(Skipping, RandomSampler):
    """``RandomSampler`` (``shuffle=True``) whose next pass can start partway."""


class SkippingSubsetRandomSampler(Skipping, SubsetRandomSampler):
    """``SubsetRandomSampler`` (the search's halves) whose next pass can start partway."""


class SkippingDistributedSampler(Skipping, DistributedSampler):
    """``DistributedSampler`` (this process's shard) whose next pass can start partway."""


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    indices: Sequence[int] | None = None,
    workers: int = 0,
    drop_last: bool = False,
    seed: int | None = None,
    pin_memory: bool | None = None,
    distributed: bool = False,
    exact: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over a dataset, or over a subset of it sampled randomly each epoch.

    A plain function, not gin-configurable: the engine passes every argument it uses (its
    own ``workers`` binding), so a binding of this function could never take effect. A
    randomly ordered loader's sampler is :class:`Skipping` (``loader.sampler.skip_next``), so
    that a run checkpointed inside an epoch can resume at its next batch.

    Args:
        dataset: The dataset.
        batch_size: Images per batch (per process when distributed).
        shuffle: Reshuffle every epoch (ignored with ``indices``, which are always sampled
            randomly).
        indices: Read only these items, in a new random order every epoch
            (``SubsetRandomSampler``), as the DARTS search does with its two halves.
        workers: Loader worker processes; 0 loads in this process.
        drop_last: Drop the last incomplete batch.
        seed: Seeds the sampling order and the workers' seeds, for repeatable runs; None uses
            torch's global generator.
        pin_memory: Pin host memory; None means "when CUDA is available" (never without it).
        distributed: Shard the data over the processes of the default process group with a
            ``DistributedSampler`` (the caller must call ``loader.sampler.set_epoch(epoch)``
            every epoch).
        exact: With ``distributed``, for evaluation: every item read by exactly one process,
            in order, with no padding (:class:`~sharpdarts.engine.data.shards.ExactShard`).
            The workers' seeds then differ per process (:func:`~.shards.rank_seed`).
    """
    rank = world = None
    if distributed:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    # The sampling order is shared by every process (the shards must agree); the loader's
    # generator also seeds its workers, whose augmentation must differ across processes.
    generator = (
        torch.Generator().manual_seed(rank_seed(seed, rank or 0)) if seed is not None else None
    )
    sampler: Any = None
    if distributed and exact:
        dataset = Subset(dataset, list(indices)) if indices is not None else dataset
        sampler, shuffle = ExactShard(len(dataset), rank, world), False
    elif distributed:
        # Shard the subset, not the whole set, when only some items are to be read.
        source = Subset(dataset, list(indices)) if indices is not None else dataset
        sampler = SkippingDistributedSampler(
            source, shuffle=shuffle or indices is not None, seed=seed or 0, drop_last=drop_last
        )
        dataset, shuffle = source, False
    elif indices is not None:
        sampler = SkippingSubsetRandomSampler(list(indices), generator=generator)
        shuffle = False
    elif shuffle:  # what DataLoader builds for shuffle=True, with a pass that can start partway
        sampler, shuffle = SkippingRandomSampler(dataset, generator=generator), False
    cuda = torch.cuda.is_available()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cuda if pin_memory is None else (bool(pin_memory) and cuda),
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker if workers > 0 else None,
        persistent_workers=workers > 0,
    )
