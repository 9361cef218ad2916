"""Language-model jobs in the one loop: the ASGD switch, exact resume across it (kill and
re-run), perplexity, and the recurrent architect's steps."""

import functools
import json
import math

import numpy as np
import pytest
import torch
from killing import kill_after_epoch  # tests/killing.py

from sharpdarts.engine import checkpoint
from sharpdarts.engine.data import corpus as corpus_lib
from sharpdarts.engine.data.bundle import build_datasets
from sharpdarts.engine.lm_architect import RecurrentArchitect
from sharpdarts.engine.lm_jobs import evaluate_ppl, lm_train
from sharpdarts.engine.lm_search import lm_search
from sharpdarts.nn.models import RNNModel, RNNSearchModel

NET = functools.partial(RNNModel, ninp=16, nhid=16, nhidlast=16)


@pytest.fixture(scope="module")
def bundle():
    return build_datasets(name="synthetic_text")


def test_switches_to_asgd_on_the_non_monotonic_trigger_and_validates_the_average(bundle):
    job = lm_train(
        data=bundle,
        epochs=5,
        batch_size=8,
        network=NET,
        nonmono=1,
        show_progress=False,
        build_only=True,
        seed=1267,
    )
    final = job.fit(None)
    hist = job.val_history
    switch = final["asgd_epoch"]
    assert switch == 3  # this seed's validation worsens at epoch 3: hist[2] > min(hist[:1])
    assert hist[2] > min(hist[:1]) and not hist[1] > min(hist[:0] or [math.inf])
    assert len(hist) == switch  # once averaging, the history stops growing, as the original's
    assert isinstance(job.optimizer, torch.optim.ASGD)
    assert job.optimizer.param_groups[0]["lr"] == 20.0 and job.optimizer.param_groups[0]["t0"] == 0
    assert math.isfinite(final["test_ppl"]) and final["test_ppl"] > 1
    # The test perplexity is the best validation epoch's weights' (the original tests model.pt).
    job.model.load_state_dict(job.best_model)
    assert evaluate_ppl(job.model, job.test_data)["ppl"] == pytest.approx(final["test_ppl"])


def test_evaluation_divides_by_rows_as_the_original():
    model = NET(ntoken=50)
    source = corpus_lib.batchify(torch.randint(0, 50, (7 * 3 + 1,)), 3)  # 7 rows
    model.eval()
    hidden, total = model.init_hidden(3), 0.0
    with torch.no_grad():
        for i in range(0, 6, 4):
            x, y = corpus_lib.get_batch(source, i, 4)
            lp, hidden = model(x, hidden)
            total += torch.nn.functional.nll_loss(lp.view(-1, 50), y).item() * len(x)
    assert evaluate_ppl(model, source, bptt=4)["loss"] == pytest.approx(total / 7)


@pytest.mark.parametrize("order", [1, 2])
def test_architect_steps_only_the_alphas_and_carries_the_valid_hidden(order):
    torch.manual_seed(0)
    model = RNNSearchModel(30, 6, 6, 6)
    arch = RecurrentArchitect(model, order=order)
    before = {k: v.clone() for k, v in model.state_dict().items() if "bn." not in k}
    x, y = torch.randint(0, 30, (5, 4)), torch.randint(0, 30, (20,))
    h = model.init_hidden(4)
    hidden_next = arch.step(h, x, y, h, x, y, eta=20.0)
    after = model.state_dict()
    assert not torch.equal(after["alphas"], before["alphas"])
    assert all(torch.equal(after[k], v) for k, v in before.items() if k != "alphas")
    assert hidden_next[0].shape == (1, 4, 6) and not hidden_next[0].requires_grad
    assert hidden_next[0].abs().sum() > 0


def test_unrolled_gradient_matches_finite_differences_of_the_original_formula():
    """With dropout off and BN in eval mode, dalpha - eta*c*HVP equals the original's terms
    computed by hand with a copy of the model (the original's way)."""
    torch.manual_seed(1)
    kw = dict(dropout=0, dropouth=0, dropoutx=0, dropouti=0, dropoute=0)
    model = RNNSearchModel(20, 5, 5, 5, **kw).double()
    model.eval()  # BN on running stats, so every forward is the same function
    arch = RecurrentArchitect(model, order=2, network_weight_decay=1e-3)
    x, y = torch.randint(0, 20, (4, 3)), torch.randint(0, 20, (12,))
    xv, yv = torch.randint(0, 20, (4, 3)), torch.randint(0, 20, (12,))
    h = [torch.zeros(1, 3, 5, dtype=torch.float64)]
    eta = 0.5
    [got], _ = arch._unrolled(h, x, y, h, xv, yv, eta)

    names = arch.names
    params = dict(model.named_parameters())
    weights = [params[n] for n in names]
    loss = torch.nn.functional.nll_loss(model(x, h)[0].view(-1, 20), y)
    grads = torch.autograd.grad(loss, weights)
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    coef = 0.25 / (norm + 1e-6)
    g_used = [g * coef if coef < 1 else g for g in grads]
    clone = RNNSearchModel(20, 5, 5, 5, **kw).double()
    clone.load_state_dict(model.state_dict())
    clone.eval()
    with torch.no_grad():
        cparams = dict(clone.named_parameters())
        for n, w, g in zip(names, weights, g_used):
            if n != "encoder.weight":  # the original's tied embedding is not stepped
                cparams[n].copy_(w - eta * (g + 1e-3 * w))
    vloss = torch.nn.functional.nll_loss(clone(xv, h)[0].view(-1, 20), yv)
    cw = [cparams[n] for n in names]
    dalpha, *dw = torch.autograd.grad(vloss, [clone.alphas] + cw)
    vnorm = torch.sqrt(sum((d**2).sum() for d in dw))
    vc = 0.25 / (vnorm + 1e-6)
    v = [d * vc if vc < 1 else d for d in dw]
    R = 0.01 / torch.sqrt(sum((t**2).sum() for t in v))
    grads_pm = []
    for sign in (1, -1):
        with torch.no_grad():
            for n, w, t in zip(names, weights, v):
                cparams[n].copy_(w + sign * R * t)
        lt = torch.nn.functional.nll_loss(clone(x, h)[0].view(-1, 20), y)
        grads_pm.append(torch.autograd.grad(lt, clone.alphas)[0])
    expected = dalpha - eta * coef * (grads_pm[0] - grads_pm[1]) / (2 * R)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-10)


