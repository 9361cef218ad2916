"""RSPS (random search with weight sharing) on NAS-Bench-201 equals the NAS-Bench-201 authors'
code (figures pinned below); its search draws only their stream of cells, records each epoch's
selected cell, joins the benchmark table's RSPS row and resumes exactly after a kill."""

from __future__ import annotations

import contextlib
import io
import random

import gin
import pytest
import torch
import torch.nn.functional as F
from test_engine import killed_search_resumes_exactly, make_run, read_metrics
from test_nb201_nn import fill, inputs

from sharpdarts.core.nb201_arch import OPS, parse_arch
from sharpdarts.core.nb201_search import random_cell
from sharpdarts.engine import search_job
from sharpdarts.engine.architect import Architect
from sharpdarts.engine.rsps import best_of_random_cells
from sharpdarts.errors import UserError
from sharpdarts.face import cli, runner
from sharpdarts.nn.nb201 import NB201SearchNetwork, load_original_state_dict

# Figures of the authors' code: github.com/D-X-Y/AutoDL-Projects at commit
# f46486e21b71ae6459a700be720d7648b5429569, xautodl's TinyNetworkRANDOM(C=4, N=1, max_nodes=4,
# num_classes=10, the five ops, affine=False, track_running_stats=True) in float64 on CPU, with
# the weights of fill(ours) (tests/test_nb201_nn.py) loaded key for key (strict: its state
# dict has our 219 keys). Per seed: random.seed(seed), random_genotype(True), a train-mode
# forward on inputs(), cross-entropy, the gradient of every parameter (allow_unused: the ops
# not drawn have none); then random_genotype(True) again and an eval-mode forward. The
# projection is sum(grad * u) over the parameters by sorted name, u = 2 * rand - 1 of each
# parameter's shape from torch.Generator().manual_seed(5), drawn for every parameter.
FORWARDS = {
    2: (
        "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_1x1~2|",
        [[-1.0660928260966487, -0.025946479898137365, 1.2599699862024916, 1.0224434914746177,
          2.1481759191445757, 1.4138530049026286, -2.5869267981478545, -1.2606158938972976,
          0.698939054703611, -1.1258621603311179],
         [-0.7810339768955621, -1.3888725372111863, 0.6529284701074227, 0.9495981252911301,
          1.4636593676813923, 0.7137575979823789, -0.5988289461547007, -1.5081643147549897,
          1.0382776610267253, -0.4206981691647666]],
        2.4868127030348384,
        (1.739436313186832, 3.083236442795547, 33),
        "|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|avg_pool_3x3~0|none~1|avg_pool_3x3~2|",
        [[-9.401562519661727, -36.39593389994247, -35.82005685066919, -27.060148145989846,
          13.349975959823574, 4.972782431963936, 6.296557002315783, 30.703576620966142,
          20.32226297869205, -4.1576435018777005],
         [-8.91368205726942, -30.551899276325706, -32.1490026143187, -24.050998040091745,
          11.067386283203572, 10.006603990166319, 2.389873884517283, 28.314790913091397,
          14.504579462206433, -2.1763287212356355]],
    ),
    9: (
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
        [[-0.6090373778660864, -1.0812362357369032, 0.8039030747130393, 0.8701058695139232,
          1.5024161238205993, 0.40395066287839093, -1.0651697766545298, -1.2088591600909335,
          1.0862677435762533, -0.7905469386254338],
         [-1.1634626054141068, -0.22815932120472104, 1.1987138645707385, 1.1782856291435715,
          2.093367293223001, 1.6983362561186617, -2.0655823911531788, -1.6878139671188368,
          0.5286498114832772, -0.8251264968442849]],
        2.90632239662641,
        (-1.2077680343003747, 7.464303260033747, 39),
        "|none~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|",
        [[-56.73701613730036, -93.38962388531294, -120.37721867331474, -54.99106914637871,
          95.7797677435141, 38.3251131714226, -42.97932629686198, 69.0566071324429,
          54.55728493257755, -40.2623916384739],
         [-36.4894354192896, -101.2540724973321, -99.6529930209197, -41.78314431323978,
          42.440367800863626, 32.1468280476488, 7.971205878651304, 43.995348659260436,
          42.66429944068856, -11.066063068883498]],
    ),
}  # fmt: skip
# random.seed(0), then six random_genotype(True) of the same network (same commit).
STREAM = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|",
    "|nor_conv_1x1~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
    "|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|",
]  # fmt: skip
# exps/NAS-Bench-201-algos/RANDOM-NAS.py's search_find_best(batches, DataParallel(their network
# as above), 7) after random.seed(4), on three batches of four 8x8 images (_held_out()): each
# cell's top-1 (percent; its np.argmax's input) and the cell it returned. Their
# obtain_accuracy's `correct[:k].view(-1)` fails on torch 2.x's non-contiguous slice for k = 5;
# it ran with reshape (the same values).
SCORES = [0.0, 0.0, 25.0, 25.0, 0.0, 25.0, 25.0]
SELECTED = "|none~0|+|skip_connect~0|avg_pool_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_1x1~2|"
TOL = {"rel": 1e-10, "abs": 1e-12}


