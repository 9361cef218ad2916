"""The shipped params and multiply-adds (reference/computed_costs.json) are what the code
computes from each experiment's architecture."""
import pytest

from sharpdarts.face import costs
from sharpdarts.store import table_defs

SHIPPED = table_defs.computed_costs()


def _check(name):
    assert costs.compute(name) == SHIPPED[name]


def test_the_file_covers_every_training_experiment_that_builds_alone():
    # A continuation needs INIT_FROM; a random search's cell is drawn only when it runs.
    expected = {n for n in costs.train_experiments()
                if not n.endswith("_continue") and not n.endswith("random_search")}
    assert set(SHIPPED) == expected


@pytest.mark.parametrize("name", ["cifar10/sharpdarts", "imagenet/sharpdarts_cmid32"])
def test_shipped_costs_are_recomputed(name):
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_cost_is_recomputed(name):
    _check(name)


def test_a_search_is_not_a_training_row():
    assert costs.compute("search/sharpdarts_scalar") is None


def test_a_random_search_has_no_computed_cost():
    """Its architecture is unknown until it runs: no figure may stand in for the winner's."""
    assert costs.compute("cifar10/darts_random_search") is None
    assert "cifar10/darts_random_search" not in SHIPPED
