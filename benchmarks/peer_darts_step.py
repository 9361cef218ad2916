"""Times the DARTS supernet's search steps: ours beside a peer's (xautodl's NASNetworkDARTS).

Two steps per model, timed apart, on random 32x32 images, float32:
  weight  forward and backward on a training batch, gradient-norm clip 5, an SGD step
  arch    a first-order architecture step on a validation batch (Adam on the alphas, lr 3e-4,
          betas (0.5, 0.999), weight decay 1e-3)

Models, each as its own code builds it and on its own defaults:
  ours     ``SearchNetwork`` as experiments/search/darts_first_order.gin builds it
           (gin/protocols/darts_search.gin: C=16, 8 cells of 4 nodes, stem multiplier 3,
           DARTS_PRIMITIVES with DARTS_OPS, scalar weighting; channels-last, the default);
           the arch step is ``Architect(order=1).step``, the weight step SGD momentum 0.9,
           weight decay 3e-4, clip 5 over ``weights()``, as ``engine.search`` does them.
  authors  xautodl's ``NASNetworkDARTS`` as its DARTS-V1 search builds it
           (configs/search-archs/DARTS-NASNet-CIFAR.config: C=16, N=2, i.e. 3N+2 = 8 cells,
           steps 4, multiplier 4, stem multiplier 3; space 'darts'; affine False,
           track_running_stats 1 as scripts-search/DARTS-V1.sh passes it), NCHW; the arch
           step is its first-order step (forward, ``loss.backward()``, Adam), the weight step
           SGD momentum 0.9, Nesterov, weight decay 5e-4 (configs/search-opts/
           DARTS-NASNet-CIFAR.config), clip 5 over ``network.parameters()``.
  ours_nchw     (--nchw) ours with ``channels_last=False``.
  authors_cl    (--channels-last-both) xautodl's model and input in channels-last.

The models run in ONE process, one torch thread by default, interleaved (the order
alternates every round) after a warm-up round. Each step is timed in process CPU time (one
thread: the machine's other work slows it far less than wall time) and in wall time. A ratio
is taken per round (ours / authors, for the weight step, the arch step and their sum), then
the median over rounds.

Example:
  python benchmarks/peer_darts_step.py --batch 32 --rounds 5 --json results/peer.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import common  # first: it puts the repository on sys.path
import torch
import torch.nn.functional as F

from sharpdarts.engine.architect import Architect
from sharpdarts.nn.models import SearchNetwork

GRAD_CLIP = 5.0
ARCH = dict(lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8, help="cells: 3N + 2 for the peer's N")
    parser.add_argument("--image", type=int, default=32, help="image side")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after 1 warm-up")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--xautodl", default=None, help="a directory holding xautodl/")
    parser.add_argument("--no-authors", action="store_true", help="time ours only")
    parser.add_argument("--nchw", action="store_true", help="also time ours in NCHW")
    parser.add_argument(
        "--channels-last-both",
        action="store_true",
        help="also time the peer's model with channels-last weights and input",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    if (args.layers - 2) % 3 or args.layers < 5:
        parser.error(f"--layers must be 3N + 2 with N >= 1 (the peer's layout), not {args.layers}")
    return args


def batches(args) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A training and a validation batch (the same for every model)."""
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch, 3, args.image, args.image)
    return [
        (torch.randn(shape, generator=generator), torch.randint(0, 10, (args.batch,)))
        for _ in range(2)
    ]


def ours(args, data, channels_last: bool = True) -> dict:
    """Our ``weight`` and ``arch`` step closures."""
    torch.manual_seed(args.seed)
    model = SearchNetwork(
        C=args.C,
        num_classes=10,
        layers=args.layers,
        steps=4,
        multiplier=4,
        stem_multiplier=3,
        primitives="DARTS_PRIMITIVES",
        op_dict="DARTS_OPS",
        weighting="scalar",
        channels_last=channels_last,
    ).train()
    weights = model.weights()
    optimizer = torch.optim.SGD(weights, 0.025, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, order=1, **ARCH)
    (x, y), (xv, yv) = data

    def weight():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights, GRAD_CLIP)
        optimizer.step()

    def arch():
        architect.step(x, y, xv, yv, eta=0.025, weight_optimizer=optimizer)

    return {"weight": weight, "arch": arch}


