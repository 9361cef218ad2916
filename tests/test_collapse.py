"""engine/collapse.py: the Hessian's dominant eigenvalue, skip counts, op entropies, DARTS-ES, and
the search that records them (plus face/plots/collapse.py, drawn from such a search).

The exactness figures were computed by the authors' code of R-DARTS (automl/RobustDARTS, commit
3dec3fedaa1770614bbfd4b98f5299d946ea7ac6) in float64 on CPU: ``Analyzer.compute_Hw`` and
``max(numpy.linalg.eigvals(H))`` of ``src/search/analyze.py`` and ``train_search.py`` on the
tiny network below (their Hessian code takes any model with ``_loss`` and
``arch_parameters()``), and ``EVLocalAvg`` of ``src/utils.py`` driven as ``train_search.py``
drives it, on the eigenvalue sequences below.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from sharpdarts.core import genotypes
from sharpdarts.engine import checkpoint, collapse, search_job
from sharpdarts.errors import UserError
from sharpdarts.nn.models import SearchNetwork
from sharpdarts.store import run as run_lib

ROBUSTDARTS = "automl/RobustDARTS@3dec3fedaa1770614bbfd4b98f5299d946ea7ac6"


def tiny_network(primitives: str = "DARTS_PRIMITIVES", seed: int = 1) -> SearchNetwork:
    """A 3-cell, 1-node supernet in float64, every parameter drawn from ``seed``."""
    torch.manual_seed(0)
    model = SearchNetwork(
        C=2, num_classes=3, layers=3, steps=1, multiplier=1, primitives=primitives
    ).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    return x, torch.tensor([0, 1, 2, 1])


def full_hessian(model, x, y, weight_decay: float) -> np.ndarray:
    """The Hessian of the loss (+ weight_decay/2 |alpha|^2) over the flattened alphas, by
    torch.autograd.functional.hessian (train mode, buffers copied)."""
    arch = model.arch_parameters()
    shapes = [a.shape for a in arch]
    names = {id(p): n for n, p in model.named_parameters()}
    fixed = {n: p.detach() for n, p in model.named_parameters()}

    def loss(flat):
        tensors, start = dict(fixed), 0
        for a, shape in zip(arch, shapes):
            tensors[names[id(a)]] = flat[start : start + a.numel()].view(shape)
            start += a.numel()
        tensors.update({n: b.clone() for n, b in model.named_buffers()})
        out = nn.functional.cross_entropy(functional_call(model, tensors, (x,)), y)
        return out + weight_decay / 2 * (flat**2).sum()

    flat = torch.cat([a.detach().reshape(-1) for a in arch])
    return torch.autograd.functional.hessian(loss, flat).numpy()


def our_eigenvalue(model, x, y, weight_decay, iterations=500, tolerance=1e-9):
    model.train()
    hvp, alphas = collapse.hessian_vector_product(
        model, nn.CrossEntropyLoss(), [(x, y)], weight_decay
    )
    generator = torch.Generator().manual_seed(0)
    return collapse.dominant_eigenvalue(hvp, alphas, iterations, tolerance, generator)


# ---- The eigenvalue ------------------------------------------------------------------------------
def test_power_iteration_gives_the_largest_eigenvalue_of_the_full_hessian():
    model = tiny_network()
    x, y = tiny_batch()
    hessian = full_hessian(model, x, y, 1e-3)
    assert hessian.shape == (2 * 2 * 8, 2 * 2 * 8)  # two cells, 2 edges, 8 ops
    expected = np.linalg.eigvalsh(hessian).max()
    value, used = our_eigenvalue(model, x, y, 1e-3)
    assert value == pytest.approx(expected, rel=1e-8)
    assert 1 < used < 500
    # Without the architect's weight decay every eigenvalue is 1e-3 lower.
    assert our_eigenvalue(model, x, y, 0.0)[0] == pytest.approx(expected - 1e-3, rel=1e-8)


def test_a_negative_dominant_eigenvalue_is_shifted_away():
    """Power iteration meets -5 first; the largest eigenvalue (2) is what R-DARTS reports."""
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    matrix = q @ torch.diag(torch.tensor([-5.0, 2.0, 1.0, 0.5, -1.0, 0.0])) @ q.T

    def hvp(v):
        return [matrix @ v[0]]

    gen = torch.Generator().manual_seed(0)
    value, used = collapse.dominant_eigenvalue(hvp, [torch.zeros(6)], 2000, 1e-12, gen)
    assert value == pytest.approx(2.0, rel=1e-6)
    gen = torch.Generator().manual_seed(0)
    assert collapse.power_iteration(hvp, [torch.zeros(6)], 2000, 1e-12, gen)[0] == pytest.approx(
        -5.0
    )


# R-DARTS's max(eigvals(H)) of compute_Hw (arch_weight_decay 1e-3) on tiny_network(*key) and
# tiny_batch(), in train mode (ROBUSTDARTS; see the module docstring).
ROBUSTDARTS_EIGENVALUES = {
    ("DARTS_PRIMITIVES", 1): 8.305884376787814,
    (
        "PRIMITIVES",
        2,
    ): 0.6831329145755918,  # its smallest eigenvalue, about -2.55, is larger in magnitude
}


@pytest.mark.parametrize("key", sorted(ROBUSTDARTS_EIGENVALUES))
def test_the_eigenvalue_is_robustdarts_one(key):
    model = tiny_network(*key)
    x, y = tiny_batch()
    value, _ = our_eigenvalue(model, x, y, 1e-3, tolerance=1e-8)
    # R-DARTS forms the whole Hessian; the power iteration stops within about 1e-7 of it (the
    # shifted iteration of the second network converges slowly: ratio 0.91 per product).
    assert value == pytest.approx(ROBUSTDARTS_EIGENVALUES[key], rel=1e-6)


# ---- Skip connections and entropies -------------------------------------------------------------
def test_skip_counts_and_entropies():
    g = genotypes.to_dict(genotypes.get("DARTS_V2"))
    assert collapse.skip_connections(g) == {
        "skip_connections_normal": sum(op == "skip_connect" for op, _ in g["normal"]),
        "skip_connections_reduce": sum(op == "skip_connect" for op, _ in g["reduce"]),
    }
    assert collapse.skip_connections({"layout": "path", "normal": []}) == {}
    model = tiny_network()
    with torch.no_grad():
        model.alphas_normal.zero_()  # uniform weights: log(8) nats on each edge
        model.alphas_reduce.fill_(-1e4)
        model.alphas_reduce[:, 3] = 0.0  # one op takes all: 0 nats
    got = collapse.op_entropies(model)
    assert got["op_entropy_normal"] == pytest.approx([math.log(8)] * 2)
    assert got["op_entropy_reduce"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert got["op_entropy_mean"] == pytest.approx(math.log(8) / 2)


# ---- DARTS-ES ----------------------------------------------------------------------------------
class FakeJob:
    epochs = 50
    network = nn.Identity()  # no alphas: no entropies
    last_valid_acc = 50.0


def drive(rule, every, epochs, eigenvalue_at) -> tuple[int | None, int]:
    """Runs a tracker's measurements as a search would; returns (decided epoch, kept epoch)."""
    settings = collapse.CollapseSettings(every=every, early_stop=rule)
    tracker = collapse.CollapseTracker([], [], 1, 0, settings)
    measured = []
    tracker.eigenvalue = lambda job, epoch: (eigenvalue_at(len(measured)), 1)
    job = FakeJob()
    job.epochs = epochs
    for epoch in range(1, epochs + 1):
        tracker.measure(job, epoch, {"layout": "path", "epoch": epoch})
        if tracker.due(epoch, epochs):
            measured.append(epoch)
        try:
            tracker.check_stopped()
        except collapse.SearchStopped:
            return epoch, tracker.final()["genotype"]["epoch"]
    return None, epochs


