"""Metrics (sharpdarts.core.metrics): top-k accuracy, parameter counts, multiply-adds.

The paper's figures for whole networks are pinned in test_models.py; here each function is
checked on networks small enough to count by hand.
"""

import pytest
import torch
from torch import nn

from sharpdarts.core.metrics import accuracy, count_parameters, multiply_adds


def test_accuracy_top1_and_top5_in_percent():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    target = torch.tensor([1, 0, 0, 1])
    top1, top2 = accuracy(logits, target, topk=(1, 2))
    assert top1 == pytest.approx(50.0)  # samples 0 and 1
    assert top2 == pytest.approx(75.0)  # and sample 3's second choice
    # k above the class count counts every sample as correct.
    assert accuracy(logits, target, topk=(5,)) == [pytest.approx(100.0)]


class Tiny(nn.Module):
    """conv 3->4 (3x3, no bias), BN, ReLU, pool, linear 4->2; an auxiliary head and alphas."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4, 2)
        self.auxiliary_head = nn.Linear(4, 2)
        self.alphas = nn.Parameter(torch.zeros(5, 3))

    def arch_parameters(self):
        return [self.alphas]

    def forward(self, x):
        features = self.pool(self.relu(self.bn(self.conv(x)))).flatten(1)
        return self.classifier(features), None


def test_count_parameters_leaves_out_alphas_and_the_auxiliary_head():
    net = Tiny()
    weights = 3 * 4 * 9 + 2 * 4 + 4 * 2 + 2  # conv, BN scale and shift, linear
    assert count_parameters(net) == weights
    assert count_parameters(net, auxiliary=True) == weights + 4 * 2 + 2


def test_multiply_adds_counts_as_the_original_and_restores_the_mode():
    net = Tiny().train()
    pixels = 5 * 5
    expected = (
        3 * 9 * 4 * pixels  # conv: multiply-adds per output element
        + 2 * 4 * pixels  # affine batch norm: 2 per element
        + 4 * pixels  # ReLU: 1 per element
        + 4 * pixels  # pooling: 1 per input element
        + 4 * 2
        + 2
    )  # linear, plus its bias
    assert multiply_adds(net, (3, 5, 5)) == expected
    assert net.training  # put back in training mode