def authors(args, data, channels_last: bool = False) -> dict | None:
    """xautodl's step closures, or None with a message when xautodl is absent."""
    if args.xautodl:
        sys.path.insert(0, args.xautodl)
    try:
        from xautodl.models.cell_operations import DARTS_SPACE
        from xautodl.models.cell_searchs.search_model_darts_nasnet import NASNetworkDARTS
    except ImportError:
        print("xautodl is not installed (pip install xautodl, or --xautodl DIR): ours only.")
        return None
    torch.manual_seed(args.seed)
    N = (args.layers - 2) // 3
    model = NASNetworkDARTS(args.C, N, 4, 4, 3, 10, list(DARTS_SPACE), False, True).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    (x, y), (xv, yv) = ((t.contiguous(memory_format=fmt), target) for t, target in data)
    optimizer = torch.optim.SGD(
        model.get_weights(), 0.025, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    arch_optimizer = torch.optim.Adam(model.get_alphas(), **ARCH)

    def weight():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x)[1], y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()

    def arch():
        arch_optimizer.zero_grad()
        loss = F.cross_entropy(model(xv)[1], yv)
        loss.backward()
        arch_optimizer.step()

    return {"weight": weight, "arch": arch}


def build(args) -> dict:
    """Every model's step closures, by model name."""
    data = batches(args)
    models = {"ours": ours(args, data)}
    if args.nchw:
        models["ours_nchw"] = ours(args, data, channels_last=False)
    if not args.no_authors:
        theirs = authors(args, data)
        if theirs is not None:
            models["authors"] = theirs
            if args.channels_last_both:
                models["authors_cl"] = authors(args, data, channels_last=True)
    return models


def measure(models: dict, rounds: int) -> dict:
    """CPU and wall seconds of every step per round, interleaved, after a warm-up round."""
    for steps in models.values():
        for step in steps.values():
            step()
    times = {m: {s: {"cpu": [], "wall": []} for s in steps} for m, steps in models.items()}
    names = list(models)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for kind in ("arch", "weight"):
                common.clocked(models[name][kind], times[name][kind])
        line = "  ".join(
            f"{n} arch {t['arch']['cpu'][-1]:.2f}s weight {t['weight']['cpu'][-1]:.2f}s"
            for n, t in ((n, times[n]) for n in names)
        )
        print(f"  round {r + 1} (cpu): {line}")
    for per_model in times.values():
        per_model["total"] = {
            c: [a + w for a, w in zip(per_model["arch"][c], per_model["weight"][c])]
            for c in ("cpu", "wall")
        }
    return times


def ratios(times: dict, fast: str, reference: str) -> dict:
    """Per-round ratios ``fast / reference`` and their median, per step and clock."""
    return {
        kind: common.round_ratios({m: times[m][kind] for m in (fast, reference)}, fast, reference)
        for kind in ("weight", "arch", "total")
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    models = build(args)
    times = measure(models, args.rounds)
    result = {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": common.describe_machine(torch.device("cpu")),
        "median_step_s": {
            m: {k: {c: statistics.median(v[c]) for c in ("cpu", "wall")} for k, v in t.items()}
            for m, t in times.items()
        },
        "times": times,
        "ratios": {},
    }
    pairs = [("ours_nchw", "ours"), ("ours", "authors"), ("authors_cl", "authors")]
    pairs += [("ours", "authors_cl")]
    for fast, reference in pairs:
        if fast in times and reference in times:
            result["ratios"][f"{fast} / {reference}"] = ratios(times, fast, reference)
    for name, median in result["median_step_s"].items():
        parts = "  ".join(f"{k} {v['cpu']:.3f}s" for k, v in median.items())
        print(f"{name:11s} median cpu: {parts}")
    for name, ratio in result["ratios"].items():
        parts = "  ".join(
            f"{k} {v['cpu']['median']:.3f} (wall {v['wall']['median']:.3f})"
            for k, v in ratio.items()
        )
        print(f"{name:20s} {parts}")
    common.write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
