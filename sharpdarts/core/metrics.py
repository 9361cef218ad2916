"""Accuracy, parameter counts and multiply-adds, counted as the paper counts them."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


@torch.no_grad()
def accuracy(logits: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)) -> list[float]:
    """Top-k accuracies in percent for a batch.

    Args:
        logits: (batch, classes) scores.
        target: (batch,) class indices.
        topk: the k values.
    """
    maxk = min(max(topk), logits.size(1))
    pred = logits.topk(maxk, dim=1).indices
    correct = pred.eq(target.view(-1, 1))
    return [correct[:, : min(k, maxk)].any(dim=1).float().mean().item() * 100.0 for k in topk]


def count_parameters(model: nn.Module, auxiliary: bool = False) -> int:
    """Trainable weights, as the paper counts them.

    Architecture parameters (``model.arch_parameters()``) are never counted. The auxiliary
    head is left out unless ``auxiliary`` is True, as DARTS' count (the paper's Params
    column) leaves it out.
    """
    arch = {id(p) for p in getattr(model, "arch_parameters", lambda: [])()}
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if id(p) not in arch and (auxiliary or "auxiliary" not in name)
    )


class _Logits(nn.Module):
    """Returns only the logits of a network whose forward returns (logits, logits_aux)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


def multiply_adds(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds for one image in eval mode, counted as the original code counts them.

    Uses ptflops' module hooks, the counter the original code copied: convolutions and
    linear layers (multiply-adds, plus bias), batch norms (2 per element when affine, else
    1), ReLUs (1 per output element) and pooling (1 per input element). Functional calls,
    additions and concatenations are not counted, as in the original. The model is put in
    eval mode for the count and restored afterwards.

    Args:
        model: the network (its auxiliary head is inactive in eval mode).
        input_shape: (channels, height, width) of one image, e.g. (3, 32, 32).
    """
    from ptflops import get_model_complexity_info  # imported lazily: it is slow to import

    was_training = model.training
    model.eval()
    try:
        macs, _ = get_model_complexity_info(
            _Logits(model),
            tuple(input_shape),
            as_strings=False,
            print_per_layer_stat=False,
            verbose=False,
            backend="pytorch",
            backend_specific_config={"count_functional": False},
        )
    finally:
        model.train(was_training)
    return int(macs)
