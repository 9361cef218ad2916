"""DrNAS's progressive NAS-Bench-201 search (engine/stages.py's DirichletStages, the DARTS
space's too, with NAS-Bench-201's settings) equals its authors' stage switch in float64, crosses
its stage boundary in a search and resumes exactly across it; and the NAS-Bench-201 searches
read the benchmark's split of the data (engine/data/nb201_splits.py)."""

from __future__ import annotations

import json
import math
import types

import gin
import pytest
import torch
import torch.nn.functional as F
from test_data import write_cifar10  # the real CIFAR-10 pickle format (tests/test_data.py)
from test_engine import killed_search_resumes_exactly
from test_nb201_nn import fill, inputs
from torchvision import transforms as T

from sharpdarts.engine import search_job
from sharpdarts.engine.context import make_context
from sharpdarts.engine.data import nb201_splits
from sharpdarts.engine.stages import DirichletStages
from sharpdarts.errors import UserError
from sharpdarts.face import runner
from sharpdarts.nn.nb201 import NB201SearchNetwork

# The stage switch of xiangning-chen/DrNAS @ f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0,
# 201-space/train_search_progressive.py, run on CPU in float64 (torch 1.3's id-keyed
# Optimizer.state_dict stood in for, which its net2wider.configure_optimizer reads): their
# TinyNetwork(C=8, N=1, k=4, species='dirichlet') with the weights of fill(ours) (key for key);
# SGD(lr 0.025, momentum 0.9, weight decay 3e-4) and CosineAnnealingLR(T_max=4, eta_min=0.001);
# two weight steps on inputs() (torch.manual_seed(7), then 6, before each forward), each followed
# by the schedule's step; then pruning(3), torch.manual_seed(5), wider(2), configure_optimizer
# (a new SGD) and configure_scheduler. Figures: the mask; the logits after torch.manual_seed(7)
# (row 0, sum); the momentum buffers' sum of |.|; the logits after one more weight step (seed 8)
# with seed 9; the learning rate after the next schedule step.
THEIRS = {
    "mask": [[1, 1, 0, 1, 0], [1, 0, 1, 1, 0], [1, 0, 0, 1, 1], [1, 0, 0, 1, 1], [0, 1, 0, 1, 1],
             [0, 1, 1, 1, 0]],
    "logits": ([-0.011470668041149185, -1.1851780471150306, 1.4936815012945117, 2.2495595599027,
                -0.4384430728436983, 1.731455741932737, -2.2529503483037967, -1.8407156956793491,
                0.9094203543303288, -0.09501801971530721], -0.3106073566541343),
    "momentum_abs": 255.04617543567744,
    "after_step": ([-0.26267663514539125, -1.088653172369007, 0.5015355209364639,
                    2.869555676495825, -0.8563741923413652, 1.307608822747359,
                    -2.5965727358218547, -2.0455783063033555, 0.5596747211549555,
                    -0.5186828981873852], -0.7560966907411408),
    "next_lr": 0.008029437251522862,
}  # fmt: skip
TOL = {"rel": 1e-10, "abs": 1e-12}


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _step(model, optimizer, seed: int) -> None:
    x, y = inputs()
    torch.manual_seed(seed)
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def _logits(model, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(inputs()[0])


def _switched(restart_lr: bool = True):
    """The stand-in job of ``THEIRS``'s steps, switched by ``DirichletStages.end_epoch``."""
    model = fill(NB201SearchNetwork(C=8, N=1, method="drnas", partial_channels=4)).train()
    params = types.SimpleNamespace(
        epochs=2,
        learning_rate=0.025,
        optimizer=lambda p, lr: torch.optim.SGD(p, lr, momentum=0.9, weight_decay=3e-4),
        lr_schedule=lambda o, e: torch.optim.lr_scheduler.CosineAnnealingLR(o, e, 0.001),
    )
    job = types.SimpleNamespace(model=model, params=params, ctx=make_context(), stage=0, best={})
    job.optimizer = params.optimizer(model.weights(), 0.025)
    job.scheduler = params.lr_schedule(job.optimizer, 4)
    _step(model, job.optimizer, 7)
    job.scheduler.step()
    _step(model, job.optimizer, 6)
    torch.manual_seed(5)
    stages = DirichletStages((4, 2), (3,), restart_lr=restart_lr)  # their ks, num_keeps
    stages.end_epoch(job, 1)  # not a stage's last epoch: nothing
    assert job.stage == 0 and model.mask is None
    stages.end_epoch(job, 2)
    job.scheduler.step()  # the loop's: epoch 2's step (then, restarting, the initial rate)
    return job


def test_the_stage_switch_prunes_widens_and_carries_the_optimizer_as_drnas():
    job = _switched()
    model = job.model
    assert job.stage == 1 and {cell.k for cell in model.cells if hasattr(cell, "k")} == {2}
    assert model.mask.long().tolist() == THEIRS["mask"]
    logits = _logits(model, 7)
    assert logits[0].tolist() == pytest.approx(THEIRS["logits"][0], **TOL)
    assert logits.sum().item() == pytest.approx(THEIRS["logits"][1], **TOL)
    momentum = sum(s["momentum_buffer"].abs().sum() for s in job.optimizer.state.values())
    assert momentum.item() == pytest.approx(THEIRS["momentum_abs"], **TOL)
    # Their new SGD starts at the initial rate; the recursive cosine goes on from it.
    assert job.optimizer.param_groups[0]["lr"] == 0.025
    _step(model, job.optimizer, 8)
    after = _logits(model, 9)
    assert after[0].tolist() == pytest.approx(THEIRS["after_step"][0], **TOL)
    assert after.sum().item() == pytest.approx(THEIRS["after_step"][1], **TOL)
    job.scheduler.step()
    assert job.optimizer.param_groups[0]["lr"] == pytest.approx(THEIRS["next_lr"], **TOL)


def test_without_the_restart_the_cosine_goes_on_unbroken():
    job = _switched(restart_lr=False)
    cosine = [0.001 + 0.024 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    assert job.optimizer.param_groups[0]["lr"] == pytest.approx(cosine[2], **TOL)
    job.scheduler.step()
    assert job.optimizer.param_groups[0]["lr"] == pytest.approx(cosine[3], **TOL)
    # The same switch otherwise: the same mask and (the draws of the copies alike) logits.
    assert job.model.mask.long().tolist() == THEIRS["mask"]
    logits = _logits(job.model, 7)
    assert logits.sum().item() == pytest.approx(THEIRS["logits"][1], **TOL)


def test_the_stages_refuse_inconsistent_lists_and_other_supernets(tmp_path):
    for bad in ({"keep_ops": (3, 2)}, {"partial_channels": (2, 4)}):
        with pytest.raises(UserError, match="drnas_stages"):
            DirichletStages(**{"partial_channels": (4, 2), "keep_ops": (3,), **bad})
    refusals = {
        "NB201SearchNetwork.method = 'pc_darts'": "method = 'drnas'",
        "drnas_stages.keep_ops = (5,)": "5 ops per edge",  # all five: none pruned
    }
    for binding, message in refusals.items():
        gin.clear_config()
        runner.configure("nb201/search_drnas", [binding], smoke=True, results=str(tmp_path))
        with pytest.raises(UserError, match=message):
            search_job.search(seed=0, build_only=True)


def test_a_search_killed_at_the_stage_boundary_resumes_exactly(tmp_path, monkeypatch):
    # One epoch a stage, the architecture stepped from the first: the kill after epoch 1 is
    # after the checkpoint of the second stage's (pruned, widened) supernet and optimizer.
    bindings = ["EPOCHS = 1", "search.arch_warmup_epochs = 0"]
    runner.configure("nb201/search_drnas", bindings, smoke=True, results=str(tmp_path))
    a, b = killed_search_resumes_exactly(tmp_path, monkeypatch)
    assert a["stage"] == b["stage"] == 1
    assert a["model"]["mask"].sum(1).tolist() == [3] * 6
    assert a["model"]["cells.0.edges.1<-0.3.op.1.weight"].shape[0] == 4 // 2  # K 2 of C 4
    assert torch.equal(a["optimizer"]["state"][0]["momentum_buffer"],
                       b["optimizer"]["state"][0]["momentum_buffer"])  # fmt: skip
    # The second stage starts again at the initial rate (their code; engine/stages.py).
    records = _records(tmp_path / "full")
    assert [r["lr"] for r in records] == [0.025, 0.025]
    # Its logged op weights are the pruned ones, as its genotype reads them.
    mask = a["model"]["mask"]
    assert [sum(w > 0 for w in row) for row in records[1]["alphas"]] == [3] * 6
    assert [[w > 0 for w in row] for row in records[1]["alphas"]] == mask.tolist()


def _records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["nb201/search_gdas", "nb201/search_drnas"])
def test_the_searches_read_the_benchmarks_halves_or_their_authors(name, tmp_path, monkeypatch):
    """xautodl's searches: the weights on the split's train half, the architecture on its valid
    half (augmented), the search accuracy on it unaugmented; DrNAS's code: the first and second
    half of the training set (CIFAR-10 files written here, 15 images drawn the benchmark's way)."""
    write_cifar10(tmp_path)
    monkeypatch.setattr(nb201_splits, "CIFAR10_TRAIN_IMAGES", 15)
    bindings = [f"build_datasets.root = '{tmp_path}'", "BATCH_SIZE = 2", "EPOCHS = 1"]
    bindings += ["NB201SearchNetwork.C = 4", "NB201SearchNetwork.N = 1"]
    runner.configure(name, bindings, smoke=False, results=str(tmp_path / "results"))
    job = search_job.search(seed=0, build_only=True)
    weights, arch, valid = (loader.dataset for loader in job.rng_loaders)
    train_idx, valid_idx = nb201_splits.cifar10_halves()
    if name == "nb201/search_drnas":  # the training set, all augmented, cut in the middle
        assert weights is arch is valid and len(weights) == 15
        assert list(job.rng_loaders[0].sampler.indices) == list(range(7))
        assert list(job.rng_loaders[2].sampler.indices) == list(range(7, 15))
        return
    assert (weights.indices, arch.indices, valid.indices) == (train_idx, valid_idx, valid_idx)
    assert weights.dataset is arch.dataset  # the whole training set, augmented
    augmented = [type(t) for t in arch.dataset.transform.transforms]
    plain = [type(t) for t in valid.dataset.transform.transforms]
    assert T.RandomCrop in augmented and plain == [T.ToTensor, T.Normalize]
    assert [len(loader.sampler) for loader in job.rng_loaders] == [7, 8, 8]
    labels = [job.rng_loaders[1].dataset[k][1] for k in range(8)]
    assert labels == [valid[k][1] for k in range(8)]
    gin.clear_config()
    bindings.append("search.train_portion = 0.5")
    runner.configure(name, bindings, smoke=False, results=str(tmp_path / "results"))
    with pytest.raises(UserError, match="bind only one"):
        search_job.search(seed=0, build_only=True)
