"""Exact distributed evaluation and per-rank seeds, with two gloo processes on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from spawning import join_group, run_ranks
from torch import nn

from sharpdarts.engine import context
from sharpdarts.engine.context import seed_everything
from sharpdarts.engine.data import loaders
from sharpdarts.engine.data.shards import ExactShard, rank_seed
from sharpdarts.engine.loop import evaluate

WORLD = 2
N = 13  # not a multiple of the process count: DistributedSampler would pad it to 14
SEED = 7


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def _data():
    g = torch.Generator().manual_seed(3)
    return torch.utils.data.TensorDataset(
        torch.randn(N, 3, 8, 8, generator=g), torch.randint(0, 10, (N,), generator=g)
    )


def _draws() -> dict:
    return {"torch": torch.rand(4).tolist(), "numpy": np.random.rand(3).tolist()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    ctx = join_group(rank, port, WORLD)
    try:
        model = nn.parallel.DistributedDataParallel(_net())
        dataset = _data()
        loader = loaders.make_loader(dataset, 4, distributed=True, exact=True)
        seen = [int(i) for i in loader.sampler]
        padded = loaders.make_loader(dataset, 4, distributed=True)
        result = evaluate(model, loader, nn.CrossEntropyLoss(), ctx)
        padded_result = evaluate(model, padded, nn.CrossEntropyLoss(), ctx)
        # A validation split (indices): every index once as well.
        split = loaders.make_loader(
            dataset, 3, indices=list(range(5, N)), seed=SEED, distributed=True, exact=True
        )
        split_result = evaluate(model, split, nn.CrossEntropyLoss(), ctx)
        seed_everything(rank_seed(SEED, rank))  # what the training job does
        draws = _draws()
        train = loaders.make_loader(
            dataset, 2, shuffle=True, seed=SEED, distributed=True, drop_last=True
        )
        torch.save(
            {
                "seen": seen,
                "result": result,
                "padded": padded_result,
                "split": split_result,
                "draws": draws,
                "worker_seed": train.generator.initial_seed(),
                "sampler_seed": train.sampler.seed,
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    return run_ranks(_worker, out, WORLD)


def _one_process(dataset, batch_size=4):
    ctx = context.Context(torch.device("cpu"), None)
    loader = loaders.make_loader(dataset, batch_size)
    return evaluate(_net(), loader, nn.CrossEntropyLoss(), ctx)


def test_exact_shards_cover_every_item_once():
    shards = [list(ExactShard(N, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(N)) and [len(s) for s in shards] == [5, 4, 4]


def test_distributed_evaluation_equals_one_process_evaluation(ranks):
    seen = [r["seen"] for r in ranks]
    assert sorted(seen[0] + seen[1]) == list(range(N))  # no item twice, none left out
    single = _one_process(_data())
    for r in ranks:
        assert r["result"]["acc"] == single["acc"]  # hit counts: exactly equal
        assert r["result"]["acc_top5"] == single["acc_top5"]
        assert r["result"]["loss"] == pytest.approx(single["loss"], rel=1e-6)
    # The defect this fixes: DistributedSampler's padding counts an image twice.
    padded_n_differs = [
        r["padded"]["acc"] != single["acc"]
        or r["padded"]["loss"] != pytest.approx(single["loss"], rel=1e-6)
        for r in ranks
    ]
    assert all(padded_n_differs)


def test_a_distributed_validation_split_is_evaluated_exactly(ranks):
    subset = torch.utils.data.Subset(_data(), list(range(5, N)))
    single = _one_process(subset, batch_size=3)
    for r in ranks:
        assert r["split"]["acc"] == single["acc"]
        assert r["split"]["loss"] == pytest.approx(single["loss"], rel=1e-6)


def test_each_rank_has_its_own_reproducible_random_streams(ranks):
    assert ranks[0]["draws"] != ranks[1]["draws"]
    for rank, r in enumerate(ranks):
        seed_everything(rank_seed(SEED, rank))
        assert _draws() == r["draws"]  # the same on a re-run
    seed_everything(SEED)
    assert _draws() == ranks[0]["draws"]  # rank 0 keeps the run seed: one process unchanged
    # Loader workers (augmentation) are seeded per rank; the shard order is shared.
    assert ranks[0]["worker_seed"] == SEED != ranks[1]["worker_seed"]
    assert ranks[0]["sampler_seed"] == ranks[1]["sampler_seed"] == SEED
    assert rank_seed(SEED, 1) == rank_seed(SEED, 1) != rank_seed(SEED + 1, 1)
