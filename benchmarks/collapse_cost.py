"""What the collapse measurement costs a search: the eigenvalue estimate vs one search epoch.

The issue's target: the Hessian's dominant eigenvalue (engine/collapse.py, at its default
``collapse_metrics`` settings: every 2 epochs, 1 batch, at most 50 Hessian-vector products)
costs at most 5% of an epoch. One run measures, in one process and on one network:

- a search step as ``engine.search`` takes it (``Architect.step`` on a validation batch, then
  the weight step: forward, backward, clip 5, SGD), median of ``--steps``;
- an evaluation batch (``evaluate``: eval mode, no gradients), median of ``--steps``;
- the eigenvalue as the search measures it (``CollapseTracker.eigenvalue``: the loss and its
  gradient built once, then the power iteration), median of ``--repeats``, and the products
  it took. The network is fresh (random weights, alphas 1e-3 * randn as the supernet starts);
  ``--warm-steps`` search steps before it move it off its initial point.

An epoch of the CIFAR-10 DARTS search at batch B is ``25000 // B`` search steps and
``ceil(25000 / B)`` evaluation batches (the two halves of 50000 images). Reported: the epoch
estimate, the eigenvalue's time, the ratio eigenvalue / (every x epoch) at the default
``every`` (the cost per epoch averaged over the search), the same for ``every = 1``, and the
worst case (every product allowed: ``iterations``, twice that when the dominant eigenvalue is
negative and the shifted iteration runs).

Example:
  python benchmarks/collapse_cost.py --batch 16 --C 16 --layers 8 --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import types

import common
import torch
from torch import nn

from sharpdarts.engine import collapse
from sharpdarts.engine.architect import Architect
from sharpdarts.engine.loop import evaluate
from sharpdarts.nn.models import SearchNetwork

HALF = 25000  # images per half of the CIFAR-10 search split
LR, MOMENTUM, WEIGHT_DECAY, GRAD_CLIP = 0.025, 0.9, 3e-4, 5.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--primitives", default="DARTS_PRIMITIVES")
    parser.add_argument("--order", type=int, default=1, choices=[1, 2])
    parser.add_argument("--steps", type=int, default=3, help="timed search steps, eval batches")
    parser.add_argument("--repeats", type=int, default=2, help="timed eigenvalue estimates")
    parser.add_argument(
        "--iterations", type=int, default=None, help="most products (default: the binding's)"
    )
    parser.add_argument("--warm-steps", type=int, default=0, help="search steps before them")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="append the result as a JSON line")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = common.setup(args)
    model = SearchNetwork(
        C=args.C,
        num_classes=10,
        layers=args.layers,
        steps=args.nodes,
        multiplier=args.nodes,
        primitives=args.primitives,
        channels_last=args.channels_last,
    ).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.weights(), LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    architect = Architect(model, order=args.order, criterion=criterion)
    gen = torch.Generator().manual_seed(args.seed + 1)
    x, xa = (torch.randn(args.batch, 3, 32, 32, generator=gen).to(device) for _ in range(2))
    y, ya = (torch.randint(0, 10, (args.batch,), generator=gen).to(device) for _ in range(2))

    def step():
        model.train()
        architect.step(x, y, xa, ya, eta=LR, weight_optimizer=optimizer)
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.weights(), GRAD_CLIP)
        optimizer.step()

    ctx = _context(device)
    batch = [(xa.cpu(), ya.cpu())]

    def evaluation():
        evaluate(model, batch, criterion, ctx)

    settings = collapse.collapse_metrics()
    if args.iterations:
        settings = collapse.collapse_metrics(iterations=args.iterations)
    tracker = collapse.CollapseTracker([], [], args.batch, args.seed, settings)
    tracker.batches = batch
    job = types.SimpleNamespace(network=model, ctx=ctx, criterion=criterion, architect=architect)
    used = []

    def eigenvalue():
        used.append(tracker.eigenvalue(job, epoch=len(used) + 1))

    for _ in range(args.warm_steps):
        step()
    times = common.interleaved(
        {"search_step": step, "eval_batch": evaluation}, args.steps, device, warmup=1
    )
    eig_times = [common.time_step(eigenvalue, device) for _ in range(args.repeats)]
    step_s, eval_s = (statistics.median(times[k]) for k in ("search_step", "eval_batch"))
    eig_s = statistics.median(eig_times)
    epoch_s = (HALF // args.batch) * step_s + math.ceil(HALF / args.batch) * eval_s
    products = [n for _, n in used]
    per_product = eig_s / statistics.median(products)
    worst_s = eig_s * (2 * settings.iterations) / statistics.median(products)
    result = {
        "kind": "collapse_cost",
        **{k: getattr(args, k) for k in ("batch", "C", "layers", "nodes", "primitives", "order")},
        "channels_last": args.channels_last,
        "every": settings.every,
        "iterations": settings.iterations,
        "tolerance": settings.tolerance,
        "search_step_s": step_s,
        "eval_batch_s": eval_s,
        "epoch_s": epoch_s,
        "eigenvalue_s": eig_s,
        "eigenvalues": [v for v, _ in used],
        "products": products,
        "product_s": per_product,
        "ratio_default_every": eig_s / (settings.every * epoch_s),
        "ratio_every_epoch": eig_s / epoch_s,
        "ratio_worst_case_default_every": worst_s / (settings.every * epoch_s),
        **common.describe_machine(device),
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    common.emit(result, args.json and common.Path(args.json))
    return result


def _context(device: torch.device):
    """The bits of the engine's context that ``evaluate`` reads (one process, no autocast)."""
    from contextlib import nullcontext

    return types.SimpleNamespace(
        device=device, distributed=False, autocast=nullcontext, world_size=1, rank=0
    )


if __name__ == "__main__":
    main()
