"""P-DARTS: the supernet, the ops dropped between stages, the final cell, and the staged search.

``pdarts_figures.json`` holds figures computed by the authors' code, chenxin061/pdarts @
b880e8733010403307fe6a9bf7f02612fbc424ca, on CPU in float64, from this file's inputs:

- ``supernet``: ``model_search.Network`` (4 channels, 3 cells of 2 nodes, stem multiplier 1)
  with the switches ``SUPERNET_OPS``, our network's weights and alphas copied in (the keys
  renamed: their ``cell_ops`` / ``m_ops`` are our ``_ops``), the batch of :func:`data` and
  ``torch.manual_seed(5)`` before the forward: its logits and the gradients of both alpha
  tensors, with the skip dropout off (``p=0.0``) and at ``p=0.4`` (the same draws), and the
  alphas after the architecture step of their ``train()`` (its lines run verbatim: Adam lr
  6e-4, betas (0.5, 0.999), weight decay 1e-3, the gradient's norm clipped at 5 or 0.05).
- ``drop``: the block of ``train_search.py``'s ``main()`` that runs after each stage, run
  verbatim after stage 1 (8 -> 5 ops per edge) and stage 2 (5 -> 3) from the alphas of
  ``DROP_CASES``: the ops each edge keeps.
- ``derivation``: the same block after the last stage from ``FINAL_CASES`` (3 ops per edge):
  the genotype before the skip connections are restricted, and the one they log for at most
  two skip connections (their loop removes the weakest skip until the normal cell has that
  many).
"""

from __future__ import annotations

import json
import pathlib

import gin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_engine import (  # the search job's test helpers (tests/test_engine.py)
    SEARCH,
    Killed,
    assert_same_state,
    assert_same_tensors,
    configure,
    epochs_of,
    kill_at,
    read_metrics,
    search_copied_at,
    without_seconds,
)
from test_family_exact import tiny_float64_supernet

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.engine import checkpoint, search_job
from sharpdarts.engine.architect import Architect
from sharpdarts.errors import UserError
from sharpdarts.nn.derivation import pdarts_cell
from sharpdarts.nn.pdarts import PDartsNetwork, drop_ops
from sharpdarts.store.run import Run

PRIMITIVES = genotypes_lib.DARTS_PRIMITIVES
FIGURES_PATH = pathlib.Path(__file__).parent / "pdarts_figures.json"


def _pick(rng: np.random.RandomState, edges: int, count: int, must=()) -> list[list[str]]:
    """``count`` ops per edge, in primitive order, drawn by ``rng`` (``must`` on every edge)."""
    rows = []
    for _ in range(edges):
        others = [p for p in PRIMITIVES if p not in must]
        chosen = set(must) | set(rng.choice(others, count - len(must), replace=False).tolist())
        rows.append([p for p in PRIMITIVES if p in chosen])
    return rows


_rng = np.random.RandomState(21)
SUPERNET_OPS = {
    "normal": [
        ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_5x5"],
        ["avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3"],
        ["none", "avg_pool_3x3", "skip_connect", "sep_conv_5x5", "dil_conv_5x5"],
        ["max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3"],
        ["none", "skip_connect", "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5"],
    ],
    "reduce": _pick(_rng, 5, 5, must=("skip_connect",)),
}


def _alphas(rng, edges, ops, ties=False, skip_boost=0.0, skip_ops=None):
    a = rng.randn(edges, ops)
    if ties:
        a[0] = 0.5  # every op of edge 0 alike
        a[1, 1] = a[1, 2] = a[1].max() + 0.25  # two best ops alike
        a[3] = a[4]  # node 1's edges 3 and 4 alike (when their ops are)
    if skip_boost and skip_ops is not None:
        for e, row in enumerate(skip_ops):
            if "skip_connect" in row:
                a[e, row.index("skip_connect")] += skip_boost
    return a.tolist()


def _drop_case(seed, count, ties):
    rng = np.random.RandomState(seed)
    ops = {h: _pick(rng, 14, count) for h in ("normal", "reduce")}
    if ties:
        ops["normal"][4] = list(ops["normal"][3])
    return {
        "ops_normal": ops["normal"],
        "ops_reduce": ops["reduce"],
        "alphas_normal": _alphas(rng, 14, count, ties=ties),
        "alphas_reduce": _alphas(rng, 14, count),
    }


DROP_CASES = {  # name: (their stage index sp, inputs)
    "after_stage_1": (0, _drop_case(1, 8, ties=True)),
    "after_stage_2": (1, _drop_case(2, 5, ties=True)),
}


