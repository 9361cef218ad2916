"""The recurrent search under two gloo processes: a search epoch at per-rank batch B equals one
process's epoch at batch 2B (first and second order), validation perplexity counts every
token once, and every rank ends with the same network and genotype.

The equality runs use a search model without its batch norm and with every dropout at 0: the
batch norm normalises by each rank's own columns (B of them, not 2B), and each rank draws its
own dropout masks, so with either the runs are not expected to be equal (they are
statistically the same search). A run with both checks that the ranks still agree.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from spawning import (
    forked_output,
    free_port,
    join_group,
    race_forked,
    run_ranks,
    set_torchrun_variables,
)
from torch import nn

from sharpdarts.engine.data import corpus as corpus_lib
from sharpdarts.engine.data.bundle import DataBundle
from sharpdarts.engine.data.shards import rank_seed
from sharpdarts.engine.data.specs import spec
from sharpdarts.engine.lm_jobs import evaluate_ppl, lm_train
from sharpdarts.engine.lm_search import lm_search
from sharpdarts.face import cli
from sharpdarts.nn.models import RNNModel, RNNSearchModel

WORLD, B, SEED = 2, 4, 3
NO_DROPOUT = dict(dropout=0.0, dropouth=0.0, dropoutx=0.0, dropouti=0.0, dropoute=0.0)


def _plain_net(ntoken: int) -> nn.Module:
    """The search model without batch norm or dropout: its loss does not depend on how the
    columns are split between processes."""
    model = RNNSearchModel(ntoken, 8, 8, 8, **NO_DROPOUT)
    model.rnns[0].bn = nn.Identity()
    return model


_FULL_NET = functools.partial(RNNSearchModel, ninp=8, nhid=8, nhidlast=8)  # bn and dropouts


def _bundle() -> DataBundle:
    """A small synthetic corpus: 400 training tokens, 50 rows at batch 2B (two windows)."""
    corpus = corpus_lib.synthetic_corpus(sizes=(400, 200, 200))
    return DataBundle(spec("synthetic_text"), corpus, corpus)


def _search(order: int, batch_size: int, network=_plain_net) -> dict:
    """One search epoch (two windows of 35: alphas, then weights, each; the second uses
    Adam's moments and the carried hidden states) and its validation, through the real job.

    The lr is 2, not the original's 20, which only the batch norm keeps from diverging."""
    job = lm_search(
        data=_bundle(),
        seed=SEED,
        epochs=1,
        batch_size=batch_size,
        network=network,
        order=order,
        learning_rate=2.0,
        show_progress=False,
        build_only=True,
    )
    seeds = {"torch": torch.initial_seed(), "numpy": np.random.get_state()[1][:4].tolist()}
    start = job.model.alphas.detach().clone()
    final = job.fit(None)
    return {
        "state": {k: v.detach().clone() for k, v in job.model.state_dict().items()},
        "start_alphas": start,
        "valid_ppl": final["valid_ppl"],
        "genotype": json.dumps(final["genotype"]),
        "seeds": seeds,
    }


def _sources() -> list[torch.Tensor]:
    """Validation layouts: 10 columns (5 per rank), 5 (3 and 2), 1 (rank 1 holds none)."""
    valid = _bundle().train.valid
    return [corpus_lib.batchify(valid, c) for c in (10, 5, 1)]


def _eval_model() -> nn.Module:
    torch.manual_seed(0)
    return _FULL_NET(50)


def _worker(rank: int, port: int, out_dir: str) -> None:
    ctx = join_group(rank, port, WORLD)
    try:
        out = {order: _search(order, B) for order in (1, 2)}
        out["full"] = _search(2, B, network=_FULL_NET)
        out["train"] = _train(B)
        model = _eval_model()
        out["eval"] = [evaluate_ppl(model, s, 35, ctx)["loss"] for s in _sources()]
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm_ranks")
    return run_ranks(_worker, out, WORLD)


def test_each_rank_takes_its_block_of_the_whole_batch_columns():
    whole = corpus_lib.batchify(torch.arange(100), 2 * B)
    parts = [corpus_lib.rank_columns(whole, r, WORLD) for r in range(WORLD)]
    assert all(p.shape == (whole.size(0), B) for p in parts)
    assert torch.equal(torch.cat(parts, dim=1), whole)  # every token once, in one layout
    uneven = [corpus_lib.rank_columns(whole[:, :1], r, WORLD).size(1) for r in range(WORLD)]
    assert uneven == [1, 0]


def _train(batch_size: int) -> dict:
    """One training epoch of a fixed cell (jittered windows from numpy's shared stream), its
    validation and its test at batch 1 (one column: rank 1 evaluates none of it); and what a
    mid-epoch checkpoint after its first window keeps of the hidden state (every rank's
    columns), with whether this process gets its own columns back from it."""
    network = functools.partial(RNNModel, ninp=8, nhid=8, nhidlast=8, **NO_DROPOUT)
    job = lm_train(
        data=_bundle(),
        seed=SEED,
        epochs=1,
        batch_size=batch_size,
        network=network,
        learning_rate=2.0,
        show_progress=False,
        build_only=True,
    )
    inside, real_step = {}, job.train_step

    def train_step(x, y):
        if job.train_loader.start > 0 and not inside:  # after the first window
            inside.update(job.inside_state())  # a collective: every rank, at the same step
            own = job._own_columns(inside["hidden"])
            inside["round_trip"] = all(torch.equal(a, b) for a, b in zip(own, job.hidden))
        return real_step(x, y)

    job.train_step = train_step
    final = job.fit(None)
    return {
        "state": {k: v.detach().clone() for k, v in job.model.state_dict().items()},
        "valid_ppl": final["valid_ppl"],
        "test_ppl": final["test_ppl"],
        "inside": inside,
    }


@functools.lru_cache(maxsize=None)
def _single(order: int) -> dict:
    """One process's search at the whole batch 2B."""
    return _search(order, WORLD * B)


@pytest.mark.parametrize("order", [1, 2])
def test_two_processes_at_b_search_like_one_process_at_2b(ranks, order):
    single = _single(order)
    assert not torch.allclose(single["state"]["alphas"], single["start_alphas"])  # they moved
    for r in ranks:
        got = r[order]
        for name, want in single["state"].items():
            torch.testing.assert_close(
                got["state"][name], want, rtol=1e-4, atol=1e-6, msg=f"{name}, order {order}"
            )
        assert got["valid_ppl"] == pytest.approx(single["valid_ppl"], rel=1e-5)
        assert got["genotype"] == single["genotype"]
    for name in single["state"]:  # the ranks hold one network: identical, not just close
        assert torch.equal(ranks[0][order]["state"][name], ranks[1][order]["state"][name])


def test_one_process_at_b_differs_from_2b():
    """The comparison above has power: half the columns alone give another search. (First
    order: which columns a process holds does not depend on the order, and its search at 2B
    is one the comparison above has already made.)"""
    half, single = _search(1, B), _single(1)
    assert not torch.allclose(
        half["state"]["alphas"], single["state"]["alphas"], rtol=1e-4, atol=1e-6
    )


def test_two_processes_at_b_train_like_one_process_at_2b(ranks):
    """The cell training (lm_train) shards its columns the same way."""
    single = _train(WORLD * B)
    for r in ranks:
        for name, want in single["state"].items():
            torch.testing.assert_close(
                r["train"]["state"][name], want, rtol=1e-4, atol=1e-6, msg=name
            )
        assert r["train"]["valid_ppl"] == pytest.approx(single["valid_ppl"], rel=1e-5)
        assert r["train"]["test_ppl"] == pytest.approx(single["test_ppl"], rel=1e-5)
        # A mid-epoch checkpoint keeps the whole batch's hidden state, in one process's layout.
        [want] = single["inside"]["hidden"]
        assert want.shape == (1, WORLD * B, 8) and want.abs().sum() > 0
        torch.testing.assert_close(r["train"]["inside"]["hidden"][0], want, rtol=1e-4, atol=1e-6)
        assert r["train"]["inside"]["round_trip"]


def test_distributed_valid_perplexity_counts_every_token_once(ranks):
    model = _eval_model()
    single = [evaluate_ppl(model, s, 35)["loss"] for s in _sources()]
    for r in ranks:
        assert r["eval"] == pytest.approx(single, rel=1e-6)


def test_with_batch_norm_and_dropout_the_ranks_still_agree(ranks):
    """Each rank's own statistics and masks: the ranks' running statistics are averaged
    before evaluation, so every rank evaluates, saves and parses the same network."""
    a, b = ranks[0]["full"], ranks[1]["full"]
    assert a["state"].keys() == b["state"].keys() and any("bn." in k for k in a["state"])
    for name in a["state"]:
        assert torch.equal(a["state"][name], b["state"][name]), name
    assert a["genotype"] == b["genotype"] and a["valid_ppl"] == b["valid_ppl"]
    # Dropout masks come from each rank's torch seed; the BPTT windows from the shared numpy one.
    assert [r["full"]["seeds"]["torch"] for r in ranks] == [rank_seed(SEED, 0), rank_seed(SEED, 1)]
    assert a["seeds"]["numpy"] == b["seeds"]["numpy"]


def _rank_of_a_run(rank: int, port: int, results: Path):
    """``sharpdarts run ptb/search_first_order --smoke`` as torchrun's process ``rank`` of two
    starts it: the variables it sets (what the engine and the runner read), then the CLI."""

    def call() -> int:
        set_torchrun_variables(rank, port, WORLD)
        return cli.main(["run", "ptb/search_first_order", "--smoke", "--results", str(results)])

    return call


@pytest.mark.slow(2)
def test_a_recurrent_search_run_by_two_processes_has_rank_0_record(tmp_path):
    """The command each of torchrun's processes runs, in two processes forked from this one
    (torchrun's own start is tests/test_multinode.py's; forked, the processes do not each
    import torch again)."""
    results = tmp_path / "results"
    port = free_port()
    codes = race_forked([_rank_of_a_run(r, port, results) for r in range(WORLD)], tmp_path)
    outputs = [forked_output(tmp_path, r) for r in range(WORLD)]
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)
    [run_json] = results.glob("runs/*/*/*/run.json")  # one run folder, rank 0's
    info = json.loads(run_json.read_text())
    assert info["status"] == "completed" and info["world_size"] == 2
    assert len(set(info["rank_seeds"])) == 2  # each rank's own seed, recorded
    assert info["final"]["genotype"]["recurrent"]
    metrics = (run_json.parent / "metrics.jsonl").read_text().splitlines()
    lines = [json.loads(line) for line in metrics]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[-1]["genotype"] == info["final"]["genotype"]
    # Rank 0 prints; the other process does not.
    assert [o.count("running ptb/search_first_order") for o in outputs] == [1, 0], outputs
