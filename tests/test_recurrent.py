"""DARTS's recurrent cells and language models, against the original's formulas
(``docs/facts/darts_rnn.md``), written out here independently in the plainest form."""

import numpy as np
import pytest
import torch

from sharpdarts.core import genotypes
from sharpdarts.core.metrics import count_parameters
from sharpdarts.core.recurrent_genotypes import (
    RecurrentGenotype,
    parse_recurrent,
    recurrent_from_dict,
    recurrent_to_dict,
)
from sharpdarts.nn.models import RNNModel, RNNSearchModel, load_original_state_dict

ACT = {
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0),
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "identity": lambda v: v,
}


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


# ------------------------------------------------------------------ genotypes


def test_recurrent_genotypes_are_named_like_the_others():
    assert genotypes.RNN_PRIMITIVES == ["none", "tanh", "relu", "sigmoid", "identity"]
    v2 = genotypes.get("DARTS_V2_RNN")
    assert v2.recurrent == [
        ("sigmoid", 0),
        ("relu", 1),
        ("relu", 1),
        ("identity", 1),
        ("tanh", 2),
        ("sigmoid", 5),
        ("tanh", 3),
        ("relu", 5),
    ]
    assert list(v2.concat) == list(range(1, 9))
    assert genotypes.get("DARTS_V1_RNN").recurrent[5] == ("identity", 1)
    enas = genotypes.get("ENAS_RNN")
    assert len(enas.recurrent) == 11 and list(enas.concat) == [2, 5, 6, 9, 10, 11]
    assert genotypes.is_builtin("ENAS_RNN")
    with pytest.raises(KeyError, match="DARTS_V2_RNN"):
        genotypes.get("DARTS_V2_RN")
    assert recurrent_from_dict(recurrent_to_dict(v2)) == v2
    assert genotypes.resolve(recurrent_to_dict(enas)) == enas


def _parse_plainly(probs, steps=8):
    """The original rule, written as its loops read: per node, the predecessor whose best
    non-'none' op is largest (stable sort: the smaller index on ties), then that op."""
    gene, start = [], 0
    for i in range(steps):
        W = probs[start : start + i + 1]
        j = sorted(range(i + 1), key=lambda x: -max(W[x][k] for k in range(len(W[x])) if k != 0))[0]
        k_best = None
        for k in range(len(W[j])):
            if k != 0 and (k_best is None or W[j][k] > W[j][k_best]):
                k_best = k
        gene.append((genotypes.RNN_PRIMITIVES[k_best], j))
        start += i + 1
    return gene


@pytest.mark.parametrize("seed", range(200))
def test_recurrent_extraction_matches_the_original_rule(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(36, 5))
    if seed % 2:  # coarse values make ties between edges and between ops common
        logits = np.round(logits)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    g = parse_recurrent(probs)
    assert g.recurrent == _parse_plainly(probs)
    assert g.concat == list(range(1, 9))


def test_search_model_genotype_uses_its_alphas():
    model = RNNSearchModel(20, 6, 6, 6)
    with torch.no_grad():
        model.alphas.copy_(torch.randn(36, 5))
    probs = torch.softmax(model.alphas, -1).detach().numpy()
    assert model.genotype().recurrent == _parse_plainly(probs)
    with pytest.raises(ValueError, match="36 x 5"):
        parse_recurrent(np.ones((35, 5)))


# ------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize(
    "name,ntoken,size,expected",
    [
        ("DARTS_V2_RNN", 10000, 850, 22_960_000),  # PTB, the README's "23M"
        ("DARTS_V1_RNN", 10000, 850, 22_960_000),
        ("DARTS_V2_RNN", 33278, 700, 33_127_878),  # WikiText-2
        ("ENAS_RNN", 10000, 850, 27_295_000),
        ("ENAS_RNN", 33278, 700, 36_067_878),
    ],
)
def test_parameter_counts_equal_the_originals(name, ntoken, size, expected):
    model = RNNModel(ntoken, size, size, size, genotype=name)
    assert count_parameters(model) == expected
    assert model.decoder.weight is model.encoder.weight


def test_search_model_parameter_count_equals_the_originals():
    model = RNNSearchModel(10000, 300, 300, 300)
    assert sum(p.numel() for p in model.weights()) == 4_810_000
    assert model.arch_parameters()[0].shape == (36, 5)
    assert all(p is not model.alphas for p in model.weights())


def test_mismatched_sizes_and_genotypes_are_refused():
    with pytest.raises(ValueError, match="ninp == nhid"):
        RNNModel(10, 4, 5, 5)
    with pytest.raises(ValueError, match="recurrent genotype"):
        RNNModel(10, 4, 4, 4, genotype="DARTS_V2")
    with pytest.raises(ValueError, match="node 2"):
        RNNModel(10, 4, 4, 4, genotype=RecurrentGenotype([("relu", 0), ("relu", 2)], [1, 2]))


# ------------------------------------------------------------------ the original's weights