def _rsps() -> NB201SearchNetwork:
    return fill(NB201SearchNetwork(C=4, N=1, method="rsps"))


def _projection(model) -> tuple[float, float, int]:
    generator = torch.Generator().manual_seed(5)
    total, norm2, count = 0.0, 0.0, 0
    params = dict(model.named_parameters())
    for name in sorted(params):
        p = params[name]
        u = 2 * torch.rand(p.shape, generator=generator, dtype=torch.float64) - 1
        if p.grad is not None:
            total += float((p.grad * u).sum())
            norm2 += float((p.grad * p.grad).sum())
            count += 1
    return total, norm2, count


def _held_out() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(2)
    return [
        (
            2 * torch.rand(4, 3, 8, 8, generator=generator, dtype=torch.float64) - 1,
            torch.randint(0, 10, (4,), generator=generator),
        )
        for _ in range(3)
    ]


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("seed", sorted(FORWARDS))
def test_rsps_supernet_equals_xautodl_tiny_network_random(seed):
    arch, logits, loss, grads, eval_arch, eval_logits = FORWARDS[seed]
    model = _rsps().train()
    x, y = inputs()
    random.seed(seed)
    out = model(x)
    assert model.sampled == arch
    assert out.flatten().tolist() == pytest.approx(sum(logits, []), **TOL)
    ours = F.cross_entropy(out, y)
    assert ours.item() == pytest.approx(loss, **TOL)
    ours.backward()
    total, norm2, count = _projection(model)
    assert (total, norm2) == pytest.approx(grads[:2], **TOL) and count == grads[2]
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert model.sampled == eval_arch
    assert out.flatten().tolist() == pytest.approx(sum(eval_logits, []), **TOL)


def test_each_forward_draws_the_next_cell_of_their_stream():
    model = NB201SearchNetwork(C=4, N=1, method="rsps")
    random.seed(0)
    for arch in STREAM:
        weights, choice = model.op_weights()
        assert model.sampled == arch
        assert choice == [OPS.index(op) for op in parse_arch(arch)]
        assert weights.argmax(-1).tolist() == choice and weights.sum().item() == 6
    random.seed(0)
    assert [random_cell(OPS, random) for _ in STREAM] == STREAM


def test_the_selection_scores_and_picks_as_theirs():
    model = _rsps()
    random.seed(4)
    cell, score, scored = best_of_random_cells(model, _held_out(), 7)
    assert [s for _, s in scored] == SCORES
    assert (cell, score) == (SELECTED, 25.0) and cell == scored[2][0]  # the first of equals
    assert not model.training


def test_rsps_has_no_architecture_to_train_or_read():
    model = _rsps()
    assert model.alphas is None and model.arch_parameters() == []
    assert len(model.weights()) == len(list(model.parameters()))
    with pytest.raises(UserError, match="random cells on held-out data"):
        model.genotype()
    # xautodl's TinyNetworkRANDOM has this state dict (219 keys at C=4, N=1; the oracle loaded
    # ours strictly), so theirs loads into ours.
    other = NB201SearchNetwork(C=4, N=1, method="rsps").double()
    load_original_state_dict(other, {"search_model": model.state_dict()})
    assert len(model.state_dict()) == 219
    architect = Architect(model)
    x, y = inputs()
    assert architect.step(x, y, x, y, eta=0.1) is None and model.sampled is None
    assert architect.state_dict() == {"optimizer": None}
    with pytest.raises(UserError, match="RSPS supernet"):
        best_of_random_cells(NB201SearchNetwork(C=4, N=1), _held_out(), 1)


