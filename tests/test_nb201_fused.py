"""The fused DARTS and GDAS forwards of the NAS-Bench-201 supernet equal the per-edge ones.

The per-edge forward (``fused = False``) is the one pinned against the authors' code in
tests/test_nb201_nn.py; here the fused one must give the same logits, every gradient, the same
running statistics and batch counts, in float64 up to rounding.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from sharpdarts.nn.nb201 import NB201SearchNetwork
from sharpdarts.nn.nb201_fused import fusable
from sharpdarts.nn.nb201_search import NB201SearchCell


def _pair(method: str, **options):
    torch.manual_seed(0)
    fused = NB201SearchNetwork(C=8, N=1, method=method, **options).double()
    with torch.no_grad():
        fused.alphas.normal_()
    plain = copy.deepcopy(fused)
    plain.channels_last = False
    plain.to(memory_format=torch.contiguous_format)
    for cell in plain.cells:
        if isinstance(cell, NB201SearchCell):
            cell.fused = False
    return fused, plain


def _steps(model, x, y, steps: int = 2):
    """Logits of the last of ``steps`` train-mode forwards (seeded alike: GDAS's draw), with
    the gradients of all of them accumulated."""
    for step in range(steps):
        torch.manual_seed(step)
        logits = model(x)
        F.cross_entropy(logits, y).backward()
    return logits.detach()


@pytest.mark.parametrize("method", ["darts", "gdas"])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_forward_equals_the_per_edge_forward(method, affine, channels_last):
    fused, plain = _pair(method, affine=affine, channels_last=channels_last)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 8, 8, generator=generator, dtype=torch.float64)
    y = torch.tensor([1, 2, 3])
    assert torch.allclose(_steps(fused, x, y), _steps(plain, x, y), rtol=1e-12, atol=1e-14)
    for (name, a), b in zip(fused.named_parameters(), plain.parameters()):
        if b.grad is None:  # a GDAS op that was never sampled
            assert a.grad is None, name
            continue
        if name.endswith("op.1.bias"):  # a conv bias before a BN: 0 but for rounding
            assert max(a.grad.abs().max(), b.grad.abs().max()) < 1e-10, name
            continue
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-13), name
    for (name, a), b in zip(fused.state_dict().items(), plain.state_dict().values()):
        assert (
            torch.allclose(a, b, rtol=1e-12, atol=1e-14)
            if a.is_floating_point()
            else (torch.equal(a, b))
        ), name
    fused.eval(), plain.eval()
    torch.manual_seed(5)
    evaluated = fused(x)
    torch.manual_seed(5)
    assert torch.allclose(evaluated, plain(x), rtol=1e-12, atol=1e-14)


def test_a_cumulative_average_bn_is_left_to_its_module():
    fused, plain = _pair("darts")
    cell = next(c for c in fused.cells if isinstance(c, NB201SearchCell))
    assert fusable(cell.edges)
    for model in (fused, plain):
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None
    assert not fusable(cell.edges)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1])
    assert torch.allclose(_steps(fused, x, y), _steps(plain, x, y), rtol=1e-12, atol=1e-14)
