"""The shipped params and multiply-adds (reference/computed_costs.json) are what the code
computes from each experiment's architecture."""

import pytest

from sharpdarts.face import costs
from sharpdarts.store import table_defs

SHIPPED = table_defs.computed_costs()
_COMPUTED: dict = {}


def _computed(name):
    """costs.compute(name), once per worker: the rows of test_shipped_costs_are_recomputed and
    test_recurrent_rows_get_the_originals_parameter_counts are in the full sweep too, and
    building a paper-size network is what costs."""
    if name not in _COMPUTED:
        _COMPUTED[name] = costs.compute(name)
    return _COMPUTED[name]


def _check(name):
    assert _computed(name) == SHIPPED[name]


def test_the_file_covers_every_training_experiment_that_builds_alone():
    # A continuation needs INIT_FROM; a random search's cell is drawn only when it runs; the
    # recurrent searches (ptb/search_*) train no fixed cell.
    expected = {
        n
        for n in costs.train_experiments()
        if not n.endswith(("_continue", "random_search"))
        and not n.split("/")[1].startswith("search_")
    }
    assert set(SHIPPED) == expected


@pytest.mark.parametrize("name", ["cifar10/sharpdarts", "imagenet/sharpdarts_cmid32"])
def test_shipped_costs_are_recomputed(name):
    _check(name)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_cost_is_recomputed(name):
    _check(name)


def test_a_search_is_not_a_training_row():
    assert costs.compute("search/sharpdarts_scalar") is None


def test_a_random_search_has_no_computed_cost():
    """Its architecture is unknown until it runs: no figure may stand in for the winner's."""
    assert costs.compute("cifar10/darts_random_search") is None
    assert "cifar10/darts_random_search" not in SHIPPED


@pytest.mark.parametrize(
    "name,parameters",
    [
        # docs/facts/darts_rnn.md, section 2: PTB (10,000 words, 850 units) and WikiText-2
        # (33,278 words, 700).
        ("ptb/darts_v2", 22_960_000),
        ("ptb/enas", 27_295_000),
        ("wt2/darts_v2", 33_127_878),
    ],
)
def test_recurrent_rows_get_the_originals_parameter_counts(name, parameters):
    figures = _computed(name)
    assert round(figures["params_m"] * 1e6) == parameters
    assert "multiply_adds_b" not in figures  # not a figure the language-model tables show
    assert SHIPPED[name] == figures


def test_a_language_model_table_shows_computed_params_before_any_run(tmp_path):
    from sharpdarts.store import results, tables

    table = tables.build_table("darts_ptb", results.load_runs(tmp_path))
    text = tables.format_table(table, "markdown")
    row = next(line for line in text.splitlines() if "ptb/darts_v2" in line)
    assert "22.96†" in row
