"""NAS-Bench-201 arch strings: both ways, the edge order, the derivation rule, bad strings."""

import itertools

import numpy as np
import pytest

from sharpdarts.core import nb201_arch
from sharpdarts.errors import UserError

# The best CIFAR-10 cell of the benchmark as its paper and API print it.
BEST = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)


def test_the_edges_are_in_the_search_models_row_order():
    assert nb201_arch.EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert len(nb201_arch.OPS) == 5 and nb201_arch.OPS[0] == "none"


def test_a_string_parses_to_its_ops_and_back():
    ops = nb201_arch.parse_arch(BEST)
    assert ops == ("nor_conv_3x3",) * 3 + ("skip_connect",) + ("nor_conv_3x3",) * 2
    assert nb201_arch.arch_string(ops) == BEST


def test_every_cell_of_the_space_round_trips_and_is_unique():
    strings = set()
    for ops in itertools.product(nb201_arch.OPS, repeat=6):
        arch = nb201_arch.arch_string(ops)
        assert nb201_arch.parse_arch(arch) == ops
        strings.add(arch)
    assert len(strings) == 15625


def test_weights_select_the_largest_entry_of_each_edge_none_included():
    weights = np.zeros((6, 5))
    picks = [0, 1, 2, 3, 4, 3]
    weights[np.arange(6), picks] = 1.0
    arch = nb201_arch.arch_from_weights(weights)
    assert nb201_arch.parse_arch(arch) == tuple(nb201_arch.OPS[k] for k in picks)
    with pytest.raises(ValueError, match=r"\(6, 5\)"):
        nb201_arch.arch_from_weights(np.zeros((14, 8)))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|nor_conv_3x3~0|",
        BEST.replace("~1|", "~2|", 1),
        BEST.replace("skip_connect", "sep_conv_3x3"),
        BEST.strip("|"),
        BEST + "+|none~0|",
        None,
    ],
)
def test_a_bad_string_is_a_user_error_that_shows_the_form(bad):
    with pytest.raises(UserError, match="not a NAS-Bench-201 arch string. One looks like"):
        nb201_arch.parse_arch(bad)


def test_bad_ops_are_a_user_error():
    with pytest.raises(UserError, match="six op names"):
        nb201_arch.arch_string(["none"] * 5)
    with pytest.raises(UserError, match="six op names"):
        nb201_arch.arch_string(["conv"] * 6)
