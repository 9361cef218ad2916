"""DistributedDataParallel on the CPU: two gloo processes.

The engine joins the process group from torchrun's environment (``engine.make_context``);
this test forks the processes itself with the variables torchrun sets
(MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE). The CLI under torchrun itself, two processes with
rank 0 alone recording, is tests/test_multinode.py's (one torchrun job for the suite: the
same variables reach the same code from a one-node launch).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from spawning import join_group, run_ranks
from torch import nn

from sharpdarts.engine import checkpoint, context, loop
from sharpdarts.engine.data import loaders

WORLD = 2
GLOBAL_BATCH = 8
LR, MOMENTUM, GRAD_CLIP = 0.1, 0.9, 0.5  # a clip small enough to act


def small_net() -> nn.Module:
    """Conv + linear, no batch norm: per-sample losses are independent of the batch."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=g), torch.randint(
        0, 5, (GLOBAL_BATCH,), generator=g
    )


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One process: joins the group as the engine does, takes one DDP step on its shard."""
    ctx = join_group(rank, port, WORLD)
    try:
        assert ctx.distributed and ctx.rank == rank and dist.get_backend() == "gloo"
        model = nn.parallel.DistributedDataParallel(small_net())
        x, y = global_batch()
        shard = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
        logits = model(x[shard])
        loss = F.cross_entropy(logits, y[shard])
        optimizer = torch.optim.SGD(model.parameters(), LR, momentum=MOMENTUM)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        loop.weight_step(optimizer, scaler, loss, model.parameters(), GRAD_CLIP)
        totals = loop.Totals(ctx.device)
        totals.add(loss, logits, y[shard])

        # The loaders shard the data; the checkpoint path is rank 0's on every rank.
        dataset = torch.utils.data.TensorDataset(torch.arange(10))
        loader = loaders.make_loader(
            dataset, 2, shuffle=True, seed=0, distributed=True, drop_last=True
        )
        loader.sampler.set_epoch(1)
        seen = [int(i) for (batch,) in loader for i in batch]
        fake_run = SimpleNamespace(checkpoint_path=Path(out_dir) / "checkpoint.pt")
        path = checkpoint.run_checkpoint_path(fake_run if rank == 0 else None, ctx)

        torch.save(
            {
                "grads": [p.grad for p in model.module.parameters()],
                "params": [p.detach() for p in model.module.parameters()],
                "totals": totals.result(ctx),
                "seen": seen,
                "path": str(path),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_gradients_equal_one_process_over_the_global_batch(tmp_path):
    ranks = run_ranks(_worker, tmp_path, WORLD)

    model = small_net()
    x, y = global_batch()
    logits = model(x)
    loss = F.cross_entropy(logits, y)  # the mean over the global batch
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    grads = [p.grad.clone() for p in model.parameters()]
    torch.optim.SGD(model.parameters(), LR, momentum=MOMENTUM).step()
    totals = loop.Totals("cpu")
    totals.add(loss, logits, y)
    expected = totals.result(context.Context(torch.device("cpu"), None))

    for r in ranks:
        for got, want in zip(r["grads"], grads):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        for got, want in zip(r["params"], model.parameters()):
            torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)
        assert r["totals"]["acc"] == expected["acc"]
        assert r["totals"]["acc_top5"] == expected["acc_top5"]
        # Each rank's mean loss over 4 samples, summed with weight 4: the global mean.
        assert r["totals"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert r["path"] == str(tmp_path / "checkpoint.pt")
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        assert torch.equal(a, b)  # the replicas stay identical
    seen = [ranks[r]["seen"] for r in range(WORLD)]
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) == len(seen[1]) == 4
