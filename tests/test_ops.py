"""Every op of every op table: shapes at stride 1 and 2, gradients, no NaN."""

import pytest
import torch

from sharpdarts.nn import ops

ALL_OPS = [(table, name) for table, t in ops.OP_TABLES.items() for name in t]


@pytest.mark.parametrize("table,name", ALL_OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_op_shape_and_backward(table, name, stride):
    C = 8
    op = ops.OP_TABLES[table][name](C, C, stride, True, 4)
    x = torch.randn(2, C, 8, 8, requires_grad=True)
    y = op(x)
    assert y.shape == (2, C, 8 // stride, 8 // stride)
    if y.requires_grad:
        y.square().sum().backward()
    assert torch.isfinite(y).all()
    if name not in ("none", "noise"):  # zeros, and R-DARTS's noise (no gradient to x)
        assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "name",
    [
        "max_pool_3x3",
        "avg_pool_3x3",
        "sep_conv_3x3",
        "dil_conv_5x5",
        "flood_conv_3x3",
        "choke_conv_3x3",
        "conv_7x1_1x7",
    ],
)
@pytest.mark.parametrize("stride", [1, 2])
def test_ops_change_channels(name, stride):
    op = ops.OPS[name](8, 16, stride, True, None)
    assert op(torch.randn(2, 8, 8, 8)).shape == (2, 16, 8 // stride, 8 // stride)


def _n(module):
    return sum(p.numel() for p in module.parameters())


def test_sharpsepconv_structure():
    # ReLU, dw k x k (stride, dilation), 1x1 to C_mid, BN, ReLU, dw k x k, 1x1 to C_out, BN.
    op = ops.SharpSepConv(8, 12, kernel_size=5, stride=2, padding=4, dilation=2, C_mid=20)
    layers = list(op.op)
    assert [type(m).__name__ for m in layers] == [
        "ReLU",
        "Conv2d",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "Conv2d",
        "Conv2d",
        "BatchNorm2d",
    ]
    first_dw, second_dw = layers[1], layers[5]
    assert (first_dw.stride, first_dw.dilation, first_dw.groups) == ((2, 2), (2, 2), 8)
    assert (second_dw.stride, second_dw.dilation, second_dw.padding) == ((1, 1), (1, 1), (2, 2))
    assert layers[2].out_channels == 20 and layers[6].out_channels == 12
    assert _n(op) == 8 * 25 + 8 * 20 + 2 * 20 + 20 * 25 + 20 * 12 + 2 * 12


def test_middle_widths_of_the_op_families():
    mid = lambda op: op.op[2].out_channels  # noqa: E731
    assert mid(ops.OPS["sep_conv_3x3"](8, 8, 1, True, None)) == 8
    assert mid(ops.OPS["flood_conv_3x3"](8, 8, 1, True, None)) == 32
    assert mid(ops.OPS["dil_flood_conv_3x3"](8, 8, 1, True, None)) == 32
    assert mid(ops.OPS["choke_conv_3x3"](8, 8, 1, True, None)) == 32
    assert mid(ops.OPS["choke_conv_3x3"](8, 8, 1, True, 96)) == 96
    assert ops.OPS["dil_conv_3x3"](8, 8, 1, True, None).op[1].dilation == (2, 2)
    # The original DARTS dilated conv is a single stage.
    assert len(ops.DARTS_OPS["dil_conv_3x3"](8, 8, 1, True, None).op) == 4


def test_zero_and_identity_values():
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(ops.Zero(2)(x), torch.zeros(2, 4, 3, 3))
    assert ops.OPS["skip_connect"](4, 4, 1, True, None)(x) is x


def test_factorized_reduce_shifts_second_path():
    fr = ops.FactorizedReduce(1, 2, affine=False).eval()
    with torch.no_grad():
        fr.conv_1.weight.fill_(1.0)
        fr.conv_2.weight.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = fr(x)
    # conv_1 samples (0,0),(0,2),...; conv_2 samples the image shifted by one pixel.
    bn_eps = fr.bn.eps
    scale = 1.0 / (1.0 + bn_eps) ** 0.5
    assert torch.allclose(y[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]) * scale)
    assert torch.allclose(y[0, 1], torch.tensor([[5.0, 7.0], [13.0, 15.0]]) * scale)
    with pytest.raises(ValueError, match="even"):
        ops.FactorizedReduce(4, 3)


def test_resizable_pool_adds_conv_only_when_channels_change():
    assert _n(ops.ResizablePool(8, 8)) == 0
    pool = ops.ResizablePool(8, 16)
    assert _n(pool) == 8 * 16 + 2 * 16 and pool.op[2].eps == 1e-3


def test_user_can_register_an_op_and_unknown_names_suggest():
    table = ops.OpTable("TEST_OPS")
    try:

        @table.register("double")
        def double(C_in, C_out, stride, affine, C_mid=None):
            return ops.Identity()

        assert ops.op_table("TEST_OPS")["double"] is double
        with pytest.raises(KeyError, match="double"):
            table["doubel"]
        with pytest.raises(KeyError, match="DARTS_OPS"):
            ops.op_table("DART_OPS")
    finally:
        del ops.OP_TABLES["TEST_OPS"]


def test_resolve_ops_checks_primitives_against_the_table():
    names, table = ops.resolve_ops("DARTS_PRIMITIVES", "DARTS_OPS")
    assert table is ops.DARTS_OPS and names[0] == "none" and len(names) == 8
    assert ops.resolve_ops(["none", "sep_conv_3x3"], None) == (["none", "sep_conv_3x3"], ops.OPS)
    with pytest.raises(ValueError, match="nor_conv_3x3"):
        ops.resolve_ops(["none", "nor_conv_3x3"], "OPS")
    with pytest.raises(KeyError, match="Did you mean: DARTS_OPS"):
        ops.resolve_ops("DARTS_PRIMITIVES", "DART_OPS")


def test_op_tables_and_weightings_are_registries():
    from sharpdarts.nn import weighting
    from sharpdarts.registry import Registry, UnknownNameError

    assert isinstance(ops.OPS, Registry) and isinstance(weighting.WEIGHTINGS, Registry)
    assert ops.OP_TABLES["MULTICHANNELNET_OPS"] is ops.MULTICHANNELNET_OPS
    with pytest.raises(UnknownNameError, match="in DARTS_OPS"):
        ops.DARTS_OPS["flood_conv_3x3"]
    assert not hasattr(ops.op_table, "__wrapped__")  # a plain function, not a gin configurable