# R-DARTS's EVLocalAvg (ROBUSTDARTS) on these sequences of the k-th measured eigenvalue stopped
# at its 0-based epochs (30, kept 18), (never), (6, kept 3): ours are one more.
def test_darts_es_stops_where_robustdarts_does():
    def rising(k):
        return 0.1 + 0.01 * k if k < 14 else 0.24 * 1.25 ** (k - 13)

    assert drive(collapse.darts_es(), 2, 50, rising) == (31, 19)
    assert drive(collapse.darts_es(), 2, 50, lambda k: 0.1 + 0.01 * k) == (None, 50)

    def dip(k):
        return [0.5, 0.3, 0.2][k] if k < 3 else 0.2 + 0.05 * (k - 2)

    rule = collapse.darts_es(window=3, delta=2, factor=1.2, start_epoch=4)
    assert drive(rule, 1, 30, dip) == (7, 4)


def test_early_stop_without_eigenvalues_is_a_user_error():
    with pytest.raises(UserError, match="needs the eigenvalue"):
        collapse.collapse_metrics(every=0, early_stop=collapse.darts_es())


# ---- In a search -------------------------------------------------------------------------------
SEARCH = [
    "make_context.device = 'cpu'",
    "cosine_power_annealing.warmup_epochs = 1",
    "build_datasets.name = 'synthetic'",
    "build_datasets.synthetic_shape = (3, 8, 8)",
    "build_datasets.synthetic_size = (8, 4)",
    "build_datasets.synthetic_classes = 3",
    "search.batch_size = 4",
    "search.show_progress = False",
    "search.network = @SearchNetwork",
    "SearchNetwork.C = 2",
    "SearchNetwork.layers = 3",
    "SearchNetwork.steps = 1",
    "SearchNetwork.multiplier = 1",
    "SearchNetwork.primitives = 'DARTS_PRIMITIVES'",
    "collapse_metrics.iterations = 3",
]


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def make_run(path: Path) -> run_lib.Run:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"status": "running", "experiment": path.name}))
    return run_lib.Run(path)


