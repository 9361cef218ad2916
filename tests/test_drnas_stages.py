"""DrNAS's stages on the DARTS space: pruning, widening, the post-stage supernet, the staged search.

``drnas_stages_figures.json`` holds figures computed by the authors' code,
xiangning-chen/DrNAS @ f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0, on CPU in float64 (``.cuda()``
made a no-op), from :func:`_stage_boundary`'s inputs: ``DARTS-space/model_search.Network``
(4 channels, 3 cells of 2 nodes, stem multiplier 1, partial channels k=4, the seven ops) with
our network's weights, buffers and alphas copied in (the pools' BN key renamed: their
``AvgPoolBN.op.1`` is our ``Sequential`` index 1), after one SGD step (lr 0.1, momentum 0.9,
weight decay 3e-4; the same state copied into theirs). Then the block their
``train_search.py`` runs between the stages, from ``torch.manual_seed(7)``: ``model.pruning(4)``,
``model.wider(2)`` and ``net2wider.configure_optimizer`` (run with the optimizer's
``state_dict()['state']`` keyed by ``id(param)``, as the PyTorch of their code keyed it):

- ``mask_*`` and ``pruned_*``: the masks and the alphas after pruning;
- ``momentum_checksums``: ``sum(m.flatten() * arange(1, numel + 1))`` of each widened
  parameter's grown momentum (every widened weight, mask and momentum was also compared
  whole, and equal to the bit, when the figures were made);
- ``logits``, ``grad_*``: the widened network's logits and the alphas' gradients of the loss,
  after ``torch.manual_seed(5)`` (the same Dirichlet draws) on the batch of
  ``test_family_exact._data``;
- ``genotype``: their ``genotype()`` then (the masked softmax);
- ``second_*``: a second pruning (to 2) after the alphas are shifted (``+ linspace(-0.5, 0.5)``
  for the normal cell, ``-`` for the reduction cell): their ``prune`` with a mask.
"""

from __future__ import annotations

import json
import pathlib

import gin
import pytest
import torch
import torch.nn.functional as F
from test_engine import (  # the search job's test helpers (tests/test_engine.py)
    SEARCH,
    assert_same_state,
    configure,
    killed_search_resumes_exactly,
)
from test_family_exact import DRNAS_OPS, _close, _data, _pairs, tiny_float64_supernet

from sharpdarts.engine import search_job
from sharpdarts.engine.stages import DirichletStages
from sharpdarts.errors import UserError
from sharpdarts.nn.drnas import DrNASNetwork, grow_optimizer

FIGURES = json.loads((pathlib.Path(__file__).parent / "drnas_stages_figures.json").read_text())


def _stage_boundary():
    """Our tiny DrNAS supernet after one SGD step and the stage boundary (see the module)."""
    net = tiny_float64_supernet(
        DRNAS_OPS, network=DrNASNetwork, partial_channels=4, relaxation="dirichlet"
    )
    before = FIGURES["alphas_before"]
    _close(net.alphas_normal, before["normal"], rtol=0, atol=0)  # the figures' inputs
    x, y = _data()
    optimizer = torch.optim.SGD(net.weights(), 0.1, momentum=0.9, weight_decay=3e-4)
    torch.manual_seed(3)
    F.cross_entropy(net(x), y).backward()
    optimizer.step()
    optimizer.zero_grad()
    torch.manual_seed(7)
    net.prune(4)
    pruned = (net.alphas_normal.detach().clone(), net.alphas_reduce.detach().clone())
    growth = net.wider(2)
    grow_optimizer(optimizer, growth)
    return net, optimizer, growth, pruned


def test_the_stage_boundary_matches_the_authors_code():
    net, optimizer, growth, pruned = _stage_boundary()
    assert net.mask_normal.tolist() == FIGURES["mask_normal"]
    assert net.mask_reduce.tolist() == FIGURES["mask_reduce"]
    _close(pruned[0], FIGURES["pruned_normal"], rtol=0, atol=0)
    _close(pruned[1], FIGURES["pruned_reduce"], rtol=0, atol=0)
    # Every op widened, the pruned ones too (their randint draws follow every op in order).
    names = {param: name for name, param in net.named_parameters()}
    checksums = {}
    for param, grown in growth.items():
        assert names[param] in FIGURES["momentum_checksums"]
        momentum = optimizer.state[param]["momentum_buffer"].flatten()
        checksums[names[param]] = float((momentum * torch.arange(1, momentum.numel() + 1)).sum())
        assert param.shape[0] == 2 * grown.origin.shape[0]  # K 4 -> 2: every op twice as wide
    assert checksums == pytest.approx(FIGURES["momentum_checksums"], rel=1e-12, abs=1e-15)
    assert all(p in names for group in optimizer.param_groups for p in group["params"])

    x, y = _data()
    torch.manual_seed(5)
    logits = net(x)
    _close(logits, FIGURES["logits"])
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, net.arch_parameters(), retain_graph=True)
    grad_normal, grad_reduce = grads
    _close(grad_normal, FIGURES["grad_normal"])
    _close(grad_reduce, FIGURES["grad_reduce"])
    # The pruned ops no longer run: their weights get no gradient (as their ``w == 0`` test).
    loss.backward()
    mixed = net.cells[0]._ops[0]
    for k, kept in enumerate(net.mask_normal[0].tolist()):
        grads = [p.grad for p in mixed._ops[k].parameters()]
        assert not grads or all((g is not None) == kept for g in grads)

    genotype = net.genotype(skip_primitive=None)
    assert _pairs(genotype.normal) == FIGURES["genotype"]["normal"]
    assert _pairs(genotype.reduce) == FIGURES["genotype"]["reduce"]
    with torch.no_grad():
        net.alphas_normal.add_(torch.linspace(-0.5, 0.5, 35).view(5, 7))
        net.alphas_reduce.sub_(torch.linspace(-0.5, 0.5, 35).view(5, 7))
    net.prune(2)
    assert net.mask_normal.tolist() == FIGURES["second_mask_normal"]
    assert net.mask_reduce.tolist() == FIGURES["second_mask_reduce"]
    genotype = net.genotype(skip_primitive=None)
    assert _pairs(genotype.normal) == FIGURES["second_genotype"]["normal"]
    assert _pairs(genotype.reduce) == FIGURES["second_genotype"]["reduce"]


