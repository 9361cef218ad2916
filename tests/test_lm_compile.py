"""The recurrent search cell's compiled time step (``compile_backend``) computes what the
eager step computes.

The 'eager' backend is the one used here: it runs what Dynamo traces (the graph the inductor
backend would compile) without minutes of C++ compilation, so a wrong trace (a missed buffer
update, a mask or an op weight captured as a constant, a graph that falls back) shows up as a
difference from the uncompiled cell. benchmarks/lm_search_step.py --compile times the
inductor backend.
"""

import copy

import pytest
import torch
from test_lm_reference import cell_outputs_and_grads

from sharpdarts.engine.data.bundle import build_datasets
from sharpdarts.engine.lm_search import lm_search
from sharpdarts.nn.models import RNNSearchModel
from sharpdarts.nn.recurrent import cells as cells_lib
from sharpdarts.nn.recurrent.cells import DARTSCellSearch

TOL64 = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test traces anew: Dynamo's cache is per code object, shared by every cell, and
    falls back to eager past its recompile limit."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class _CountingBackend:
    """A torch.compile backend that runs the traced graph as it is and counts the graphs."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


def _outputs_and_grads(cell, x, h, probs, seed):
    out, last, grads = cell_outputs_and_grads(cell, x, h, probs, seed)
    return [
        out,
        last,
        *grads,
        cell.bn.running_mean.clone(),
        cell.bn.running_var.clone(),
        cell.bn.num_batches_tracked.clone(),
    ]


@pytest.mark.parametrize("training", [True, False])
def test_the_compiled_step_gives_the_eager_cells_outputs_gradients_and_statistics(training):
    torch.manual_seed(0)
    # 3 nodes (6 edges), the output the mean of the last 2: a concat that leaves a node out
    eager = DARTSCellSearch(6, 6, 0.25, 0.5, steps=3, concat=2).double()
    eager.train(training)
    compiled = copy.deepcopy(eager)
    backend = _CountingBackend()
    compiled.compile_backend = backend
    x = torch.randn(5, 3, 6, dtype=torch.float64)
    h = torch.randn(1, 3, 6, dtype=torch.float64)
    probs = torch.softmax(torch.randn(6, 5, dtype=torch.float64), -1).requires_grad_(True)
    expected = _outputs_and_grads(eager, x, h, probs, 3)
    for call in range(2):  # the second window reuses the graph, with the updated statistics
        got = _outputs_and_grads(compiled, x, h, probs, 3)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, **TOL64)
        if call == 0:
            expected = _outputs_and_grads(eager, x, h, probs, 3)
    # the step traced whole (no graph breaks), once for the first time step (whose previous
    # output needs no gradient) and once for all the others, of both windows
    assert backend.graphs == 2
    assert cells_lib._COMPILED_STEPS.pop(backend) is not None


def _search_job(bundle, order, compile_backend):
    # A 2-node cell (3 edges, not the paper's 36): Dynamo's tracing time grows with the
    # edges, and every kind of pass (first time step, later ones; each kind of weights) is
    # still traced and compared.
    def net(ntoken):
        return RNNSearchModel(
            ntoken, 8, 8, 8, dropoute=0.1, steps=2, concat=2, compile_backend=compile_backend
        )

    job = lm_search(
        data=bundle,
        epochs=1,
        batch_size=6,
        network=net,
        order=order,
        show_progress=False,
        build_only=True,
        seed=11,
    )
    job.model.double()
    return job


def _run_steps(job, steps, seed):
    torch.manual_seed(seed)
    job.start_epoch(1)
    for (x, y), _ in zip(job.train_loader, range(steps)):
        job.train_step(x, y)
    return {
        "alphas": job.model.alphas.detach().clone(),
        "hidden_valid": job.hidden_valid[0].detach().clone(),
        **{k: v.detach().clone() for k, v in job.model.state_dict().items()},
    }


@pytest.mark.slow(3)
@pytest.mark.parametrize("order", [1, 2])
def test_a_search_step_with_the_compiled_cell_is_the_eager_step(order):
    """Architect step (first order; or unrolled: functional_call's virtual weights, scratch
    batch-norm buffers) and weight step: the same alphas, weights, statistics and state."""
    bundle = build_datasets(name="synthetic_text")
    backend = _CountingBackend()
    jobs = {
        name: _search_job(bundle, order, b) for name, b in (("eager", None), ("compiled", backend))
    }
    assert jobs["compiled"].model.rnns[0].compile_backend is backend
    after = {name: _run_steps(job, 2, seed=5) for name, job in jobs.items()}
    assert not torch.equal(after["eager"]["alphas"], jobs["eager"].model.alphas.new_zeros(1))
    for name, value in after["eager"].items():
        torch.testing.assert_close(after["compiled"][name], value, **TOL64, msg=name)
    # two graphs (first time step, the others) per kind of weights: the parameters, detached
    # (first order's alpha-only pass), virtual and shifted (second order); none per step
    assert backend.graphs == 2 * (order + 1)
    with torch.no_grad():  # evaluation runs eagerly: no graph for its batch size and mode
        jobs["compiled"].model.eval()
        jobs["compiled"].model(
            torch.zeros(3, 2, dtype=torch.long), jobs["compiled"].model.init_hidden(2)
        )
    assert backend.graphs == 2 * (order + 1)
    cells_lib._COMPILED_STEPS.pop(backend)


def test_compile_backend_is_bindable_and_off_by_default():
    import gin

    assert RNNSearchModel(10, 4, 4, 4).rnns[0].compile_backend is None
    with gin.unlock_config():
        gin.bind_parameter("RNNSearchModel.compile_backend", "eager")
    try:
        assert RNNSearchModel(10, 4, 4, 4).rnns[0].compile_backend == "eager"
    finally:
        gin.clear_config()
