"""The DARTS random-search baselines: cells drawn uniformly from DARTS's spaces."""
import collections
import json
from itertools import combinations

import numpy as np
import pytest

from sharpdarts.core import genotypes
from sharpdarts.core.random_genotypes import (sample_cell_genotype, sample_genotypes,
                                              sample_recurrent_genotype)

CELL_OPS = [op for op in genotypes.DARTS_PRIMITIVES if op != "none"]
RNN_OPS = [op for op in genotypes.RNN_PRIMITIVES if op != "none"]


# ---- the samplers ---------------------------------------------------------------------------
def _check_cell(gene):
    assert len(gene) == 8
    for node in range(4):
        (op_a, a), (op_b, b) = gene[2 * node], gene[2 * node + 1]
        assert a != b and 0 <= a < node + 2 and 0 <= b < node + 2
        assert op_a in CELL_OPS and op_b in CELL_OPS


def test_sampled_cells_are_valid_genotypes_of_the_darts_space():
    for seed in range(50):
        g = sample_cell_genotype(seed)
        assert isinstance(g, genotypes.Genotype) and g.layout == "cell"
        _check_cell(g.normal)
        _check_cell(g.reduce)
        assert g.normal_concat == g.reduce_concat == [2, 3, 4, 5]
        assert genotypes.from_dict(genotypes.to_dict(g)) == g  # the project's validation


def test_a_sampled_cell_builds_a_network_in_darts_ops():
    import torch

    from sharpdarts.models import NetworkCIFAR

    net = NetworkCIFAR(4, 10, 3, False, sample_cell_genotype(3), op_dict="DARTS_OPS")
    logits, _ = net(torch.zeros(2, 3, 8, 8))
    assert logits.shape == (2, 10)


def test_sampled_recurrent_cells_are_valid_genotypes_of_the_darts_space():
    for seed in range(50):
        g = sample_recurrent_genotype(seed)
        assert isinstance(g, genotypes.RecurrentGenotype)
        assert len(g.recurrent) == 8 and g.concat == list(range(1, 9))
        for i, (op, pred) in enumerate(g.recurrent):
            assert op in RNN_OPS and 0 <= pred <= i
        assert genotypes.recurrent_from_dict(genotypes.recurrent_to_dict(g)) == g


def test_samples_are_reproducible_per_seed():
    assert sample_genotypes(sample_cell_genotype, 5, 7) == sample_genotypes(sample_cell_genotype, 5, 7)
    assert sample_genotypes(sample_cell_genotype, 5, 7) != sample_genotypes(sample_cell_genotype, 5, 8)
    assert (sample_genotypes(sample_recurrent_genotype, 5, 7)
            == sample_genotypes(sample_recurrent_genotype, 5, 7))
    drawn = sample_genotypes(sample_cell_genotype, 5, 7)
    assert len({genotypes.to_json(g) for g in drawn}) == 5


def _near_uniform(counts: collections.Counter, choices: list, n: int) -> None:
    assert set(counts) == set(choices)  # every choice occurs, nothing else does
    expected = n / len(choices)
    for choice in choices:  # 20 % is more than 5 standard deviations at these counts
        assert abs(counts[choice] - expected) < 0.2 * expected, (choice, counts)


def test_every_op_and_every_input_pair_is_drawn_uniformly():
    n = 2000
    drawn = sample_genotypes(sample_cell_genotype, n, 0)
    for cell in ("normal", "reduce"):
        for node in range(4):
            pairs = collections.Counter(
                (getattr(g, cell)[2 * node][1], getattr(g, cell)[2 * node + 1][1]) for g in drawn)
            _near_uniform(pairs, list(combinations(range(node + 2), 2)), n)
            for slot in (0, 1):
                ops = collections.Counter(getattr(g, cell)[2 * node + slot][0] for g in drawn)
                _near_uniform(ops, CELL_OPS, n)
    cells = sample_genotypes(sample_recurrent_genotype, n, 0)
    for i in range(8):
        _near_uniform(collections.Counter(g.recurrent[i][0] for g in cells), RNN_OPS, n)
        _near_uniform(collections.Counter(g.recurrent[i][1] for g in cells), list(range(i + 1)), n)


def test_a_space_without_ops_or_a_bad_concat_is_refused():
    with pytest.raises(ValueError, match="no op"):
        sample_cell_genotype(0, primitives=["none"])
    with pytest.raises(ValueError, match="multiplier"):
        sample_cell_genotype(0, multiplier=5)
    with pytest.raises(ValueError, match="concat"):
        sample_recurrent_genotype(0, concat=9)