def _original_state(genotype, ntoken, n, rng):
    """Weights in the original's state-dict layout (``rnns.0._W0``, ``rnns.0._Ws.i``, ...)."""
    state = {
        "encoder.weight": rng.uniform(-0.5, 0.5, (ntoken, n)),
        "rnns.0._W0": rng.uniform(-0.5, 0.5, (2 * n, 2 * n)),
        "decoder.bias": rng.uniform(-0.5, 0.5, ntoken),
    }
    for i in range(len(genotype.recurrent)):
        state[f"rnns.0._Ws.{i}"] = rng.uniform(-0.5, 0.5, (n, 2 * n))
    state["decoder.weight"] = state["encoder.weight"]
    return state


def _reference_log_probs(state, genotype, words, n, masks=None):
    """Eval-mode (masks=None) or train-mode log-probabilities, one time step at a time."""
    emb_w = state["encoder.weight"] * (masks["emb"] if masks else 1)
    x = emb_w[words] * (masks["in"] if masks else 1)  # (T, B, n)
    T, B = words.shape
    h = np.zeros((B, n))
    outs = []
    for t in range(T):
        xt = x[t] * (masks["x"] if masks else 1)
        hm = masks["h"] if masks else 1
        c0, h0 = np.split(np.concatenate([xt, h * hm], 1) @ state["rnns.0._W0"], 2, axis=1)
        states = [h + sigmoid(c0) * (np.tanh(h0) - h)]
        for i, (op, pred) in enumerate(genotype.recurrent):
            s = states[pred]
            c, g = np.split((s * hm) @ state[f"rnns.0._Ws.{i}"], 2, axis=1)
            states.append(s + sigmoid(c) * (ACT[op](g) - s))
        h = np.mean([states[k] for k in genotype.concat], axis=0)
        outs.append(h)
    out = np.stack(outs) * (masks["out"] if masks else 1)
    logits = out @ state["decoder.weight"].T + state["decoder.bias"]
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