def test_the_search_draws_their_stream_and_records_each_selection(tmp_path):
    runner.configure(
        "nb201/search_rsps", ["random_selection.num = 5"], smoke=True, results=str(tmp_path)
    )
    job = search_job.search(seed=0, build_only=True)
    assert job.architect.optimizer is None and job.model.method == "rsps"
    held_out = job.params.selection.loader(job)  # the held-out half, in batches of 512
    assert held_out.batch_size == 512 and held_out is job.params.selection.loader(job)
    assert sorted(held_out.sampler.indices) == sorted(job.valid_loader.sampler.indices)
    # The split's valid half with the test transform (their valid_loader), apart from the
    # weights' train half: Subsets of the same training images, disjoint.
    valid, train = held_out.dataset, job.train_loader.dataset
    assert valid is job.valid_loader.dataset and valid.dataset is not train.dataset
    assert not set(valid.indices) & set(train.indices)
    assert len(valid.indices) + len(train.indices) == len(train.dataset)
    cells = []
    draw = job.model.op_weights

    def recorded():
        out = draw()
        cells.append(job.model.sampled)
        return out

    job.model.op_weights = recorded
    run = make_run(tmp_path / "run")
    final = job.fit(run)
    # Per epoch one training step and one validation batch (8 images each, batch 8), then five
    # selected cells; five more at the end. Nothing else draws from Python's generator.
    assert len(cells) == 2 * (1 + 1 + 5) + 5
    rng = random.Random(0)
    assert cells == [random_cell(OPS, rng) for _ in cells]
    records = read_metrics(run)
    assert [r["genotype"] in cells[2 + 7 * i : 7 * (i + 1)] for i, r in enumerate(records)] == [
        True,
        True,
    ]
    assert all(0 <= r["selection_acc"] <= 100 and "alphas" not in r for r in records)
    assert final["genotype"] in cells[-5:] and 0 <= final["selection_acc"] <= 100


def test_a_killed_rsps_search_resumes_exactly(tmp_path, monkeypatch):
    runner.configure(
        "nb201/search_rsps", ["random_selection.num = 3"], smoke=True, results=str(tmp_path)
    )
    a, b = killed_search_resumes_exactly(tmp_path, monkeypatch)
    assert a["rng"]["python"] == b["rng"]["python"]  # the stream of cells goes on as there


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
def test_rsps_has_its_authors_settings(tmp_path):
    # xautodl (commit above): RANDOM-NAS.sh (C 16, N 5, BN tracked, --select_num 100),
    # RANDOM.config (250 epochs, batch 64, test batch 512, SGD 0.025 momentum 0.9 nesterov
    # weight decay 5e-4, per-epoch cosine to 0.001), RANDOM-NAS.py (clip 5).
    runner.configure("nb201/search_rsps", [], smoke=True, results=str(tmp_path))
    job = search_job.search(seed=0, build_only=True, epochs=250)
    assert job.params.selection.num == 100 and job.params.selection.batch_size == 512
    # get_nas_search_loaders' data: the benchmark's cifar10-valid halves, not a train_portion.
    assert gin.query_parameter("build_datasets.split") == "nb201"
    assert job.params.train_portion is None and job.params.grad_clip == 5.0
    lastact = job.model.lastact[0]
    assert lastact.affine and lastact.track_running_stats  # TinyNetworkRANDOM's
    group = job.optimizer.param_groups[0]
    sgd = (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"])
    assert sgd == (0.025, 0.9, True, 5e-4)
    lrs = []
    for _ in range(250):
        lrs.append(job.optimizer.param_groups[0]["lr"])
        job.scheduler.step()
    assert lrs[0] == 0.025 and lrs[125] == pytest.approx(0.013)
    gin.clear_config()
    runner.configure("nb201/search_rsps", [], smoke=False, results=str(tmp_path))
    assert gin.query_parameter("%EPOCHS") == 250 and gin.query_parameter("%BATCH_SIZE") == 64
    assert gin.query_parameter("NB201SearchNetwork.C") == 16
    assert gin.query_parameter("NB201SearchNetwork.N") == 5


def test_sharpdarts_list_puts_the_search_on_the_rsps_row():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["list"]) == 0
    (line,) = [x for x in out.getvalue().splitlines() if x.startswith("nb201/search_rsps ")]
    assert line.split()[1:3] == ["nb201", "RSPS"]


def test_an_eigenvalue_of_no_alphas_is_a_user_error(tmp_path):
    bindings = ["random_selection.num = 1", "collapse_metrics.every = 1", "EPOCHS = 1"]
    runner.configure("nb201/search_rsps", bindings, smoke=True, results=str(tmp_path))
    with pytest.raises(UserError, match="collapse_metrics.every = 0"):
        search_job.search(seed=0)
