"""DARTS-family searches through the search job: the temperature schedule, checkpointed
temperature, exact resume after a kill (GDAS, and each method's experiment in smoke mode), and
the loss terms in the loop."""

from __future__ import annotations

import gin
import pytest
import torch
from test_engine import (  # the search job's test helpers (tests/test_engine.py)
    SEARCH,
    SEARCH_CELL,
    assert_same_state,
    configure,
    killed_search_resumes_exactly,
)

from sharpdarts.engine import search_job
from sharpdarts.face import runner
from sharpdarts.nn import relaxation

GDAS = [
    *SEARCH,
    *SEARCH_CELL,
    "Architect.order = 1",
    "SearchNetwork.primitives = 'DARTS_PRIMITIVES'",
    "SearchNetwork.relaxation = 'gumbel_hard'",
    "search.tau_schedule = @linear_tau_schedule()",
    "linear_tau_schedule.tau_max = 10.0",
    "linear_tau_schedule.tau_min = 0.1",
]


# One node a cell (2 edges, not 5) where a test checks what the search does, not the cell's size.
ONE_NODE = ["SearchNetwork.steps = 1", "SearchNetwork.multiplier = 1"]


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_the_search_sets_the_temperature_of_each_epoch():
    configure(*GDAS, "search.epochs = 3")
    job = search_job.search(seed=0, build_only=True)
    taus = []
    for epoch in (1, 2, 3):  # the loop counts epochs from 1
        job.start_epoch(epoch)
        taus.append(job.model.tau)
    assert taus == [relaxation.linear_tau(e, 3, 10.0, 0.1) for e in range(3)]
    assert taus == pytest.approx([10.0, 5.05, 0.1])
    assert job.extra_state()["tau"] == pytest.approx(0.1)
    job.model.tau = 1.0
    job.load_extra_state({**job.extra_state(), "tau": 0.25})
    assert job.model.tau == 0.25


def test_a_killed_gdas_search_resumes_with_the_same_alphas(tmp_path, monkeypatch):
    configure(*GDAS, *ONE_NODE, "search.epochs = 2")
    a, b = killed_search_resumes_exactly(tmp_path, monkeypatch)
    assert a["tau"] == b["tau"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "bindings",
    [
        [  # FairDARTS: sigmoid weights, the zero-one loss on the architecture's loss
            "import sharpdarts.engine.arch_losses",
            "SearchNetwork.relaxation = 'sigmoid'",
            "Architect.extra_loss = @ZeroOneLoss()",
        ],
        [  # DrNAS: Dirichlet weights, the KL term
            "import sharpdarts.engine.arch_losses",
            "SearchNetwork.relaxation = 'dirichlet'",
            "Architect.extra_loss = @DirichletKL()",
        ],
        ["SearchNetwork.relaxation = 'gumbel_soft'", "SearchNetwork.tau = 0.5"],  # SNAS
    ],
)
def test_family_searches_run_and_move_their_alphas(bindings):
    configure(
        *SEARCH, *SEARCH_CELL, *ONE_NODE, "search.epochs = 1", "Architect.order = 1", *bindings
    )
    job = search_job.search(seed=0, build_only=True)
    before = [a.detach().clone() for a in job.model.arch_parameters()]
    final = job.fit()
    assert final["genotype"]["normal"]
    after = job.model.arch_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(after, before))
    if "Architect.extra_loss" in " ".join(bindings):
        assert job.architect.extra_loss is not None


def test_heatmap_weights_are_the_relaxations_readout():
    configure(*SEARCH, *SEARCH_CELL, *ONE_NODE, "SearchNetwork.relaxation = 'sigmoid'")
    job = search_job.search(seed=0, build_only=True)
    rows = job.end_epoch(1)["alphas_normal"]
    expected = torch.sigmoid(job.model.alphas_normal.detach().float())
    torch.testing.assert_close(torch.tensor(rows), expected)


