"""The configuration contract, experiment by experiment: every binding takes effect.

Each shipped experiment (a new .gin is tested the moment it exists) is built in smoke mode,
as ``sharpdarts run --smoke`` builds it before its first epoch, and every binding of its
config must have reached a built object. The learning rates and optimizer settings of every
experiment are pinned to the values the code gave before the optimizer and the schedule became
injectable components.
"""

from __future__ import annotations

import gin
import pytest

from sharpdarts.core import config, genotypes
from sharpdarts.core.random_genotypes import sample_cell_genotype as random_genotype
from sharpdarts.face import experiments, runner
from sharpdarts.store import genotype_store

EXPERIMENTS = experiments.experiment_names()

# lr of epochs 1, 2 and 12 and the weight decay, as the code gave them before the optimizer and
# the schedule were injectable (computed then with one process; momentum 0.9 everywhere).
BEFORE = {
    "cifar10/darts_ssc_no_search": (0.004166675, 0.00833334, 0.02499894722307858, 0.0003),
    "cifar10/darts_ssc_no_search_no_autoaugment": (
        0.004166675,
        0.00833334,
        0.02499894722307858,
        0.0003,
    ),
    "cifar10/multi_channel_handmade_path": (
        0.016666675000000002,
        0.03333334,
        0.099995788891051,
        0.0003,
    ),
    "cifar10/multi_channel_max_w_path": (
        0.016666675000000002,
        0.03333334,
        0.099995788891051,
        0.0003,
    ),
    "cifar10/multi_channel_scalar_path": (
        0.016666675000000002,
        0.03333334,
        0.099995788891051,
        0.0003,
    ),
    "cifar10/sharpdarts": (0.004166675, 0.00833334, 0.02499894722307858, 0.0003),
    "cifar10/sharpdarts_no_autoaugment": (0.004166675, 0.00833334, 0.02499894722307858, 0.0003),
    "cifar10/sharpsepconv_darts": (0.004166675, 0.00833334, 0.02499894722307858, 0.0003),
    "cifar10/sharpsepconv_darts_max_w": (0.004166675, 0.00833334, 0.02499894722307858, 0.0003),
    "cifar10/sharpsepconv_darts_no_autoaugment": (
        0.004166675,
        0.00833334,
        0.02499894722307858,
        0.0003,
    ),
    "demo/search": (0.01255, 0.025, 0.0001, 0.0003),
    "demo/train": (0.01255, 0.025, 0.0001, 0.0003),
    "demo/train_random": (0.01255, 0.025, 0.0001, 0.0003),
    "imagenet/sharpdarts_cmid32": (
        0.00465909090909091,
        0.00856818181818182,
        0.04373709168005615,
        0.0001,
    ),
    "imagenet/sharpdarts_cmid96": (
        0.00465909090909091,
        0.00856818181818182,
        0.04373709168005615,
        0.0001,
    ),
    "imagenet/sharper_darts_max_w": (
        0.00465909090909091,
        0.00856818181818182,
        0.04373709168005615,
        0.0001,
    ),
    "imagenet/sharpsepconv_darts": (
        0.00465909090909091,
        0.00856818181818182,
        0.04373709168005615,
        0.0001,
    ),
    "imagenet/sharpsepconv_darts_continue": (
        4.659090909090909e-05,
        8.568181818181819e-05,
        0.00043616195377371817,
        0.0001,
    ),
    "search/multi_channel_max_w": (0.00425, 0.0084, 0.024686382692221565, 0.0003),
    "search/multi_channel_scalar": (0.00425, 0.0084, 0.024686382692221565, 0.0003),
    "search/sharpdarts_scalar": (0.005, 0.009000000000000001, 0.02370562243490676, 0.0003),
    "search/sharper_max_w": (0.00425, 0.0084, 0.024686382692221565, 0.0003),
    "search/sharper_scalar": (0.00425, 0.0084, 0.024686382692221565, 0.0003),
    "search/sharpsepconv_darts_max_w": (0.00425, 0.0084, 0.024686382692221565, 0.0003),
    "search/sharpsepconv_darts_scalar": (0.00425, 0.0084, 0.024686382692221565, 0.0003),
}