STAGED = [
    *SEARCH,
    "search.network = @DrNASNetwork",
    "SearchNetwork.C = 4",
    "SearchNetwork.layers = 3",
    "SearchNetwork.steps = 2",
    "SearchNetwork.multiplier = 2",
    f"SearchNetwork.primitives = {DRNAS_OPS}",
    "SearchNetwork.op_dict = 'DARTS_OPS'",
    "SearchNetwork.relaxation = 'dirichlet'",
    "search.skip_primitive = None",
    "search.stages = @drnas_stages()",
    "drnas_stages.partial_channels = (4, 2)",
    "drnas_stages.keep_ops = (3,)",
    "search.epochs = 1",
    "search.lr_schedule = @cosine_annealing",
    "cosine_annealing.min_lr = 0.0",
    "Architect.order = 1",
    "collapse_metrics.every = 0",  # no Hessian: the stages are under test (and time is short)
]


def test_a_drnas_search_killed_at_the_stage_boundary_resumes_exactly(tmp_path, monkeypatch):
    # One epoch a stage: the kill after epoch 1 lands on the checkpoint of the pruned, widened
    # supernet, with its grown momentum and its one lr schedule.
    configure(*STAGED)
    a, b = killed_search_resumes_exactly(tmp_path, monkeypatch)
    assert a["stage"] == b["stage"] == 1
    assert a["model"]["mask_normal"].sum(1).tolist() == [3] * 5
    assert_same_state(b["optimizer"], a["optimizer"], "optimizer")
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").open()]
    # One schedule over both stages' epochs, restarted at the boundary (their code's
    # behaviour, the default); the logged weights are 0 off the mask in stage 2.
    assert [r["lr"] for r in records] == pytest.approx([0.025, 0.025])
    assert sum(w == 0.0 for w in records[1]["alphas_normal"][0]) == 4
    assert sum(w == 0.0 for w in records[0]["alphas_normal"][0]) == 0


def test_restart_lr_follows_their_code_by_default_and_the_one_cosine_without():
    # Their loop (train_search.py: a new SGD at lr 0.025, net2wider.configure_scheduler)
    # with stages of 2 and 2 epochs, run with torch's recursive CosineAnnealingLR (PyTorch
    # 1.4 and later), gave these learning rates (restart_lr=True, the default); False runs
    # the one cosine their loading of the schedule's state suggests.
    theirs = [0.025, 0.021338834764831845, 0.025, 0.0073223304703363135]
    meant = [0.025, 0.021338834764831845, 0.0125, 0.0036611652351681568]
    for restart, expected in ((True, theirs), (False, meant)):
        gin.clear_config()
        configure(*STAGED, "search.epochs = 2", f"drnas_stages.restart_lr = {restart}")
        job = search_job.search(seed=0, build_only=True)
        lrs = []
        for epoch in range(1, 5):
            lrs.append(job.optimizer.param_groups[0]["lr"])
            job.start_epoch(epoch)
            job.optimizer.step()  # no gradients: nothing moves, but the order is the loop's
            if epoch in (2, 4):
                job.params.stages.end_epoch(job, epoch)
            job.scheduler.step()
        assert lrs == pytest.approx(expected, rel=1e-12)
        assert job.stage == 1


def test_drnas_stages_refuse_what_they_cannot_run():
    for partial, keep in (((4, 2), ()), ((2, 4), (3,)), ((4, 2, 1), (3, 3)), ((4, 2), (0,))):
        with pytest.raises(UserError, match="drnas_stages is refused"):
            DirichletStages(partial, keep)
    refusals = {
        "search.network = @SearchNetwork": "@DrNASNetwork",  # cannot be pruned or widened
        "drnas_stages.keep_ops = (7,)": "must keep fewer",  # seven ops: none pruned
        # sharpDARTS' choke op has a fixed middle width, which DrNAS's widening cannot grow.
        "SearchNetwork.op_dict = 'OPS'\nSearchNetwork.primitives = ['choke_conv_3x3', "
        "'skip_connect']\ndrnas_stages.keep_ops = (1,)": "SharpSepConv has a 1 -> 32 conv",
    }
    for binding, message in refusals.items():
        gin.clear_config()
        configure(*STAGED, binding)
        with pytest.raises(UserError, match=message):
            search_job.search(seed=0, build_only=True)