def test_search_job_records_a_recurrent_genotype_each_epoch(bundle):
    net = functools.partial(RNNSearchModel, ninp=8, nhid=8, nhidlast=8)
    job = lm_search(
        data=bundle,
        epochs=1,
        batch_size=16,
        network=net,
        order=1,
        show_progress=False,
        build_only=True,
    )
    final = job.fit(None)
    assert final["genotype"]["layout"] == "recurrent" and len(final["genotype"]["recurrent"]) == 8
    assert math.isfinite(final["valid_ppl"])
    # The architecture's batches are the validation split in training-sized columns.
    assert job.search_data.size(1) == 16


def test_an_image_dataset_is_refused_for_a_language_model():
    from sharpdarts.errors import UserError

    with pytest.raises(UserError, match="text corpus"):
        lm_train(
            data=build_datasets(name="synthetic"),
            epochs=1,
            batch_size=4,
            network=NET,
            build_only=True,
        )


@pytest.mark.slow(3)
def test_killed_after_the_asgd_switch_resumes_exactly(tmp_path, capsys):
    """Kill a run after its switch to ASGD, re-run it: the same metrics and final perplexity
    as an uninterrupted run (the averaged weights and the switch epoch are checkpointed).
    The kill is a real one, of a process running `sharpdarts run`; the uninterrupted run and
    the re-run go through the same command line in this process."""
    from sharpdarts.face import cli

    def args(results):
        return [
            "run",
            "ptb/darts_v2",
            "--smoke",
            "--seed",
            "1267",
            "--results",
            str(results),
            "--allow-dirty",
            "--gin_param",
            "EPOCHS = 5",
            "--gin_param",
            "lm_train.nonmono = 1",
            "--gin_param",
            "make_context.threads = 1",
        ]

    assert cli.main(args(tmp_path / "a")) == 0
    [ref] = (tmp_path / "a").glob("runs/ptb/darts_v2/*")

    results = tmp_path / "b"
    folder = kill_after_epoch(
        args(results), results, "ptb/darts_v2", 4, log=tmp_path / "killed.out"
    )
    state = checkpoint.load_checkpoint(folder / "checkpoint.pt")
    assert state["asgd_epoch"] == 3 and 3 <= state["epoch"] < 5
    capsys.readouterr()
    code = cli.main(args(results))
    out = capsys.readouterr()
    assert code == 0 and "resuming" in out.out, out.out + out.err

    def strip(folder):
        lines = [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in lines]

    assert strip(folder) == strip(ref)
    final = json.loads((folder / "run.json").read_text())["final"]
    assert final == json.loads((ref / "run.json").read_text())["final"]
    assert final["asgd_epoch"] == 3


def test_cli_evaluate_gives_the_test_perplexity_of_original_weights(tmp_path, capsys):
    """Weights in the original's state-dict layout, a corpus in the real format: the reported
    perplexity is the one computed independently (batch 1, windows of 35, divided by rows)."""
    from test_recurrent import _original_state, _reference_log_probs

    from sharpdarts.core import genotypes
    from sharpdarts.face import cli

    folder = tmp_path / "data" / "penn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(9)]
    for split, n in (("train", 30), ("valid", 10), ("test", 12)):
        lines = [" ".join(rng.choice(vocab, size=int(rng.integers(1, 8)))) for _ in range(n)]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = corpus_lib.load_corpus(folder)
    genotype = genotypes.get("DARTS_V2_RNN")
    state = _original_state(genotype, corpus.ntokens, 6, rng)
    path = tmp_path / "ptb_model_state.pt"
    torch.save({k: torch.from_numpy(v).float() for k, v in state.items()}, path)
    code = cli.main(
        [
            "evaluate",
            str(path),
            "--arch",
            "DARTS_V2_RNN",
            "--dataset",
            "ptb",
            "--data",
            str(tmp_path / "data"),
            "--results",
            str(tmp_path / "results"),
            "--gin_param",
            "RNNModel.ninp = 6",
            "--gin_param",
            "RNNModel.nhid = 6",
            "--gin_param",
            "RNNModel.nhidlast = 6",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    final = json.loads(out[: out.rindex("}") + 1])
    words = corpus.test.numpy()
    log_probs = _reference_log_probs(state, genotype, words[:-1, None], 6)[:, 0]
    nll = -log_probs[np.arange(len(words) - 1), words[1:]]
    rows = len(words)
    # Windows of 35 rows: the window-mean NLL times its length, summed, over all rows.
    expected = (
        sum(nll[i : i + 35].mean() * len(nll[i : i + 35]) for i in range(0, rows - 1, 35)) / rows
    )
    assert final["test_loss"] == pytest.approx(expected, rel=1e-5)
    assert final["test_ppl"] == pytest.approx(math.exp(expected), rel=1e-5)
