"""Times full steps of DARTS's recurrent architecture search, reference path vs fast path.

A step is what ``engine.lm_search`` does per training window: ``RecurrentArchitect.step``
(first or second order) on a validation window, carrying its hidden state, then the weight
step on a training window (forward with the search dropouts, NLL + TAR (beta 1e-3), backward,
the original's clip at 0.25 over the weights, SGD at lr 20 with weight decay 5e-7). The
model is the search model (``RNNSearchModel``, the original's dropouts .75/.25/.75/.2/0, every
primitive); the windows are random words.

Paths:
  reference  the original's computation, the original's way: the search cell loop by loop
             (``set_reference_path``: per time step the concatenated input times all of W0,
             per node every op's highway state summed one op at a time) and the original
             architect (``RecurrentArchitect(copy_network=True)``: first order by
             ``backward()`` over every parameter; second order with a deep copy of the model
             for the virtual step, ``backward()`` over all of its parameters, the Hessian
             passes on the model's own weights shifted in place).
  fast       the library's default: the input product for the whole window at once, each
             node's ops in closed form, gradients of only what is needed (the alphas in first
             order and in the Hessian passes), no copy (``torch.func.functional_call``).
             With --compile, the search cell's time step runs through torch.compile
             (inductor; ``RNNSearchModel.compile_backend``): the first step compiles, and its
             time is printed apart (the timed steps follow two warm-up steps). Use
             --no-memory with it, or each memory child compiles again.

Both paths compute the same step (tests/test_lm_reference.py).

Examples:
  python benchmarks/lm_search_step.py --order 1 --compare --threads 1
  python benchmarks/lm_search_step.py --order 2 --compare --threads 1 --steps 3
  python benchmarks/lm_search_step.py --nhid 16 --vocab 50 --batch 4 --bptt 5 --compare
  python benchmarks/lm_search_step.py --order 1 --compare --threads 1 --compile --no-memory

Prints ``median_step_s`` and ``peak_memory_mib`` per path and, with --compare, the median of
the per-pair time ratios fast / reference.
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts the repository on sys.path)
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.engine.lm_architect import RecurrentArchitect
from sharpdarts.nn.models import RNNSearchModel
from sharpdarts.nn.recurrent.model import ar_tar_penalty
from sharpdarts.nn.reference import set_reference_path

LR, WEIGHT_DECAY, GRAD_CLIP, BETA = 20.0, 5e-7, 0.25, 1e-3
DROPOUTS = dict(dropout=0.75, dropouth=0.25, dropoutx=0.75, dropouti=0.2, dropoute=0.0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--nhid", type=int, default=300, help="embedding and hidden width (the search model's 300)"
    )
    parser.add_argument("--vocab", type=int, default=10000, help="vocabulary (PTB's 10000)")
    parser.add_argument("--bptt", type=int, default=35, help="window length (35)")
    parser.add_argument("--order", type=int, default=1, choices=[1, 2])
    common.add_common_arguments(parser)
    parser.set_defaults(batch=64)
    return parser.parse_args(argv)


def build(args, device: torch.device, path: str):
    """The model, and a ``step()`` closure of one path."""
    torch.manual_seed(args.seed)
    reference = path == "reference"
    backend = "inductor" if args.compile and not reference else None
    model = RNNSearchModel(
        args.vocab, args.nhid, args.nhid, args.nhid, **DROPOUTS, compile_backend=backend
    ).to(device)
    model.train()
    if reference:
        set_reference_path(model)
    weights = model.weights()
    optimizer = torch.optim.SGD(weights, lr=LR, weight_decay=WEIGHT_DECAY)
    architect = RecurrentArchitect(
        model, order=args.order, network_weight_decay=WEIGHT_DECAY, copy_network=reference
    )
    gen = torch.Generator().manual_seed(args.seed + 1)
    x, xv = (
        torch.randint(0, args.vocab, (args.bptt, args.batch), generator=gen).to(device)
        for _ in range(2)
    )
    y, yv = (
        torch.randint(0, args.vocab, (args.bptt * args.batch,), generator=gen).to(device)
        for _ in range(2)
    )
    state = {"train": model.init_hidden(args.batch), "valid": model.init_hidden(args.batch)}

    def step():
        state["valid"] = architect.step(state["train"], x, y, state["valid"], xv, yv, eta=LR)
        log_probs, hidden, raw, dropped = model(x, state["train"], return_h=True)
        loss = F.nll_loss(log_probs.view(-1, args.vocab), y)
        loss = loss + ar_tar_penalty(raw, dropped, 0.0, BETA)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(weights, GRAD_CLIP)
        optimizer.step()
        state["train"] = [h.detach() for h in hidden]

    if backend:  # compile now, and report it apart from the step times
        tic = time.perf_counter()
        step()
        print(
            f"fast (compiled): first step, compiling, {time.perf_counter() - tic:.1f}s", flush=True
        )
    return model, step


CONFIG_KEYS = ["batch", "nhid", "vocab", "bptt", "order", "compile", "steps"]


def main(argv=None):
    return common.main(argv, parse_args, build, CONFIG_KEYS, "lm_search_step")


if __name__ == "__main__":
    main()
