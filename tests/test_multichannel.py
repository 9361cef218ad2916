"""HyperCuboid grid search: graph, paths, Max-W over blocks, op skipping, path models.

The published weights and paths (reference/genotypes.json) pin the alpha layout and the op
order: the published longest paths follow from the published raw weights only when the last
axis is read as GRID_PRIMITIVES = [SharpSepConv, ResizablePool].
"""

import numpy as np
import pytest
import torch

from sharpdarts.core import genotypes
from sharpdarts.errors import UserError
from sharpdarts.nn.multichannel.graph import (
    GRID_PRIMITIVES,
    InvalidPathError,
    channel_widths,
    check_path,
    greedy_path,
    grid_graph,
    longest_path,
    op_node,
    parse_op_node,
    path_nodes_valid,
    sum_node,
)
from sharpdarts.nn.multichannel.networks import MultiChannelNetwork, PathNetwork

PATH_NAMES = genotypes.builtin_names(layout="path")
FULL_CS = [32, 64, 128, 256]
SSC, RP = "SharpSepConv", "ResizablePool"
HEAD = ["add-SharpSep", "global_pooling", "Linear"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Many small convolutions: one thread avoids contention on shared CPUs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_net(**kwargs):
    """Widths {8, 16}, two grid layers, a narrow head: fast on a CPU."""
    args = dict(C=8, steps=2, layers=2, head_channels=16)
    args.update(kwargs)
    return MultiChannelNetwork(**args)


# ---- Structure ------------------------------------------------------------------------------
def test_channel_widths():
    assert channel_widths(36, 4) == FULL_CS
    assert channel_widths(32, 4) == FULL_CS
    assert channel_widths(16, 2) == [16, 32]
    with pytest.raises(ValueError):
        channel_widths(0, 4)


def test_full_size_network_matches_the_published_search():
    torch.manual_seed(0)
    net = MultiChannelNetwork()  # C=36, 4 grid layers, 4 widths
    assert net.Cs == FULL_CS
    assert list(net.alphas.shape) == [2, 4, 4, 4, 2] and net.alphas.numel() == 256
    assert net.arch_parameters() == [net.alphas]
    assert net.primitives == GRID_PRIMITIVES
    assert net.weight_threshold == pytest.approx(1 / 32**2)
    assert len(net.stem) == 4 and len(net.base) == 4
    ops = [
        op
        for strides in net.op_grid
        for grid in strides
        for row in grid
        for cell in row
        for op in cell
    ]
    assert len(ops) == 256 and {type(op).__name__ for op in ops} == {SSC, RP}
    # every (layer, stride, c_in, c_out, op) has its own module with the right widths
    op = net.op_grid[3][1][0][3][0]  # layer 3, stride 2, 32 -> 256, SharpSepConv
    assert (
        op.op[1].stride == (2, 2) and op.op[1].in_channels == 32 and op.op[-1].num_features == 256
    )
    # the published raw weights load exactly and give the published longest path
    for name in ("MULTI_CHANNEL_SCALAR", "MULTI_CHANNEL_MAX_W"):
        net.load_raw_weights(name)
        ref = genotypes.get(name)
        raw = net.raw_weights()
        assert raw.layout == "raw_weights"
        np.testing.assert_allclose(raw.normal, ref.normal, atol=1e-6)
        np.testing.assert_allclose(raw.reduce, ref.reduce, atol=1e-6)
        g = net.genotype()
        assert g.layout == "path" and g.normal == genotypes.get(name + "_PATH").normal


def test_weights_and_arch_parameters_partition_the_parameters():
    net = small_net()
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weights()}
    assert not arch & weights
    assert arch | weights == {id(p) for p in net.parameters()}


# ---- Published paths ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_graph():
    return grid_graph(None, FULL_CS, 4)


def test_all_nine_published_paths_are_listed():
    assert len(PATH_NAMES) == 9


@pytest.mark.parametrize("name", PATH_NAMES)
def test_published_path_is_a_grid_path_and_trains(name, full_graph):
    path = genotypes.get(name).normal
    assert path_nodes_valid(path, full_graph)
    assert check_path(name, full_graph) == path
    torch.manual_seed(0)
    net = PathNetwork(name)
    assert net.genotype.normal == path
    ops = [parse_op_node(n) for n in path if parse_op_node(n)]
    assert len(net.op_grid) == len(ops) == 8
    assert net.stem[0][0].out_channels == ops[0].c_in
    assert net.base[0].op[1].in_channels == ops[-1].c_out
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    logits, aux = net(x)
    assert aux is None and logits.shape == (2, 10)
    loss = torch.nn.functional.cross_entropy(logits, y)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, net.parameters())]
    assert changed[0] and changed[-1] and sum(changed) > len(changed) // 2