def _final_case(seed, skip_boost, ties=False):
    rng = np.random.RandomState(seed)
    ops = {
        "normal": _pick(rng, 14, 3, must=("skip_connect",) if skip_boost else ()),
        "reduce": _pick(rng, 14, 3),
    }
    if ties:
        ops["normal"][4] = list(ops["normal"][3])
    return {
        "ops_normal": ops["normal"],
        "ops_reduce": ops["reduce"],
        "alphas_normal": _alphas(rng, 14, 3, ties, skip_boost, ops["normal"]),
        "alphas_reduce": _alphas(rng, 14, 3, skip_ops=ops["reduce"]),
    }


FINAL_CASES = {
    "random": _final_case(3, 0.0),
    "many_skips": _final_case(4, 2.0),
    "many_skips_ties": _final_case(5, 1.5, ties=True),
}


def our_network(skip_dropout: float = 0.0, channels_last: bool = False) -> PDartsNetwork:
    """The supernet the figures were computed from (test_family_exact's, with P-DARTS's
    per-edge ops).

    NCHW by default, as theirs: a dropout mask is drawn in memory order, so in channels-last
    the same draws drop other elements (the same distribution, not the same draws; the
    figures without dropout hold in both formats)."""
    return tiny_float64_supernet(
        "DARTS_PRIMITIVES",
        network=PDartsNetwork,
        edge_ops=SUPERNET_OPS,
        skip_dropout=skip_dropout,
        channels_last=channels_last,
    )


def their_state(net: PDartsNetwork) -> dict:
    """Our state dict under their names (``cells.N.cell_ops.K.m_ops.J``)."""
    out = {}
    for key, value in net.state_dict().items():
        parts = key.split(".")
        if parts[0] == "cells" and parts[2] == "_ops":
            parts[2] = "cell_ops"
            if len(parts) > 4 and parts[4] == "_ops":
                parts[4] = "m_ops"
        out[".".join(parts)] = value
    return out


def data():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64), torch.tensor([0, 2])


FIGURES = json.loads(FIGURES_PATH.read_text())


def _close(actual, expected, rtol=1e-8, atol=1e-11):
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(
        actual.detach().reshape(expected.shape), expected, rtol=rtol, atol=atol
    )


@pytest.mark.parametrize("rate, channels_last", [(0.0, False), (0.4, False), (0.0, True)], ids=str)
def test_the_supernet_matches_the_authors_code(rate, channels_last):
    expected = FIGURES["supernet"][f"dropout_{rate}"]
    net = our_network(skip_dropout=rate, channels_last=channels_last)
    assert net.alphas_normal.shape == (5, 5)
    dropouts = sum(isinstance(m, torch.nn.Dropout) for m in net.modules())
    assert dropouts == (6 if rate else 0)  # after the stride-1 skips only
    x, y = data()
    torch.manual_seed(5)  # the same dropout draws as theirs
    logits = net(x)
    _close(logits, expected["logits"])
    grads = torch.autograd.grad(F.cross_entropy(logits, y), net.arch_parameters())
    _close(grads[0], expected["grad_normal"])
    _close(grads[1], expected["grad_reduce"])


@pytest.mark.parametrize("rate", [0.0, 0.4])
@pytest.mark.parametrize("clip", [5.0, 0.05])
def test_an_architecture_step_matches_the_authors_code(rate, clip):
    """Their train()'s step: Adam lr 6e-4, betas (0.5, 0.999), weight decay 1e-3, the alphas'
    gradient clipped at --grad_clip (5; 0.05 clips this one)."""
    expected = FIGURES["supernet"][f"dropout_{rate}"][f"step_clip_{clip}"]
    net = our_network(skip_dropout=rate)
    before = [a.detach().clone() for a in net.arch_parameters()]
    architect = Architect(net, lr=6e-4, betas=(0.5, 0.999), weight_decay=1e-3, grad_clip=clip)
    x, y = data()
    torch.manual_seed(5)
    architect.step(x, y, x, y, eta=0.025)
    # The step itself (about 6e-4 an entry), so that the clip's effect shows.
    for alphas, start, half in zip(net.arch_parameters(), before, ("normal", "reduce")):
        theirs = torch.tensor(expected[f"alphas_{half}"], dtype=torch.float64) - start
        _close(alphas - start, theirs.tolist(), rtol=1e-7, atol=1e-13)


