"""Bad values are refused before anything is written: exit 2, the binding's name, no folder.

Each kind of value (epochs, batch sizes, learning rates, widths, depths, primitive sets, the data
and results roots, portions, probabilities, seeds) is refused through the command line, where a
user meets it; the kinds themselves are pinned below.
"""

import math

import gin
import pytest
from test_faults import SMALL_SUPERNET  # tests/test_faults.py: one node of four ops a cell

from sharpdarts.core import validate
from sharpdarts.errors import UserError
from sharpdarts.face import cli

SEARCH = "demo/search"
TRAIN = "cifar10/sharpdarts"


def _refused(capsys, tmp_path, experiment, *args) -> str:
    """Runs the command line; asserts exit 2, no traceback and nothing written; the message."""
    results = tmp_path / "results"
    code = cli.main(["run", experiment, "--smoke", "--results", str(results), *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert not results.exists(), "a refused run wrote into the results store"
    return " ".join(err.split())


@pytest.mark.parametrize(
    "experiment, binding, name",
    [
        # epochs, through the EPOCHS macro and directly
        (SEARCH, "EPOCHS=-3", "search.epochs = %EPOCHS"),
        (SEARCH, "EPOCHS=0", "search.epochs = %EPOCHS"),
        (SEARCH, "EPOCHS=2.5", "search.epochs = %EPOCHS"),
        (TRAIN, "EPOCHS='ten'", "train.epochs = %EPOCHS"),
        # batch sizes
        (SEARCH, "BATCH_SIZE=0", "search.batch_size = %BATCH_SIZE"),
        (TRAIN, "train.eval_batch_size=-8", "train.eval_batch_size"),
        # learning rates
        (SEARCH, "search.learning_rate=-0.1", "search.learning_rate"),
        (SEARCH, "Architect.lr=0", "Architect.lr"),
        (TRAIN, "train.learning_rate=float('nan')", None),  # gin cannot parse it: still exit 2
        # widths and depths
        (SEARCH, "SearchNetwork.C=0", "SearchNetwork.C"),
        (TRAIN, "NetworkCIFAR.C=-4", "NetworkCIFAR.C"),
        (SEARCH, "SearchNetwork.layers=0", "SearchNetwork.layers"),
        (TRAIN, "NetworkCIFAR.layers=1.5", "NetworkCIFAR.layers"),
        # primitive sets
        (SEARCH, "SearchNetwork.primitives='DARTS_PRIMITVES'", "SearchNetwork.primitives"),
        (SEARCH, "SearchNetwork.primitives=[]", "SearchNetwork.primitives"),
        (
            SEARCH,
            "SearchNetwork.primitives=['skip_connect', 'skip_connect']",
            "SearchNetwork.primitives",
        ),
        (
            SEARCH,
            "SearchNetwork.primitives=['skip_connect', 'sep_conv_3x33']",
            "SearchNetwork.primitives",
        ),
        # portions and probabilities
        (SEARCH, "search.train_portion=1.5", "search.train_portion"),
        (SEARCH, "search.train_portion=0", "search.train_portion"),
        (TRAIN, "train.valid_portion=1", "train.valid_portion"),
        (TRAIN, "train.drop_path_prob=1.2", "train.drop_path_prob"),
        (TRAIN, "train.label_smoothing=-0.1", "train.label_smoothing"),
        # a scoped binding is named with its scope
        (SEARCH, "sgd.momentum=1.0", "sgd.momentum"),
    ],
)
def test_a_bad_value_is_refused_by_its_binding_name(experiment, binding, name, tmp_path, capsys):
    message = _refused(capsys, tmp_path, experiment, "--gin_param", binding)
    if name is not None:
        assert f"The binding {name}" in message
        assert "Nothing was run or written" in message


def test_a_search_that_cannot_run_one_or_two_levels_is_refused(tmp_path, capsys):
    message = _refused(capsys, tmp_path, SEARCH, "--gin_param", "search.train_portion=1.0")
    assert "holds no training image out" in message and "search.one_level" in message
    message = _refused(capsys, tmp_path, "search/snas", "--gin_param", "Architect.order=2")
    assert "search.one_level" in message and "Architect.order = 2" in message


def test_the_macro_and_its_value_are_both_named(tmp_path, capsys):
    message = _refused(capsys, tmp_path, SEARCH, "--gin_param", "EPOCHS=-3")
    assert "search.epochs = %EPOCHS is refused: EPOCHS = -3" in message
    assert "an integer >= 1" in message


def test_an_unknown_primitive_set_names_close_ones(tmp_path, capsys):
    message = _refused(
        capsys, tmp_path, SEARCH, "--gin_param", "SearchNetwork.primitives='DARTS_PRIMITVES'"
    )
    assert "DARTS_PRIMITIVES" in message


def test_a_results_root_that_is_a_file_is_refused(tmp_path, capsys):
    results = tmp_path / "results"
    results.write_text("not a folder")
    code = cli.main(["run", SEARCH, "--smoke", "--results", str(results)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "Traceback" not in err
    assert "--results" in err and "is a file, not a folder" in err
    assert results.read_text() == "not a folder"


def test_a_results_root_under_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = cli.main(["run", SEARCH, "--smoke", "--results", str(tmp_path / "file" / "results")])
    assert code == 2 and "--results" in capsys.readouterr().err


def test_a_data_root_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "data").write_text("x")
    message = _refused(capsys, tmp_path, SEARCH, "--data", tmp_path / "data")
    assert "--data" in message


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_out_of_range_is_refused(seed, tmp_path, capsys):
    message = _refused(capsys, tmp_path, SEARCH, "--seed", seed)
    assert "--seed" in message


def test_a_good_value_passes_and_runs(tmp_path, capsys):
    # Batches of 4: a quarter of smoke.gin's 16 images is one batch for the architecture.
    code = cli.main(
        [
            "run",
            SEARCH,
            "--smoke",
            "--results",
            str(tmp_path / "r"),
            "--gin_param",
            "EPOCHS=1",
            "--gin_param",
            "search.train_portion=0.75",
            "--gin_param",
            "BATCH_SIZE=4",
            # What is checked is the two values above; the small supernet, without the
            # eigenvalue, runs in a fraction of a smoke search's time.
            "--gin_param",
            "collapse_metrics.every = 0",
            *SMALL_SUPERNET,
        ]
    )
    assert code == 0, capsys.readouterr().err


# ---- the kinds themselves -------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, good, bad",
    [
        (validate.EPOCHS, [1, 600], [0, -1, 1.0, True, "3", None]),
        (validate.LEARNING_RATE, [1e-4, 1, 0.5], [0, -0.1, math.nan, math.inf, "0.1", False]),
        (validate.PORTION, [0.5, 0.01], [0, 1, 1.5, -0.5]),
        (validate.PROBABILITY, [0, 0.2, 1], [-0.01, 1.01]),
        (validate.SEED, [0, 2**32 - 1], [-1, 2**32, 1.5]),
        (validate.WIDTH.or_none(), [None, 1, 36], [0, 2.0]),
        (
            validate.PRIMITIVE_SET,
            ["DARTS_PRIMITIVES", ["none", "skip_connect"]],
            ["NO_SUCH_SET", [], ["a", "a"], [1, 2]],
        ),
    ],
)
def test_kinds_accept_and_refuse(kind, good, bad):
    for value in good:
        assert kind.problem(value) is None, value
    for value in bad:
        assert kind.problem(value) is not None, value


def test_a_folder_kind_refuses_a_file_and_what_lies_under_it(tmp_path):
    (tmp_path / "f").write_text("x")
    assert validate.FOLDER.problem(str(tmp_path / "new" / "deeper")) is None
    assert validate.FOLDER.problem(str(tmp_path)) is None
    assert "is a file" in validate.FOLDER.problem(str(tmp_path / "f"))
    assert "is a file" in validate.FOLDER.problem(str(tmp_path / "f" / "under"))


def test_a_declaration_must_name_real_parameters():
    with pytest.raises(TypeError, match="no parameters"):

        @validate.params(epochz=validate.EPOCHS)
        def job(epochs=1):
            return epochs


def test_check_config_follows_macros_and_scopes():
    @gin.configurable("validated_component")
    @validate.params(width=validate.WIDTH)
    def component(width=1):
        return width

    gin.parse_config("W = %V\nV = 0\nvalidated_component.width = %W")
    with pytest.raises(UserError, match=r"validated_component.width = %W = %V is refused: V = 0"):
        validate.check_config()
    gin.clear_config()
    gin.parse_config("outer/validated_component.width = -2")
    with pytest.raises(UserError, match=r"outer/validated_component.width = -2"):
        validate.check_config()
    gin.clear_config()
    gin.parse_config("validated_component.width = 3")
    validate.check_config()


def test_every_declared_component_is_a_gin_configurable():
    from sharpdarts.core import config
    from sharpdarts.face import runner  # noqa: F401  (imports every component)

    missing = [c for c in validate.declared() if config.selector_of(c) is None]
    assert not missing