@pytest.mark.parametrize("name", ["MULTI_CHANNEL_SCALAR", "MULTI_CHANNEL_MAX_W"])
def test_published_weights_give_the_published_longest_path(name):
    path = genotypes.get(name + "_PATH").normal
    assert longest_path(grid_graph(genotypes.get(name))) == path
    # read with MULTICHANNELNET_PRIMITIVES' order the weights give another path
    swapped = grid_graph(genotypes.get(name), primitives=genotypes.MULTICHANNELNET_PRIMITIVES)
    assert longest_path(swapped) != path


def test_published_weights_give_the_published_scalar_bottom_up_greedy_path():
    graph = grid_graph(genotypes.get("MULTI_CHANNEL_SCALAR"))
    assert (
        greedy_path(graph, "bottom_up")
        == genotypes.get("MULTI_CHANNEL_GREEDY_SCALAR_BOTTOM_UP").normal
    )


def test_primitive_order_of_the_network_does_not_change_raw_weights_or_paths():
    net = MultiChannelNetwork(primitives="MULTICHANNELNET_PRIMITIVES")
    assert net.primitives == [RP, SSC]
    net.load_raw_weights("MULTI_CHANNEL_MAX_W")
    np.testing.assert_allclose(
        net.raw_weights().normal, genotypes.get("MULTI_CHANNEL_MAX_W").normal, atol=1e-6
    )
    assert net.genotype().normal == genotypes.get("MULTI_CHANNEL_MAX_W_PATH").normal


# ---- Path extraction on hand-made weights ---------------------------------------------------
def hand_made_weights():
    """Widths {32, 64}, one layer; w[stride, layer, c_in, c_out, op], ops (SSC, RP)."""
    w = np.zeros((2, 1, 2, 2, 2))
    w[0, 0, 0, 0] = [0.35, 0.0]  # stride 1: 32 -> 32
    w[0, 0, 0, 1] = [0.30, 0.0]  # 32 -> 64
    w[0, 0, 1, 0] = [0.50, 0.0]  # 64 -> 32
    w[0, 0, 1, 1] = [0.00, 0.1]  # 64 -> 64
    w[1, 0, 0, 0] = [0.05, 0.6]  # stride 2: 32 -> 32
    w[1, 0, 1, 1] = [0.90, 0.15]  # 64 -> 64
    return w


def chain(stem, ops, head):
    nodes = ["Source", f"Conv3x3_{stem}", f"BatchNorm_{stem}"]
    for stride, (c_in, c_out, op) in zip((1, 2), ops):
        nodes += [op_node(0, stride, c_in, c_out, op), sum_node(0, c_out, stride)]
    return nodes + [f"SharpSepConv{head}"] + HEAD


def test_longest_and_greedy_paths_on_hand_made_weights():
    graph = grid_graph(hand_made_weights(), Cs=[32, 64])
    # best total: 0.30 + 0.90 = 1.2
    assert longest_path(graph) == chain(0, [(32, 64, SSC), (64, 64, SSC)], 64)
    # top-down: stem 32 (ties keep the first), heaviest op out of 32 (0.35), then out of 32 (0.6)
    assert greedy_path(graph, "top_down") == chain(0, [(32, 32, SSC), (32, 32, RP)], 32)
    # bottom-up: head 32 (ties keep the first), heaviest op into 32 (0.6), then into 32 (0.5)
    assert greedy_path(graph, "bottom_up") == chain(1, [(64, 32, SSC), (32, 32, RP)], 32)
    with pytest.raises(ValueError, match="direction"):
        greedy_path(graph, "sideways")


def test_graph_edges_carry_the_op_weights():
    w = hand_made_weights()
    graph = grid_graph(w, Cs=[32, 64])
    name = op_node(0, 2, 64, 64, SSC)
    assert graph.edges[name, sum_node(0, 64, 2)]["weight"] == pytest.approx(0.9)
    assert graph.nodes[name]["weight"] == pytest.approx(0.9)
    assert "weight" not in graph.edges[sum_node(0, 64, 1), name]
    with pytest.raises(ValueError, match="shape"):
        grid_graph(w[0], Cs=[32, 64])