@pytest.mark.parametrize("name", ["DARTS_V2_RNN", "DARTS_V1_RNN", "ENAS_RNN"])
def test_original_weights_give_the_original_log_probs(name):
    genotype = genotypes.get(name)
    rng = np.random.default_rng(1)
    ntoken, n = 13, 6
    state = _original_state(genotype, ntoken, n, rng)
    model = RNNModel(ntoken, n, n, n, 0.3, 0.2, 0.4, 0.25, 0.1, genotype=name).double()
    load_original_state_dict(model, {k: torch.from_numpy(v) for k, v in state.items()})
    words = rng.integers(0, ntoken, (9, 4))
    model.eval()
    log_probs, hidden = model(torch.from_numpy(words), model.init_hidden(4))
    expected = _reference_log_probs(state, genotype, words, n)
    np.testing.assert_allclose(log_probs.detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    assert hidden[0].shape == (1, 4, n)

    # Training: the masks are drawn in the original's order and at its granularity (words of
    # the embedding, (1,B,D) locked masks, (B,dim) cell masks shared by all steps and nodes).
    model.train()
    torch.manual_seed(5)
    log_probs, _ = model(torch.from_numpy(words), model.init_hidden(4))
    torch.manual_seed(5)
    d = torch.float64

    def bern(shape, p):
        return (torch.empty(*shape, dtype=d).bernoulli_(1 - p) / (1 - p)).numpy()

    def floor_mask(shape, p):
        return (torch.floor(torch.rand(*shape, dtype=d) + 1 - p) / (1 - p)).numpy()

    masks = {"emb": bern((ntoken, 1), 0.1), "in": bern((1, 4, n), 0.25)}
    masks["x"], masks["h"] = floor_mask((4, n), 0.4), floor_mask((4, n), 0.2)
    masks["out"] = bern((1, 4, n), 0.3)
    expected = _reference_log_probs(state, genotype, words, n, masks)
    np.testing.assert_allclose(log_probs.detach().numpy(), expected, rtol=1e-10, atol=1e-10)


def test_original_state_dicts_load_strictly():
    rng = np.random.default_rng(2)
    enas = _original_state(genotypes.get("ENAS_RNN"), 11, 4, rng)
    with pytest.raises(ValueError, match="unexpected: rnns.0._Ws.10"):
        load_original_state_dict(
            RNNModel(11, 4, 4, 4), {k: torch.from_numpy(v) for k, v in enas.items()}
        )
    # A whole pickled model (the original's torch.save(model)) is taken too.
    source = RNNModel(11, 4, 4, 4, genotype="ENAS_RNN")
    target = load_original_state_dict(RNNModel(11, 4, 4, 4, genotype="ENAS_RNN"), source)
    assert torch.equal(target.rnns[0]._W0, source.rnns[0]._W0)


# ------------------------------------------------------------------ the search cell


def _reference_search(state, probs, words, n, bn_eval):
    """The original search cell in eval mode: every edge and op summed as its loops do."""
    mean, var = bn_eval

    def bn(v):
        return (v - mean) / np.sqrt(var + 1e-5)

    x = state["encoder.weight"][words]
    T, B = words.shape
    h = np.zeros((B, n))
    outs = []
    for t in range(T):
        c0, h0 = np.split(np.concatenate([x[t], h], 1) @ state["rnns.0._W0"], 2, axis=1)
        states = [bn(h + sigmoid(c0) * (np.tanh(h0) - h))]
        offset = 0
        for i in range(8):
            s_new = np.zeros((B, n))
            for j, s in enumerate(states):
                c, g = np.split(s @ state[f"rnns.0._Ws.{i}"], 2, axis=1)
                for k, op in enumerate(genotypes.RNN_PRIMITIVES):
                    if op != "none":
                        s_new += probs[offset + j, k] * (s + sigmoid(c) * (ACT[op](g) - s))
            states.append(bn(s_new))
            offset += i + 1
        h = np.mean(states[1:], axis=0)
        outs.append(h)
    logits = np.stack(outs) @ state["decoder.weight"].T + state["decoder.bias"]
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_search_model_takes_the_originals_weights_and_mixes_every_edge():
    rng = np.random.default_rng(3)
    ntoken, n = 10, 5
    state = _original_state(genotypes.get("DARTS_V2_RNN"), ntoken, n, rng)
    state["rnns.0.bn.running_mean"] = rng.normal(size=n) * 0.1
    state["rnns.0.bn.running_var"] = rng.uniform(0.5, 2, n)
    model = RNNSearchModel(ntoken, n, n, n).double()
    with torch.no_grad():
        model.alphas.copy_(torch.from_numpy(rng.normal(size=(36, 5))))
    alphas = model.alphas.detach().clone()
    # The original search saved no architecture parameters (and, on torch 0.3, no
    # num_batches_tracked): the model keeps its own.
    load_original_state_dict(model, {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    assert torch.equal(model.alphas, alphas)
    model.eval()
    words = rng.integers(0, ntoken, (4, 3))
    log_probs, _ = model(torch.from_numpy(words), model.init_hidden(3))
    probs = torch.softmax(alphas, -1).numpy()
    expected = _reference_search(
        state, probs, words, n, (state["rnns.0.bn.running_mean"], state["rnns.0.bn.running_var"])
    )
    np.testing.assert_allclose(log_probs.detach().numpy(), expected, rtol=1e-9, atol=1e-9)


def test_search_gradients_reach_alphas_and_bn_is_shared():
    model = RNNSearchModel(12, 4, 4, 4)
    words = torch.randint(0, 12, (5, 2))
    log_probs, _ = model(words, model.init_hidden(2))
    log_probs.sum().backward()
    assert model.alphas.grad is not None and model.alphas.grad.abs().sum() > 0
    # The one shared batch norm has been used by s0 and the 8 nodes at each of 5 steps.
    assert int(model.rnns[0].bn.num_batches_tracked) == 5 * 9


def test_ar_tar_penalty_is_the_originals():
    from sharpdarts.nn.recurrent.model import ar_tar_penalty

    raw = torch.randn(6, 2, 3)
    dropped = torch.randn(6, 2, 3)
    tar = 1e-3 * ((raw[1:] - raw[:-1]) ** 2).mean()
    assert torch.allclose(ar_tar_penalty([raw], [dropped], 0.0, 1e-3), tar)
    assert torch.allclose(
        ar_tar_penalty([raw], [dropped], 2.0, 1e-3), tar + 2.0 * (dropped**2).mean()
    )
    model = RNNModel(10, 4, 4, 4)
    _, _, raws, outs = model(torch.randint(0, 10, (5, 2)), model.init_hidden(2), return_h=True)
    assert raws[0].shape == outs[0].shape == (5, 2, 4)


@pytest.mark.parametrize("name", ["DARTS_V2_RNN", "ENAS_RNN"])
def test_cli_draws_recurrent_cells(name, tmp_path, monkeypatch):
    # No system Graphviz: the pip-installed renderer draws the cell (CI has no `dot`).
    monkeypatch.setenv("PATH", str(tmp_path / "no_dot"))
    from sharpdarts.face import cli

    out = tmp_path / "cell.svg"
    assert cli.main(["plot", "genotype", name, "--out", str(out)]) == 0
    svg = out.read_text()
    genotype = genotypes.get(name)
    assert svg.count('class="node"') == 3 + len(genotype.recurrent) + 1  # x, h, 0, nodes, out
    assert svg.count('class="edge"') == 2 + len(genotype.recurrent) + len(genotype.concat)
    for op, _ in genotype.recurrent:
        assert f">{op}<" in svg


def test_a_searched_recurrent_cell_is_promoted_and_trained_by_name(tmp_path):
    from sharpdarts.store import genotype_store

    searched = parse_recurrent(np.random.default_rng(4).dirichlet(np.ones(5), size=36))
    genotype_store.promote("MY_RNN_CELL", searched, {"run_id": "r1"})
    assert genotypes.get("MY_RNN_CELL") == searched
    assert genotypes.from_dict(genotypes.to_dict(searched)) == searched
    assert count_parameters(RNNModel(100, 8, 8, 8, genotype="MY_RNN_CELL")) == 100 * 9 + 20 * 64
