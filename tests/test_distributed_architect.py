"""The architect under two gloo processes: a step at per-rank batch B equals one process's step
at batch 2B (first and second order), and every rank ends with the same alphas."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from spawning import join_group, run_ranks
from torch import nn

from sharpdarts.engine.architect import Architect
from sharpdarts.engine.loop import weight_step

WORLD, B = 2, 4


class TinySearch(nn.Module):
    """Two candidate ops mixed by softmax(alpha); no batch norm, so per-sample losses do not
    depend on the batch (BatchNorm's batch statistics would differ between B and 2B)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 5)
        self.alphas = nn.Parameter(1e-1 * torch.randn(2))

    def arch_parameters(self):
        return [self.alphas]

    def weights(self):
        return [p for n, p in self.named_parameters() if n != "alphas"]

    def forward(self, x):
        w = torch.softmax(self.alphas, dim=0)
        mixed = w[0] * torch.tanh(self.conv(x)) + w[1] * torch.tanh(self.pool(x))
        return self.head(mixed.mean(dim=(2, 3)))


def _batches():
    g = torch.Generator().manual_seed(1)

    def make():
        return (
            torch.randn(WORLD * B, 3, 6, 6, generator=g),
            torch.randint(0, 5, (WORLD * B,), generator=g),
        )

    return make(), make()


def _search_step(model, architect, optimizer, train, valid):
    """One search step as the search job takes it: alphas, then weights (grads averaged
    over the processes, then clipped)."""
    (x, y), (xv, yv) = train, valid
    architect.step(x, y, xv, yv, eta=0.05, weight_optimizer=optimizer)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    weight_step(
        optimizer,
        scaler,
        F.cross_entropy(model(x), y),
        model.weights(),
        5.0,
        average=dist.is_initialized(),
    )


def _run(order: int, shard: slice | None):
    model = TinySearch()
    optimizer = torch.optim.SGD(model.weights(), 0.05, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, order=order, lr=0.1)
    (x, y), (xv, yv) = _batches()
    part = shard or slice(None)
    for _ in range(2):  # two steps: the second uses the momentum buffer and Adam's moments
        _search_step(model, architect, optimizer, (x[part], y[part]), (xv[part], yv[part]))
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    join_group(rank, port, WORLD)
    try:
        out = {order: _run(order, slice(rank * B, (rank + 1) * B)) for order in (1, 2)}
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("architect")
    return run_ranks(_worker, out, WORLD)


@pytest.mark.parametrize("order", [1, 2])
def test_two_processes_at_b_step_like_one_process_at_2b(ranks, order):
    single = _run(order, None)
    before = TinySearch().alphas.detach()
    assert not torch.allclose(single["alphas"], before)  # the step moved the alphas
    for r in ranks:
        for name, want in single.items():
            torch.testing.assert_close(
                r[order][name], want, rtol=1e-5, atol=1e-6, msg=f"{name}, order {order}"
            )
    for name in single:  # every rank holds the same architecture: the same genotype
        assert torch.equal(ranks[0][order][name], ranks[1][order][name])


def test_one_process_at_b_differs_from_2b():
    """The comparison above has power: half the batch alone gives another step."""
    half = _run(2, slice(0, B))
    single = _run(2, None)
    assert not torch.allclose(half["alphas"], single["alphas"], rtol=1e-5, atol=1e-6)


# A search under torchrun (two processes, rank 0 records): tests/test_multinode.py runs
# search/sharpsepconv_darts_scalar on two torchrun "nodes".