def metrics(run: run_lib.Run) -> list[dict]:
    return [json.loads(line) for line in run.metrics_path.read_text().splitlines()]


COLLAPSE_KEYS = {
    "hessian_eigenvalue",
    "hessian_iterations",
    "skip_connections_normal",
    "skip_connections_reduce",
    "op_entropy_normal",
    "op_entropy_reduce",
    "op_entropy_mean",
}


def test_measuring_changes_nothing_else_in_the_search(tmp_path):
    """Every epoch measured vs none: the same weights, alphas, buffers and metrics (two
    epochs: the second trains after a measurement, and ends measured)."""
    gin.parse_config([*SEARCH, "search.epochs = 2", "collapse_metrics.every = 1"])
    measured = make_run(tmp_path / "measured")
    search_job.search(run=measured, seed=0)
    gin.parse_config(["collapse_metrics.every = 0"])
    plain = make_run(tmp_path / "plain")
    search_job.search(run=plain, seed=0)
    a, b = (checkpoint.load_checkpoint(r.checkpoint_path) for r in (measured, plain))
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for with_it, without in zip(metrics(measured), metrics(plain)):
        assert with_it["hessian_eigenvalue"] > 0 and without["hessian_eigenvalue"] is None
        for key in set(with_it) - COLLAPSE_KEYS - {"seconds"}:
            assert with_it[key] == without[key], key
        assert with_it["op_entropy_mean"] == without["op_entropy_mean"]


def test_darts_es_stops_a_search_keeps_its_genotype_and_resumes(tmp_path, monkeypatch):
    """A rise of the eigenvalue stops the search after the epoch that shows it; the genotype
    of the epoch the rule points to is the run's; a kill after that epoch resumes to the same
    end; the collapse plot draws the run."""
    rises = {1: 1.0, 2: 1.0, 3: 1.0, 4: 5.0}  # epoch -> eigenvalue
    monkeypatch.setattr(
        collapse.CollapseTracker, "eigenvalue", lambda self, job, epoch: (rises.get(epoch, 9.0), 1)
    )
    gin.parse_config(
        [
            *SEARCH,
            "search.epochs = 6",
            "collapse_metrics.every = 1",
            "collapse_metrics.early_stop = @darts_es()",
            "darts_es.window = 1",
            "darts_es.delta = 2",
            "darts_es.start_epoch = 1",
        ]
    )
    full = make_run(tmp_path / "full")
    # The run killed after epoch 4's checkpoint is this one's folder as it was then: all that
    # a kill there leaves (a seeded search writes the same files each time).
    part_path = tmp_path / "part"
    real = checkpoint.save_checkpoint

    def save_then_copy(path, state):
        real(path, state)
        if state["epoch"] == 4:
            shutil.copytree(full.path, part_path)

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save_checkpoint", save_then_copy)
        final = search_job.search(run=full, seed=0)
    records = metrics(full)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]  # 5 / 1 > 1.3 at epoch 4, from 2
    assert final["early_stop_epoch"] == 4 and final["genotype_epoch"] == 2
    assert final["genotype"] == records[1]["genotype"]
    assert final["valid_acc"] == records[1]["valid_acc"]  # as R-DARTS reports it

    part = run_lib.Run(part_path)  # read back, as a new process would
    assert [r["epoch"] for r in metrics(part)] == [1, 2, 3, 4]
    assert search_job.search(run=part, seed=0) == final
    assert [r["epoch"] for r in metrics(part)] == [1, 2, 3, 4]

    from sharpdarts.face import cli
    from sharpdarts.face.plots import collapse as plot

    info = json.loads((tmp_path / "full" / "run.json").read_text())
    info["final"] = final
    (tmp_path / "full" / "run.json").write_text(json.dumps(info))
    fig = plot.make_collapse_figure([tmp_path / "full"])
    eigen, skips, entropy = fig.axes
    assert list(eigen.lines[0].get_ydata()) == [1.0, 1.0, 1.0, 5.0]
    assert [line.get_label() for line in skips.lines[:2]] == ["full (normal)", "full (reduce)"]
    assert list(entropy.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert eigen.lines[-1].get_xdata()[0] == 2  # the kept epoch, marked
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml")):
        out = tmp_path / f"collapse{suffix}"
        assert cli.main(["plot", "collapse", str(tmp_path / "full"), "--out", str(out)]) == 0
        assert out.read_bytes().startswith(magic)
    with pytest.raises(UserError, match="None of the runs recorded collapse"):
        plot.make_collapse_figure([_bare_run(tmp_path)])


def _bare_run(tmp_path: Path) -> Path:
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"status": "completed"}))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 1.0}) + "\n")
    return folder
