"""Times a NAS-Bench-201 search step: ours (DARTS and GDAS) beside the authors' (xautodl).

A step is a first-order search step, the same driver for every model: an architecture step
(forward and backward on a validation batch, Adam on the alphas with lr 3e-4, betas
(0.5, 0.999), weight decay 1e-3) then a weight step (forward and backward on a training batch,
gradient-norm clip 5, SGD lr 0.025, momentum 0.9, weight decay 5e-4, nesterov), as in xautodl's
DARTS-V1 and GDAS search scripts. Inputs are random 32x32 images.

Models (the supernet: C=16, N=5, 10 classes, the cells' BN without affine, tracked statistics):
  authors_darts  xautodl's ``GenericNAS201Model``, ``set_algo('darts-v1')``, cal mode 'joint'
  authors_gdas   the same with ``set_algo('gdas')``, cal mode 'gdas', tau 10
  darts, gdas    ``NB201SearchNetwork`` (fused mixtures, channels-last unless
                 --no-channels-last)

xautodl is imported from the installed package (``pip install xautodl``) or from
``--xautodl DIR`` (a checkout holding the ``xautodl`` package); without it, only ours are
timed and the ratios to the authors are not printed.

The models run in ONE process, interleaved (the order alternates every round), after a
warm-up step each. Each step is timed in process CPU time (one thread, so the machine's other
work slows it far less than wall time) and in wall time. Ratios are per round, then the median
over rounds: darts / authors_darts and gdas / darts (issue 22: at most 0.7 and 0.35).

Example:
  python benchmarks/nb201_step.py --batch 64 --rounds 5 --json results/nb201_step.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import common  # first: it puts the repository on sys.path
import torch
import torch.nn.functional as F

from sharpdarts.nn.nb201 import NB201SearchNetwork

GRAD_CLIP = 5.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=5)
    parser.add_argument("--image", type=int, default=32, help="image side")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after 1 warm-up")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--xautodl", default=None, help="a directory holding xautodl/")
    parser.add_argument("--no-authors", action="store_true", help="time ours only")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    return parser.parse_args(argv)


def authors_model(args, algo: str):
    """xautodl's GenericNAS201Model, or None with a message when xautodl is absent."""
    if args.xautodl:
        sys.path.insert(0, args.xautodl)
    try:
        from xautodl.models.cell_operations import NAS_BENCH_201
        from xautodl.models.cell_searchs.generic_model import GenericNAS201Model
    except ImportError:
        print("xautodl is not installed (pip install xautodl, or --xautodl DIR): ours only.")
        return None
    model = GenericNAS201Model(args.C, args.N, 4, 10, NAS_BENCH_201, False, True)
    model.set_algo(algo)
    model.set_cal_mode("joint" if algo == "darts-v1" else "gdas")
    if algo == "gdas":
        model.set_tau(10.0)
    return model


def make_step(model, arch, weights, tuple_out: bool, args):
    """A ``step()`` closure: the architecture step, then the weight step."""
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch, 3, args.image, args.image)
    batches = [
        (torch.randn(shape, generator=generator), torch.randint(0, 10, (args.batch,)))
        for _ in range(2)
    ]
    arch_opt = torch.optim.Adam(arch, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)

    def loss(x, y):
        out = model(x)
        return F.cross_entropy(out[1] if tuple_out else out, y)

    def step():
        (x_valid, y_valid), (x_train, y_train) = batches
        arch_opt.zero_grad()
        loss(x_valid, y_valid).backward()
        arch_opt.step()
        opt.zero_grad()
        loss(x_train, y_train).backward()
        torch.nn.utils.clip_grad_norm_(weights, GRAD_CLIP)
        opt.step()

    return step


def build(args) -> dict:
    """The ``step()`` of every model, by name."""
    steps = {}
    if not args.no_authors:
        for algo, name in (("darts-v1", "authors_darts"), ("gdas", "authors_gdas")):
            model = authors_model(args, algo)
            if model is None:
                break
            model.train()
            steps[name] = make_step(
                model, model.alphas, list(model.weights), tuple_out=True, args=args
            )
    for method in ("darts", "gdas"):
        torch.manual_seed(args.seed)
        model = NB201SearchNetwork(
            C=args.C, N=args.N, method=method, channels_last=not args.no_channels_last
        ).train()
        steps[method] = make_step(
            model, model.arch_parameters(), model.weights(), tuple_out=False, args=args
        )
    return steps


def measure(steps: dict, rounds: int) -> dict:
    """CPU and wall seconds of each step per round, interleaved, after one warm-up each."""
    for step in steps.values():
        step()
    times = {name: {"cpu": [], "wall": []} for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            common.clocked(steps[name], times[name])
        print(f"  round {r + 1}: " + "  ".join(f"{n} {times[n]['cpu'][-1]:.3f}s" for n in names))
    return times


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = build(args)
    times = measure(steps, args.rounds)
    result = {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "torch": torch.__version__,
        "median_step_s": {
            n: {c: statistics.median(t[c]) for c in ("cpu", "wall")} for n, t in times.items()
        },
        "times": times,
        "ratios": {"gdas / darts": common.round_ratios(times, "gdas", "darts")},
    }
    if "authors_darts" in times:
        result["ratios"]["darts / authors_darts"] = common.round_ratios(
            times, "darts", "authors_darts"
        )
        result["ratios"]["gdas / authors_gdas"] = common.round_ratios(times, "gdas", "authors_gdas")
    for name, median in result["median_step_s"].items():
        print(f"{name:14s} median step {median['cpu']:.3f}s cpu, {median['wall']:.3f}s wall")
    for name, ratio in result["ratios"].items():
        print(f"{name:24s} {ratio['cpu']['median']:.3f} cpu, {ratio['wall']['median']:.3f} wall")
    common.write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