@pytest.mark.parametrize("after", [False, True])
def test_the_architecture_steps_before_or_after_the_weights(after):
    configure(*GDAS, f"search.arch_after_weights = {after}")
    job = search_job.search(seed=0, build_only=True)
    order = []
    arch_step, weight_step = job.architect.step, job.optimizer.step
    job.architect.step = lambda *a, **k: order.append("arch") or arch_step(*a, **k)
    job.optimizer.step = lambda *a, **k: order.append("weights") or weight_step(*a, **k)
    x, y = next(iter(job.train_loader))
    job.train_step(x, y)
    assert order == (["weights", "arch"] if after else ["arch", "weights"])


def test_warm_up_epochs_train_the_weights_only():
    configure(
        *SEARCH, *SEARCH_CELL, *ONE_NODE, "search.epochs = 2", "search.arch_warmup_epochs = 1"
    )
    job = search_job.search(seed=0, build_only=True)
    steps = []
    arch_step = job.architect.step
    job.architect.step = lambda *a, **k: steps.append(1) or arch_step(*a, **k)
    x, y = next(iter(job.train_loader))
    for epoch in (1, 2):
        job.start_epoch(epoch)
        before = len(steps)
        job.train_step(x, y)
        assert len(steps) - before == (0 if epoch == 1 else 1)


# Each method's search, killed after its first epoch and resumed, ends as an uninterrupted one:
# its temperature (SNAS), stop state (DARTS-ES), partial channels and edge betas (PC-DARTS),
# loss terms (FairDARTS, SNAS's resource constraint) included. Smoke mode, made tinier still:
# one weight step and one architecture step an epoch.
@pytest.mark.parametrize(
    "experiment, bindings",
    [
        ("search/fairdarts", []),
        ("search/drnas", ["search.arch_warmup_epochs = 0"]),
        ("search/snas", []),
        ("search/pc_darts", []),
        ("search/r_darts_l2", []),
        # DARTS-ES measures every epoch and stops as soon as the eigenvalue grows (factor 1e-6).
        (
            "search/darts_es",
            [
                "EPOCHS = 3",
                "Architect.order = 1",
                "collapse_metrics.every = 1",
                "darts_es.window = 1",
                "darts_es.delta = 1",
                "darts_es.start_epoch = 1",
                "darts_es.factor = 1e-6",
            ],
        ),
    ],
)
def test_a_killed_search_of_each_method_resumes_exactly(
    experiment, bindings, tmp_path, monkeypatch
):
    tiny = [
        "BATCH_SIZE = 4",
        "build_datasets.synthetic_size = (8, 4)",
        "SearchNetwork.steps = 1",
        "SearchNetwork.multiplier = 1",
    ]
    if experiment != "search/darts_es":
        tiny.append("collapse_metrics.every = 0")
    runner.configure(experiment, [*tiny, *bindings], smoke=True, results=str(tmp_path))
    gin.bind_parameter("build_datasets.synthetic_shape", (3, 8, 8))  # smoke mode's are 32x32
    a, b = killed_search_resumes_exactly(tmp_path, monkeypatch)
    assert_same_state(b, a, "checkpoint")  # RNG states, schedules, Adam moments, stop state
    if experiment == "search/snas":
        assert a["tau"] < 1.0  # the temperature schedule moved
        assert gin.query_parameter("Architect.extra_loss").selector == "ResourceConstraint"
        group = a["architect"]["optimizer"]["param_groups"][0]  # SNAS's plain SGD on alphas
        assert "betas" not in group and (group["momentum"], group["weight_decay"]) == (0, 0)
        assert gin.query_parameter("search.one_level") and a["scheduler"]["last_epoch"] == 3
    if experiment == "search/darts_es":
        # Stopped at epoch 2 on the averages of epochs 1 and 2: the first came from the checkpoint.
        assert a["collapse"]["stop"]["decided_epoch"] == 2