def one_hot_alphas(net, choices, high=12.0):
    """alphas that put almost all of each (stride, layer) block on one op."""
    with torch.no_grad():
        net.alphas.zero_()
        for (s, layer), (i, j, o) in choices.items():
            net.alphas[s, layer, i, j, o] = high


def test_network_paths_follow_the_current_alphas():
    net = small_net()  # widths 8, 16
    one_hot_alphas(
        net, {(0, 0): (0, 1, 1), (1, 0): (1, 1, 0), (0, 1): (1, 0, 0), (1, 1): (0, 0, 1)}
    )
    expected = [
        "Source",
        "Conv3x3_0",
        "BatchNorm_0",
        op_node(0, 1, 8, 16, RP),
        sum_node(0, 16, 1),
        op_node(0, 2, 16, 16, SSC),
        sum_node(0, 16, 2),
        op_node(1, 1, 16, 8, SSC),
        sum_node(1, 8, 1),
        op_node(1, 2, 8, 8, RP),
        sum_node(1, 8, 2),
        "SharpSepConv8",
    ] + HEAD
    assert net.genotype().normal == expected
    assert net.genotype(method="greedy_top_down").normal == expected
    assert net.genotype(method="greedy_bottom_up").normal == expected
    assert net.paths()["longest_path"] == expected
    # no stale state: new alphas, new path
    one_hot_alphas(
        net, {(0, 0): (1, 1, 0), (1, 0): (1, 0, 0), (0, 1): (0, 0, 0), (1, 1): (0, 1, 0)}
    )
    assert (
        net.genotype().normal
        == [
            "Source",
            "Conv3x3_1",
            "BatchNorm_1",
            op_node(0, 1, 16, 16, SSC),
            sum_node(0, 16, 1),
            op_node(0, 2, 16, 8, SSC),
            sum_node(0, 8, 2),
            op_node(1, 1, 8, 8, SSC),
            sum_node(1, 8, 1),
            op_node(1, 2, 8, 16, SSC),
            sum_node(1, 16, 2),
            "SharpSepConv16",
        ]
        + HEAD
    )
    with pytest.raises(ValueError, match="method"):
        net.genotype(method="beam")


# ---- Softmax and weighting ------------------------------------------------------------------
def test_softmax_is_per_stride_and_layer_block():
    net = MultiChannelNetwork(layers=2, head_channels=16)  # the paper's 4 widths: 32-entry blocks
    with torch.no_grad():
        net.alphas.copy_(torch.randn_like(net.alphas))
    w = net.arch_weights()
    sums = w.sum(dim=(2, 3, 4))
    torch.testing.assert_close(sums, torch.ones(2, 2))
    for s in range(2):
        for layer in range(2):
            block = net.alphas[s, layer].flatten()
            assert block.numel() == 32
            torch.testing.assert_close(w[s, layer].flatten(), torch.softmax(block, dim=0))
    # a change inside one block leaves the others alone
    before = w.detach().clone()
    with torch.no_grad():
        net.alphas[1, 0, 2, 3, 1] += 5.0
    after = net.arch_weights().detach()
    torch.testing.assert_close(after[0], before[0])
    torch.testing.assert_close(after[1, 1], before[1, 1])
    assert not torch.allclose(after[1, 0], before[1, 0])


def test_max_w_coefficients_use_the_max_of_the_whole_block():
    net = small_net(weighting="max_w")
    alphas = torch.arange(net.alphas.numel(), dtype=torch.float32).view_as(net.alphas) / 10
    with torch.no_grad():
        net.alphas.copy_(alphas)
    w = net.arch_weights().detach()
    c = net.coefficients().detach()
    for s in range(2):
        for layer in range(2):
            block = w[s, layer]
            torch.testing.assert_close(c[s, layer], 1 - block.max() + block)
            assert c[s, layer].max().item() == pytest.approx(1.0)
    # a hand-checked entry: block (stride 1, layer 0) holds alphas 0.0 .. 0.7
    block = torch.softmax(torch.arange(8, dtype=torch.float32) / 10, dim=0)
    assert c[0, 0, 0, 0, 0].item() == pytest.approx(1 - block[7].item() + block[0].item(), abs=1e-6)
    # scalar weighting: the coefficients are the weights themselves
    scalar = small_net()
    with torch.no_grad():
        scalar.alphas.copy_(alphas)
    torch.testing.assert_close(scalar.coefficients(), scalar.arch_weights())