def test_the_skip_dropout_rate_is_set_on_every_dropout():
    net = our_network(skip_dropout=0.4)
    net.skip_dropout = 0.1
    assert {m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    net.eval()
    x, _ = data()
    torch.manual_seed(5)
    first = net(x)
    assert torch.equal(first, net(x))  # no dropout when evaluating


@pytest.mark.parametrize("name", sorted(DROP_CASES))
def test_the_ops_dropped_between_stages_match_the_authors_code(name):
    sp, case = DROP_CASES[name]
    keep = (5, 3)[sp]
    for half in ("normal", "reduce"):
        weights = torch.softmax(torch.tensor(case[f"alphas_{half}"], dtype=torch.float64), -1)
        kept = drop_ops(case[f"ops_{half}"], weights.numpy(), keep)
        assert kept == FIGURES["drop"][name][half], half


def _full(ops, alphas):
    """Their stage-3 softmax, spread over all primitives (0: an op the edge does not have)."""
    weights = torch.softmax(torch.tensor(alphas, dtype=torch.float64), -1).numpy()
    full = np.zeros((len(ops), len(PRIMITIVES)))
    for e, row in enumerate(ops):
        full[e, [PRIMITIVES.index(op) for op in row]] = weights[e]
    return full


@pytest.mark.parametrize("name", sorted(FINAL_CASES))
def test_the_final_cell_and_its_skip_cap_match_the_authors_code(name):
    case, expected = FINAL_CASES[name], FIGURES["derivation"][name]
    for half in ("normal", "reduce"):
        full = _full(case[f"ops_{half}"], case[f"alphas_{half}"])
        for key, cap in (("uncapped", None), ("max_skips_2", 2 if half == "normal" else None)):
            cell = pdarts_cell(full, PRIMITIVES, steps=4, max_skips=cap)
            assert [list(p) for p in cell] == expected[key][half], (key, half)
    capped = expected["max_skips_2"]["normal"]
    assert sum(op == "skip_connect" for op, _ in capped) <= 2
    if name != "random":  # the cap struck skips out
        assert capped != expected["uncapped"]["normal"]


def test_the_network_genotype_caps_the_normal_cells_skips_only():
    net = our_network()
    with torch.no_grad():  # skip connections strongest wherever an edge has one
        for alphas, half in ((net.alphas_normal, "normal"), (net.alphas_reduce, "reduce")):
            for e, ops in enumerate(net.edge_ops[half]):
                if "skip_connect" in ops:
                    alphas[e, ops.index("skip_connect")] = 9.0
    genotype = net.genotype()
    reduce_skips = sum(op == "skip_connect" for op, _ in genotype.reduce)
    assert sum(op == "skip_connect" for op, _ in genotype.normal) == 2
    assert reduce_skips == 4  # every reduction edge has one; no cap there
    net.max_skips = None
    assert sum(op == "skip_connect" for op, _ in net.genotype().normal) == 4


# ---- The staged search ------------------------------------------------------------------------
# Two stages of 2 epochs (3 then 4 cells of 2 nodes, 8 ops then 4); the architecture steps in
# each stage's second epoch.
STAGED = [
    *SEARCH,
    "import sharpdarts.nn.pdarts",
    "search.network = @PDartsNetwork",
    "SearchNetwork.C = 4",
    "SearchNetwork.steps = 2",
    "SearchNetwork.multiplier = 2",
    "SearchNetwork.primitives = 'DARTS_PRIMITIVES'",
    "SearchNetwork.op_dict = 'DARTS_OPS'",
    "search.stages = @progressive_stages()",
    "progressive_stages.layers = (3, 4)",
    "progressive_stages.keep_ops = (4,)",
    "progressive_stages.skip_dropout = (0.2, 0.5)",
    "search.arch_warmup_epochs = 1",
    "search.lr_schedule = @cosine_annealing",
    "Architect.order = 1",
    "Architect.grad_clip = 5.0",
]


@pytest.fixture
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.usefixtures("_clean_gin")
def test_a_staged_search_drops_ops_and_restarts_each_stage():
    configure(*STAGED)
    job = search_job.search(seed=0, build_only=True)
    assert job.epochs == 4 and len(job.model.cells) == 3 and job.model.alphas_normal.shape[1] == 8
    x, y = next(iter(job.train_loader))
    rates, arch_steps = [], []
    step = job.architect.step
    job.architect.step = lambda *a, **k: arch_steps.append(1) or step(*a, **k)
    for epoch in (1, 2):
        job.start_epoch(epoch)
        rates.append(job.model.skip_dropout)
        before = len(arch_steps)
        job.train_step(x, y)
        assert len(arch_steps) - before == epoch - 1  # the warm-up epoch has none
        job.scheduler.step()
    stage_1 = job.model
    weights = {
        h: torch.softmax(a.detach().double(), -1).numpy()
        for h, a in (("normal", stage_1.alphas_normal), ("reduce", stage_1.alphas_reduce))
    }
    record = job.end_epoch(2)  # the end of the first stage
    assert all(len(row) == 8 and min(row) > 0 for row in record["alphas_normal"])
    assert job.stage == 1 and job.model is not stage_1 and len(job.model.cells) == 4
    for half in ("normal", "reduce"):
        assert job.edge_ops[half] == drop_ops(stage_1.edge_ops[half], weights[half], 4)
        assert job.model.edge_ops[half] == job.edge_ops[half]
    assert job.model.alphas_normal.shape == (5, 4)
    # Logged all eight ops wide, so that the stages' heatmaps line up: 0 for a dropped op.
    rows = job.model.logged_alphas()["alphas_normal"]
    assert [sum(w > 0 for w in row) for row in rows] == [4] * 5 and len(rows[0]) == 8
    assert job.best["epoch"] == 0  # the best epoch is chosen within the last stage
    job.scheduler.step()  # the loop's step after the stage: the new schedule starts at epoch 1
    assert job.optimizer.param_groups[0]["lr"] == 0.025
    job.start_epoch(3)
    rates.append(job.model.skip_dropout)
    # Their train_search.py: rate * (epochs - e - 1) / epochs in the warm-up, then
    # rate * exp(-(e - warmup) * 0.2), e counted from 0 in each stage.
    assert rates == pytest.approx([0.2 * 1 / 2, 0.2, 0.5 * 1 / 2])
    assert job.extra_state()["stage"] == 1


def test_stages_need_a_staged_supernet_and_consistent_lists(_clean_gin):
    configure(*STAGED, "search.network = @SearchNetwork")
    with pytest.raises(UserError, match="PDartsNetwork"):
        search_job.search(seed=0, build_only=True)
    gin.clear_config()
    configure(*STAGED, "progressive_stages.keep_ops = (4, 2)")
    with pytest.raises(UserError, match="keep_ops"):
        search_job.search(seed=0, build_only=True)
    gin.clear_config()
    configure(*STAGED, "progressive_stages.keep_ops = (8,)")  # DARTS's 8 ops: none dropped
    with pytest.raises(UserError, match="8 ops per edge"):
        search_job.search(seed=0, build_only=True)


def test_a_search_killed_across_a_stage_boundary_resumes_with_the_same_alphas(
    tmp_path, monkeypatch, _clean_gin
):
    configure(*STAGED)
    # Killed after the checkpoint of the first stage's last epoch (the second stage's
    # supernet, fresh: the full run's folder as it was then), then after the second stage's
    # first epoch.
    final_full, part = search_copied_at(tmp_path, monkeypatch, 2)
    full = Run(tmp_path / "full")
    with monkeypatch.context() as m:
        kill_at(m, 3)
        with pytest.raises(Killed):
            search_job.search(run=part, seed=0)
    assert epochs_of(part) == [1, 2, 3]
    final_part = search_job.search(run=part, seed=0)
    assert final_part == final_full
    assert without_seconds(read_metrics(part)) == without_seconds(read_metrics(full))
    a, b = (checkpoint.load_checkpoint(r.checkpoint_path) for r in (full, part))
    assert a["stage"] == b["stage"] == 1 and b["edge_ops"] == a["edge_ops"]
    assert_same_tensors(b["model"], a["model"])
    assert_same_state(b["architect"], a["architect"], "architect")
    assert [r["lr"] for r in read_metrics(full)] == pytest.approx([0.025, 0.0125] * 2)


def test_the_architect_clips_the_alphas_gradient():  # P-DARTS clips it at 5
    x, y = data()
    norms = {}
    for clip in (None, 1e-3):
        net = our_network()
        architect = Architect(net, lr=6e-4, weight_decay=0.0, grad_clip=clip)
        architect.step(x, y, x, y, eta=0.1)
        grads = torch.cat([a.grad.flatten() for a in net.arch_parameters()])
        norms[clip] = float(torch.linalg.vector_norm(grads))
    assert norms[None] > 1e-2 and norms[1e-3] == pytest.approx(1e-3, rel=1e-4)