def _configure(name: str, tmp_path, bindings=()) -> runner.Configured:
    if name == "demo/train":  # demo/train trains the demo's promoted genotype
        genotype_store.promote("DEMO", genotypes.get("DARTS_V2"), {"run_id": "test"})
    if name == "demo/lm_train":  # and demo/lm_train the language-model demo's
        genotype_store.promote("DEMO_RNN", genotypes.get("DARTS_V2_RNN"), {"run_id": "test"})
    if name == "demo/train_random":  # and its baseline, a random cell `make demo` adds
        genotype_store.promote("DEMO_RANDOM", random_genotype(1), {"random": True, "seed": 1})
    return runner.configure(name, list(bindings), smoke=True, results=str(tmp_path))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_binding_of_every_experiment_reaches_a_built_object(name, tmp_path):
    configured = _configure(name, tmp_path)
    runner.build_checked(configured, seed=0, data_root=None)  # raises on an unused binding
    assert config.unused_bindings(configured.smoke_only) == []
    # Only smoke.gin's own shrinking of networks this experiment does not build may go unused.
    own = config.bound_keys() - set(configured.smoke_only)
    assert own and not {config.binding_name(k) for k in own} & set(config.unused_bindings())


def _first_lrs(built, epochs: int = 12) -> list[float]:
    lrs = []
    for _ in range(epochs):
        lrs.append(built.optimizer.param_groups[0]["lr"])
        built.optimizer.step()
        built.scheduler.step()
    return lrs


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_learning_rates_and_optimizer_settings_are_as_before(name, tmp_path):
    """Built as the experiment itself (its epochs, batch and warm-up, not smoke's), the
    optimizer and schedule give the learning rates of before, exactly."""
    runner._parse_config([experiments.experiment_path(name)], [])
    own = [
        f"EPOCHS = {gin.query_parameter('%EPOCHS')}",
        f"BATCH_SIZE = {gin.query_parameter('%BATCH_SIZE')}",
        f"cosine_power_annealing.warmup_epochs = "
        f"{gin.query_parameter('cosine_power_annealing.warmup_epochs')}",
    ]
    built = runner.build_checked(_configure(name, tmp_path, own), seed=0, data_root=None)
    first, second, twelfth, weight_decay = BEFORE[name]
    group = built.optimizer.param_groups[0]
    assert (group["momentum"], group["weight_decay"]) == (0.9, weight_decay)
    lrs = _first_lrs(built)
    assert (lrs[0], lrs[1], lrs[11]) == (first, second, twelfth)


def test_the_cosine_annealing_ablation_differs_from_its_row_only_in_the_schedule(tmp_path):
    name = "cifar10/sharpsepconv_darts_cosine_annealing"
    built = runner.build_checked(_configure(name, tmp_path, ["EPOCHS = 2000"]), 0, None)
    lrs = _first_lrs(built, 3)
    assert lrs[0] == 0.025  # no warm-up: the initial lr first, then plain cosine decay
    assert lrs[0] > lrs[1] > lrs[2] > 0.0249
    assert type(built.scheduler).__name__ == "CosineAnnealingLR"
    assert built.scheduler.eta_min == 1e-8
    baseline = runner.build_checked(
        _configure("cifar10/sharpsepconv_darts", tmp_path, ["EPOCHS = 2000"]), 0, None
    )
    assert type(baseline.scheduler).__name__ == "CosinePowerAnnealingLR"
    assert baseline.params_m == built.params_m


def test_unused_bindings_names_what_no_call_used_macros_and_scopes_included():
    import torch

    from sharpdarts.core.optimizers import sgd

    gin.parse_config(
        [
            "M = 0.5",
            "UNUSED = 1",
            "sgd.momentum = %M",
            "sgd.nesterov = True",
            "outer/sgd.weight_decay = 0.1",
        ]
    )
    assert config.unused_bindings() == [
        "M",
        "UNUSED",
        "outer/sgd.weight_decay",
        "sgd.momentum",
        "sgd.nesterov",
    ]
    params = [torch.nn.Parameter(torch.zeros(1))]
    assert sgd(params, 0.1).param_groups[0]["momentum"] == 0.5
    assert config.unused_bindings() == ["UNUSED", "outer/sgd.weight_decay"]
    with gin.config_scope("outer"):
        assert sgd(params, 0.1).param_groups[0]["weight_decay"] == 0.1
    assert config.unused_bindings() == ["UNUSED"]
    assert config.unused_bindings(allowed=["UNUSED"]) == []
    assert config.keys_of("UNUSED = 2") | config.keys_of("outer/sgd.weight_decay = 1") == {
        ("UNUSED", "gin.macro", "value"),
        ("outer", "sharpdarts.core.optimizers.sgd", "weight_decay"),
    }
