"""FairDARTS' cells: 'edges' genotypes, their evaluation cell and the threshold derivation.

Pinned against xiaomi-automl/FairDARTS @ 270cfc94ef4bf851f359ab5caf741f23316ea7c9
(``fairdarts/genotypes.py``, ``fairdarts/model.py`` ``NetworkCIFAR(..., parse_method=
'threshold')``, i.e. their ``DCOCell``; ``fairdarts/utils.py`` ``parse``), run on CPU:

- parameter counts of their networks of FairDARTS_a .. FairDARTS_g at their settings (36
  channels, 20 cells, auxiliary head), their ``count_parameters_in_MB`` times 1e6;
- float64 logits of a tiny network from our weights (``fair_cells_figures.json`` says how).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from sharpdarts.core import edge_genotypes, genotype_types
from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core.metrics import count_parameters
from sharpdarts.engine.collapse import skip_connections
from sharpdarts.face.plots.cells import genotype_graph
from sharpdarts.nn.derivation import derive, fairdarts_cell, threshold_cell
from sharpdarts.nn.fair_cells import FairCell, cell_edges
from sharpdarts.nn.models import NetworkCIFAR, SearchNetwork
from sharpdarts.nn.ops import op_table

FIGURES = json.loads((pathlib.Path(__file__).parent / "fair_cells_figures.json").read_text())
# Their NetworkCIFAR(36, 10, 20, auxiliary=True, FairDARTS_x, parse_method='threshold'):
# (all parameters, without the auxiliary head). The README prints 2.83, 3.88, 2.59, 3.84,
# 3.12, 3.62 and 3.38M: with the head but for FairDARTS_c, whose 2.59M is its count without.
AUTHORS = {
    "FAIRDARTS_A": (2_837_208, 2_360_782),
    "FAIRDARTS_B": (3_884_304, 3_407_878),
    "FAIRDARTS_C": (3_075_240, 2_598_814),
    "FAIRDARTS_D": (3_841_968, 3_365_542),
    "FAIRDARTS_E": (3_120_168, 2_643_742),
    "FAIRDARTS_F": (3_627_480, 3_151_054),
    "FAIRDARTS_G": (3_375_480, 2_899_054),
}
# Their FairDARTS_d normal cell, as they write it: (op, node, input).
FAIRDARTS_D_NORMAL = [
    ("sep_conv_3x3", 2, 0),
    ("sep_conv_5x5", 2, 1),
    ("dil_conv_3x3", 3, 1),
    ("max_pool_3x3", 3, 0),
    ("dil_conv_3x3", 4, 0),
    ("dil_conv_3x3", 4, 1),
    ("sep_conv_3x3", 5, 0),
    ("dil_conv_5x5", 5, 1),
]


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_fairdarts_networks_have_their_codes_parameter_counts(name):
    net = NetworkCIFAR(36, 10, 20, True, name, op_dict="DARTS_OPS", cell="fairdarts")
    assert (count_parameters(net, auxiliary=True), count_parameters(net)) == AUTHORS[name]
    assert {type(c) for c in net.cells} == {FairCell}


def test_published_cells_are_edge_genotypes_with_their_sources():
    sources = genotype_types.reference_data()["sources"]
    for name in AUTHORS:
        genotype = genotypes_lib.get(name)
        assert sources[name]["name"] == "FairDARTS_" + name[-1].lower()
        assert sources[name]["commit"] == "270cfc94ef4bf851f359ab5caf741f23316ea7c9"
        assert genotype.layout == ("cell" if name == "FAIRDARTS_D" else "edges")
    # FairDARTS_d stays a two-input cell; read as edges it is their gene, entry for entry.
    assert cell_edges(genotypes_lib.get("FAIRDARTS_D"), "normal") == (
        FAIRDARTS_D_NORMAL,
        [2, 3, 4, 5],
    )
    a = genotypes_lib.get("FAIRDARTS_A")  # node 3 of its normal cell has no input
    assert a.normal[:2] == [("sep_conv_3x3", 2, 0), ("sep_conv_5x5", 2, 1)]
    assert a.normal_concat == [2, 4, 5] and a.reduce_concat == [2, 3, 4, 5]
    assert genotypes_lib.from_json(genotypes_lib.to_json(a)) == a


@pytest.mark.parametrize(
    "normal, concat, message",
    [
        ([["sep_conv_3x3", 0]], [2], "triples"),
        ([["sep_conv_3x3", 2, 2]], [2], "not an edge"),
        ([["sep_conv_3x3", 1, 0]], [1], "not an edge"),
        ([["sep_conv_3x3", 3, 0], ["sep_conv_3x3", 2, 0]], [2, 3], "increasing order"),
        ([["sep_conv_3x3", 2, 0], ["skip_connect", 4, 1]], [2, 3, 4], r"\[2, 4\]"),
    ],
)
def test_edge_genotypes_refuse_malformed_cells(normal, concat, message):
    d = {"normal": normal, "normal_concat": concat, "reduce": [], "reduce_concat": []}
    with pytest.raises(ValueError, match=message):
        genotypes_lib.from_dict({**d, "layout": "edges"})


def _tiny(genotype, cell="fairdarts") -> NetworkCIFAR:
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        return NetworkCIFAR(
            4, 10, 4, True, genotype, op_dict="DARTS_OPS", cell=cell, channels_last=False
        )
    finally:
        torch.set_default_dtype(default)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _logits(net, train: bool):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    net.train(train)
    net.drop_path_prob = 0.2 if train else 0.0
    torch.manual_seed(5)
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("name", ["FAIRDARTS_C", "FAIRDARTS_D", "DCO_EDGE_BS_64"])
def test_fair_cell_gives_their_logits_in_float64(name):
    expected = FIGURES[name]
    net = _tiny(expected.get("genotype", name))
    logits, _ = _logits(net, train=False)
    torch.testing.assert_close(logits, _t(expected["eval_logits"]), rtol=0, atol=1e-13)
    logits, aux = _logits(net, train=True)  # drop path on each node's sum, one mask per node
    torch.testing.assert_close(logits, _t(expected["train_logits"]), rtol=0, atol=1e-12)
    torch.testing.assert_close(aux, _t(expected["train_logits_aux"]), rtol=0, atol=1e-12)


def test_darts_cell_differs_from_theirs_only_in_drop_path():
    expected = FIGURES["FAIRDARTS_D"]
    net = _tiny("FAIRDARTS_D", cell="darts")  # the same weights, module for module
    assert list(net.state_dict()) != list(_tiny("FAIRDARTS_D").state_dict())
    net.load_state_dict(dict(zip(net.state_dict(), _tiny("FAIRDARTS_D").state_dict().values())))
    logits, _ = _logits(net, train=False)
    torch.testing.assert_close(logits, _t(expected["eval_logits"]), rtol=0, atol=1e-13)
    logits, _ = _logits(net, train=True)
    assert (logits - _t(expected["train_logits"])).abs().max() > 1e-6


def test_fair_cell_refuses_what_it_cannot_compute():
    ops = op_table("DARTS_OPS")
    with pytest.raises(ValueError, match="node 3 reads only nodes that have no edge"):
        FairCell([("sep_conv_3x3", 3, 2)], [3], 4, 4, 4, False, False, ops)
    with pytest.raises(ValueError, match="at least one edge"):
        FairCell([], [], 4, 4, 4, False, False, ops)
    with pytest.raises(ValueError, match="cell='darts' cannot build"):
        NetworkCIFAR(4, 10, 3, False, "FAIRDARTS_A", op_dict="DARTS_OPS", cell="darts")


def test_threshold_derivation_gives_an_edges_genotype_that_trains():
    ops = ["none", "skip_connect", "sep_conv_3x3"]
    w = np.full((9, 3), 0.5)
    w[0] = [0.99, 0.9, 0.1]  # node 2: 'none' is never chosen, so skip_connect (0.9)
    w[1] = [0.1, 0.2, 0.95]
    w[2:5] = [0.2, 0.8, 0.3]  # node 3: below the threshold on every edge: no input
    w[5:9] = [0.1, 0.1, 0.86]  # node 4: input 2, the strongest, then the first of the
    w[7] = [0.1, 0.1, 0.9]  # equal inputs 0, 1 and 3
    cell = fairdarts_cell(w, ops, steps=3, skip_primitive="none")
    assert cell == [  # their order: a node's inputs strongest first
        ("sep_conv_3x3", 2, 1),
        ("skip_connect", 2, 0),
        ("sep_conv_3x3", 4, 2),
        ("sep_conv_3x3", 4, 0),
    ]
    assert threshold_cell(w[:, 1:], ops[1:], 3) == cell  # their parse, without the column
    genotype = derive("fairdarts", w, w, ops, steps=3, multiplier=3, skip_primitive="none")
    assert genotype.layout == "edges" and genotype.normal_concat == [2, 4]
    net = NetworkCIFAR(4, 10, 3, False, genotype, op_dict="DARTS_OPS")
    assert [c.multiplier for c in net.cells] == [2, 2, 2]
    assert net(torch.randn(1, 3, 16, 16))[0].shape == (1, 10)
    assert derive("darts", w, w, ops, steps=3, multiplier=3).layout == "cell"
    assert skip_connections(genotypes_lib.to_dict(genotype)) == {
        "skip_connections_normal": 1,
        "skip_connections_reduce": 1,
    }


def test_search_network_derives_by_the_threshold_rule():
    ops = ["max_pool_3x3", "skip_connect", "sep_conv_3x3"]
    net = SearchNetwork(4, 10, 2, steps=2, multiplier=2, primitives=ops, derivation="fairdarts")
    with torch.no_grad():
        net.alphas_normal.fill_(-5.0)
        net.alphas_normal[0, 2] = 5.0  # its softmax, 0.9999, alone reaches 0.85
        net.alphas_reduce.fill_(-5.0)
        net.alphas_reduce[3, 1] = 5.0
    genotype = net.genotype(skip_primitive=None)
    assert genotype.normal == [("sep_conv_3x3", 2, 0)]
    assert genotype.reduce == [("skip_connect", 3, 1)] and genotype.reduce_concat == [3]


def test_an_edges_genotype_is_drawn_with_its_isolated_node():
    source = genotype_graph(genotypes_lib.get("FAIRDARTS_A"), ("normal",)).source
    assert "normal_node1 [label=1" in source  # node 3, without an edge, drawn alone
    assert "normal_node1 ->" not in source and "-> normal_node1" not in source
    assert "normal_in0 -> normal_node2 [label=max_pool_3x3" in source
    assert edge_genotypes.pairs_to_edges([("a", 0), ("b", 1), ("c", 2)])[2] == ("c", 3, 2)
