"""Times full architecture-search steps of the DARTS supernet, reference path vs fast path.

A step is what ``engine.search`` does per batch: ``Architect.step`` (first or second order)
on a validation batch, then the weight step on a training batch (forward, backward, gradient
norm clip 5, SGD with momentum 0.9 and weight decay 3e-4). Inputs are random 32x32 images.

Paths:
  reference  the yardstick: ``cells.set_reference_path`` (the original DARTS mixed op, every
             op computed including the zero op, a ReLU per op, no in-place accumulation) in the
             default NCHW memory format. Never partial channels. Second order: the original's
             step (``Architect(copy_network=True)``: a copy of the network per step, the
             Hessian passes on the model's own weights shifted in place).
  fast       the library's default architect (second order through torch.func, no copy)
             and mixed op (zero op skipped, one shared ReLU per edge, terms
             accumulated in place into the node sums) in channels-last memory format (unless
             --no-channels-last), optionally torch.compile'd, optionally with PC-DARTS partial
             channels / edge normalization or another relaxation (--relaxation gumbel_hard
             --tau 10: GDAS's hard sample, only the sampled op run), which change the math,
             on purpose.
  --baseline nchw   the "reference" slot holds the fast path's configuration in NCHW.
  --baseline darts  the "reference" slot holds the fast DARTS supernet (softmax, all
             channels, no edge normalization) in the fast path's memory format: the
             family's ratios (GDAS's step time, PC-DARTS's memory) against DARTS.

Examples:
  python benchmarks/search_step.py --batch 16 --C 16 --layers 8 --primitives DARTS_PRIMITIVES \\
      --order 1 --compare --flops
  python benchmarks/search_step.py --primitives PRIMITIVES --order 2 --compare
  python benchmarks/search_step.py --partial_channels 4 --edge_normalization --compare
  python benchmarks/search_step.py --relaxation gumbel_hard --tau 10 --baseline darts --compare

Prints ``median_step_s`` and ``peak_memory_mib`` per path and, with --compare, the median of
the per-pair time ratios fast / reference.
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from torch import nn

from sharpdarts.engine.architect import Architect
from sharpdarts.nn.models import SearchNetwork
from sharpdarts.nn.reference import set_reference_path

LR, MOMENTUM, WEIGHT_DECAY, GRAD_CLIP = 0.025, 0.9, 3e-4, 5.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument(
        "--nodes",
        type=int,
        default=4,
        help="intermediate nodes per cell, all concatenated into its output",
    )
    parser.add_argument("--primitives", default="DARTS_PRIMITIVES")
    parser.add_argument("--op_dict", default="OPS")
    parser.add_argument("--order", type=int, default=1, choices=[1, 2])
    parser.add_argument("--weighting", default="scalar", choices=["scalar", "max_w"])
    parser.add_argument(
        "--partial_channels",
        type=int,
        default=1,
        help="PC-DARTS K for the fast path (changes the math)",
    )
    parser.add_argument(
        "--edge_normalization",
        action="store_true",
        help="PC-DARTS edge normalization for the fast path (changes the math)",
    )
    parser.add_argument(
        "--relaxation",
        default="softmax",
        help="the fast path's relaxation (relaxation.RELAXATIONS: 'softmax' is DARTS, "
        "'gumbel_hard' GDAS; changes the math)",
    )
    parser.add_argument(
        "--tau", type=float, default=1.0, help="the relaxation's temperature (GDAS starts at 10)"
    )
    common.add_common_arguments(parser)
    return parser.parse_args(argv)


def build(args, device: torch.device, path: str):
    """The model, architect, optimizer and a ``step()`` closure of one path."""
    torch.manual_seed(args.seed)
    # With --baseline nchw / darts the "reference" slot holds a fast-path model: the same
    # configuration in NCHW, or the DARTS supernet (softmax, K=1, no edge normalization).
    baseline = path == "reference" and args.baseline != "reference"
    reference = path == "reference" and not baseline
    fast_config = path == "fast" or args.baseline == "nchw"
    model = SearchNetwork(
        C=args.C,
        num_classes=10,
        layers=args.layers,
        steps=args.nodes,
        multiplier=args.nodes,
        primitives=args.primitives,
        op_dict=args.op_dict,
        weighting=args.weighting,
        partial_channels=args.partial_channels if fast_config else 1,
        edge_normalization=fast_config and args.edge_normalization,
        channels_last=args.channels_last and (path == "fast" or args.baseline == "darts"),
        relaxation=args.relaxation if fast_config else "softmax",
        tau=args.tau if fast_config else 1.0,
    ).to(device)
    model.train()
    if reference:
        set_reference_path(model)
    net = torch.compile(model) if args.compile and not reference else model
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.weights(), LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    # The reference's second-order step copies the network per step, as the original does.
    architect = Architect(net, order=args.order, criterion=criterion, copy_network=reference)
    gen = torch.Generator().manual_seed(args.seed + 1)
    x, xa = (torch.randn(args.batch, 3, 32, 32, generator=gen).to(device) for _ in range(2))
    y, ya = (torch.randint(0, 10, (args.batch,), generator=gen).to(device) for _ in range(2))
    weights = model.weights()

    def step():
        architect.step(x, y, xa, ya, eta=LR, weight_optimizer=optimizer)
        loss = criterion(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(weights, GRAD_CLIP)
        optimizer.step()

    return model, step


CONFIG_KEYS = [
    "batch",
    "C",
    "layers",
    "nodes",
    "primitives",
    "op_dict",
    "order",
    "weighting",
    "partial_channels",
    "edge_normalization",
    "channels_last",
    "relaxation",
    "tau",
    "baseline",
    "compile",
    "steps",
]


def main(argv=None):
    return common.main(argv, parse_args, build, CONFIG_KEYS, "search_step")


if __name__ == "__main__":
    main()
