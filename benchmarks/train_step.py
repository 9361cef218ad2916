"""Times training steps of a genotype's CIFAR network, reference path vs fast path.

A step is what ``engine.train`` does per batch: forward in train mode with drop path,
cross-entropy plus 0.4 x the auxiliary head's loss, backward, gradient norm clip 5, SGD with
momentum 0.9 and weight decay 3e-4. Inputs are random 32x32 images. Defaults: the paper's
network, C=36, 20 cells, auxiliary head, drop path probability 0.2.

Paths:
  reference  ``cells.set_reference_path`` (the plain cell code) in the default NCHW format.
  fast       the library's default cell (``fast`` shortcuts, one ReLU per state shared by
             the ops that read it, one-pass drop path) in channels-last format (unless
             --no-channels-last), optionally torch.compile'd.
  --baseline nchw   the "reference" slot holds the fast path in NCHW (the memory format's
             share of the gain).

Examples:
  python benchmarks/train_step.py --batch 16 --compare
  python benchmarks/train_step.py --genotype DARTS_V2 --batch 32 --compare --flops
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from torch import nn

from sharpdarts.nn.models import NetworkCIFAR
from sharpdarts.nn.reference import set_reference_path

LR, MOMENTUM, WEIGHT_DECAY, GRAD_CLIP, AUX_WEIGHT = 0.025, 0.9, 3e-4, 5.0, 0.4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--C", type=int, default=36)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--genotype", default="SHARPSEPCONV_DARTS")
    parser.add_argument("--no-auxiliary", dest="auxiliary", action="store_false")
    parser.add_argument("--drop_path_prob", type=float, default=0.2)
    common.add_common_arguments(parser)
    return parser.parse_args(argv)


def build(args, device: torch.device, path: str):
    torch.manual_seed(args.seed)
    if args.baseline == "darts":
        raise SystemExit("train_step.py: --baseline is 'reference' or 'nchw'")
    # --baseline nchw: the "reference" slot holds the fast path in the NCHW memory format.
    reference = path == "reference" and args.baseline == "reference"
    model = NetworkCIFAR(
        C=args.C,
        num_classes=10,
        layers=args.layers,
        auxiliary=args.auxiliary,
        genotype=args.genotype,
        channels_last=path == "fast" and args.channels_last,
    ).to(device)
    model.train()
    model.drop_path_prob = args.drop_path_prob
    if reference:
        set_reference_path(model)
    net = torch.compile(model) if args.compile and not reference else model
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(
        model.parameters(), LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)

    def step():
        logits, logits_aux = net(x)
        loss = criterion(logits, y)
        if logits_aux is not None:
            loss = loss + AUX_WEIGHT * criterion(logits_aux, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()

    return model, step


CONFIG_KEYS = [
    "batch",
    "C",
    "layers",
    "genotype",
    "auxiliary",
    "drop_path_prob",
    "channels_last",
    "baseline",
    "compile",
    "steps",
]


def main(argv=None):
    return common.main(argv, parse_args, build, CONFIG_KEYS, "train_step")


if __name__ == "__main__":
    main()
