"""The recurrent search's fast path computes what the original computes.

The reference path is the yardstick of benchmarks/lm_search_step.py: the original search cell
loop by loop (``set_reference_path``, :mod:`sharpdarts.nn.recurrent.reference`) and the
original architect (``RecurrentArchitect(copy_network=True)``: ``backward()`` over every
parameter, a deep copy of the model for the unrolled step, the Hessian passes on the model's
own weights shifted in place). Both paths draw the same dropout masks in the same order, so
with dropout on, from the same seed, a whole search step (architect step, then the weight
step of the search job) must leave the same alphas, weights and batch-norm statistics.
"""

import copy

import pytest
import torch

from sharpdarts.engine.data.bundle import build_datasets
from sharpdarts.engine.lm_architect import RecurrentArchitect
from sharpdarts.engine.lm_search import lm_search
from sharpdarts.nn import reference
from sharpdarts.nn.models import RNNSearchModel
from sharpdarts.nn.recurrent.cells import DARTSCellSearch
from sharpdarts.nn.reference import set_reference_path

TOL64 = dict(rtol=1e-9, atol=1e-12)
# float32: rounding differences (the reference sums ops one by one) grow through SGD at lr 20
# and the finite-difference Hessian term to ~1e-5 after two steps; an alpha moves 3e-3 a step.
TOL32 = dict(rtol=1e-3, atol=5e-5)


def cell_outputs_and_grads(cell, x, h, probs, seed):
    torch.manual_seed(seed)
    out, last = cell(x, h, probs)
    (out.pow(2).sum() + last.sum()).backward()
    grads = [p.grad.clone() for p in cell.parameters()] + [probs.grad.clone()]
    cell.zero_grad()
    probs.grad = None
    return out.detach(), last.detach(), grads


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "primitives", [["none", "tanh", "relu", "sigmoid", "identity"], ["relu", "tanh"]]
)
def test_reference_search_cell_equals_the_fast_cell(training, primitives):
    torch.manual_seed(0)
    cell = DARTSCellSearch(6, 6, 0.25, 0.5, primitives, steps=4, concat=3).double()
    cell.train(training)
    x = torch.randn(5, 3, 6, dtype=torch.float64)
    h = torch.randn(1, 3, 6, dtype=torch.float64)
    probs = torch.softmax(torch.randn(10, len(primitives), dtype=torch.float64), -1)
    probs.requires_grad_(True)
    ref = copy.deepcopy(cell)
    set_reference_path(ref)
    fast = cell_outputs_and_grads(cell, x, h, probs, 3)
    slow = cell_outputs_and_grads(ref, x, h, probs, 3)
    for a, b in zip(fast[:2] + tuple(fast[2]), slow[:2] + tuple(slow[2])):
        torch.testing.assert_close(a, b, **TOL64)
    torch.testing.assert_close(cell.bn.running_mean, ref.bn.running_mean, **TOL64)
    assert cell.bn.num_batches_tracked == ref.bn.num_batches_tracked == (5 * 5 if training else 0)


def test_set_reference_path_switches_the_recurrent_search_cell_and_back():
    model = RNNSearchModel(10, 4, 4, 4)
    cell = model.rnns[0]
    assert not reference.uses_reference_path(cell)
    set_reference_path(model)
    assert reference.uses_reference_path(cell)
    assert reference.uses_reference_path(copy.deepcopy(model).rnns[0])  # the copy keeps it
    set_reference_path(model, False)
    assert not reference.uses_reference_path(cell)


@pytest.fixture(scope="module")
def bundle():
    return build_datasets(name="synthetic_text")


def _search_job(bundle, order, path, dtype):
    def net(ntoken):
        return RNNSearchModel(ntoken, 8, 8, 8, dropoute=0.1)  # every dropout on

    job = lm_search(
        data=bundle,
        epochs=1,
        batch_size=6,
        network=net,
        order=order,
        show_progress=False,
        build_only=True,
        seed=11,
        # Windows of 12 time steps, not 35: the same step at a third of the loops (float32
        # still within a quarter of TOL32 here; at 8 its alphas differ by more than TOL32).
        bptt=12,
    )
    job.model.to(dtype)
    if path == "reference":
        set_reference_path(job.model)
        job.architect.copy_network = True
    return job


def _run_steps(job, steps, seed):
    """``steps`` training steps of the search job (architect step + weight step) on its first
    windows, from ``seed``."""
    torch.manual_seed(seed)
    job.start_epoch(1)
    for (x, y), _ in zip(job.train_loader, range(steps)):
        job.train_step(x, y)
    return {
        "alphas": job.model.alphas.detach().clone(),
        **{k: v.detach().clone() for k, v in job.model.state_dict().items()},
    }


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, TOL64), (torch.float32, TOL32)])
def test_a_search_step_is_the_same_on_both_paths(bundle, order, dtype, tol):
    jobs = {p: _search_job(bundle, order, p, dtype) for p in ("fast", "reference")}
    initial = {k: v.clone() for k, v in jobs["fast"].model.state_dict().items()}
    assert all(torch.equal(v, jobs["reference"].model.state_dict()[k]) for k, v in initial.items())
    after = {p: _run_steps(job, 2, seed=5) for p, job in jobs.items()}
    assert not torch.equal(after["fast"]["alphas"], initial["alphas"])
    assert not torch.equal(after["fast"]["rnns.0._W0"], initial["rnns.0._W0"])
    assert after["fast"].keys() == after["reference"].keys()
    for name, value in after["fast"].items():
        torch.testing.assert_close(value, after["reference"][name], **tol, msg=name)
    torch.testing.assert_close(
        jobs["fast"].hidden_valid[0], jobs["reference"].hidden_valid[0], **tol
    )


@pytest.mark.parametrize("order", [1, 2])
def test_the_architect_steps_of_both_paths_leave_the_weights_as_they_were(order):
    """One architect step alone: equal alphas; the reference's in-place Hessian passes put the
    weights back bit for bit, and the fast step never writes them."""
    results = {}
    for copy_network in (False, True):
        torch.manual_seed(2)
        model = RNNSearchModel(30, 6, 6, 6).double()
        arch = RecurrentArchitect(model, order=order, copy_network=copy_network)
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if n != "alphas"}
        x, y = torch.randint(0, 30, (5, 4)), torch.randint(0, 30, (20,))
        xv, yv = torch.randint(0, 30, (5, 4)), torch.randint(0, 30, (20,))
        h = model.init_hidden(4)
        hidden = arch.step(h, x, y, h, xv, yv, eta=20.0)
        assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n != "alphas")
        results[copy_network] = (
            model.alphas.detach().clone(),
            model.alphas.grad.clone(),
            hidden[0],
            model.rnns[0].bn.running_var.clone(),
        )
    for fast, ref in zip(results[False], results[True]):
        torch.testing.assert_close(fast, ref, **TOL64)