# ---- Skipping small ops ---------------------------------------------------------------------
def count_calls(net):
    calls = {}
    for layer, strides in enumerate(net.op_grid):
        for s, grid in enumerate(strides):
            for i, row in enumerate(grid):
                for j, ops in enumerate(row):
                    for o, op in enumerate(ops):
                        key = (layer, s, i, j, o)
                        calls[key] = 0

                        def hook(module, args, output, key=key):
                            calls[key] += 1

                        op.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize("always", [False, True])
def test_ops_under_the_threshold_are_not_computed(always):
    net = small_net(layers=1, always_apply_ops=always)
    assert net.weight_threshold == pytest.approx(1 / 8**2)
    with torch.no_grad():
        net.alphas.zero_()
        net.alphas[0, 0, :, 1, :] = -30.0  # stride 1: nothing reaches width 16
    calls = count_calls(net)
    logits = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10)
    if always:
        assert all(n == 1 for n in calls.values())
        return
    for (layer, s, i, j, o), n in calls.items():
        if s == 0:
            assert n == (1 if j == 0 else 0)  # the ops into width 16 weigh ~1e-14
        else:
            assert n == (1 if i == 0 else 0)  # width 16 has no input left to read


def test_everything_under_the_threshold_is_an_error():
    net = small_net(layers=1, weight_threshold=0.5)
    with pytest.raises(RuntimeError, match="always_apply_ops"):
        net(torch.randn(1, 3, 8, 8))


# ---- Search network end to end --------------------------------------------------------------
@pytest.mark.parametrize("weighting", ["scalar", "max_w"])
def test_search_network_forward_backward(weighting):
    torch.manual_seed(0)
    net = small_net(weighting=weighting)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([3, 4])
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    grad = net.alphas.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in net.weights() if p.grad is not None)
    g = net.genotype(skip_primitive="none")
    assert g.layout == "path"
    assert path_nodes_valid(g.normal, net.graph())
    assert genotypes.from_json(genotypes.to_json(g)) == g
    raw = net.raw_weights()
    assert np.array(raw.normal).shape == (2, 2, 2, 2) and np.array(raw.reduce).shape == (2, 2, 2, 2)
    # the path of a small grid builds into a path model of the same grid
    model = PathNetwork(g, C=8, steps=2, head_channels=16)
    logits, aux = model(x)
    assert logits.shape == (2, 10) and aux is None


# ---- Path validation ------------------------------------------------------------------------
def handmade():
    return list(genotypes.get("MULTI_CHANNEL_HANDMADE_PATH").normal)


def test_invalid_node_is_named():
    path = handmade()
    path[5] = "layer_0_stride_2_c_in_32_c_out_48_op_type_ResizablePool"
    with pytest.raises(ValueError, match="path node 5 'layer_0_stride_2_c_in_32_c_out_48"):
        PathNetwork(path)


def test_invalid_edge_is_named():
    path = handmade()
    path[5] = "layer_0_stride_2_c_in_64_c_out_64_op_type_ResizablePool"  # input is width 32
    with pytest.raises(
        InvalidPathError,
        match="'layer_0_add_c_out_32_stride_1' -> 'layer_0_stride_2_c_in_64_c_out_64",
    ):
        PathNetwork(path)
    skipped = handmade()
    del skipped[5:7]  # leave out layer 0's stride-2 stage
    with pytest.raises(ValueError, match="is not an edge of the grid"):
        PathNetwork(skipped)


def test_other_invalid_paths():
    with pytest.raises(ValueError, match="must start at 'Source'"):
        PathNetwork(handmade()[1:])
    with pytest.raises(ValueError, match="must end at 'Linear'"):
        PathNetwork(handmade()[:-1])
    with pytest.raises(ValueError, match="'path' genotype"):
        PathNetwork("DARTS_V2")
    with pytest.raises(UserError):
        PathNetwork(["Source", "Linear"])
    assert not path_nodes_valid(handmade()[::-1], grid_graph(None, FULL_CS, 4))


def test_opid_suffixes_are_ignored():
    path = [
        f"{n}_opid_{GRID_PRIMITIVES.index(p.op)}" if (p := parse_op_node(n)) else n
        for n in handmade()
    ]
    assert PathNetwork(path).genotype.normal == handmade()
