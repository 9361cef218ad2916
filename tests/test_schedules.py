"""Tests for sharpdarts.schedules: cosine power annealing and its LR scheduler.

Expected values are recomputed here element by element with ``math`` (a different route from
the vectorised numpy code), following docs/facts/sharpdarts.md, "Cosine power annealing".
"""

import io
import math

import gin
import numpy as np
import pytest
import torch

from sharpdarts.core.schedules import (
    SCHEDULES,
    CosinePowerAnnealingLR,
    constant_schedule,
    cosine_annealing,
    cosine_annealing_schedule,
    cosine_power_annealing,
    exponential_decay,
    resolve_schedule,
)

TOL = dict(rtol=1e-12, atol=1e-15)


def reference(epochs, max_lr, min_lr, p, max_epoch=None, warmup=None):
    """(lr, proportions, cos_proportions) as lists, one epoch at a time."""
    epochs = list(range(1, epochs + 1)) if isinstance(epochs, int) else [float(e) for e in epochs]
    top_epoch = max(epochs) if max_epoch is None else max_epoch
    first = min(epochs)
    shift = warmup if warmup else 0
    cos_props = []
    for e in epochs:
        cos_props.append(0.5 * (1.0 + math.cos(math.pi * (e - shift) / (top_epoch - shift))))
    powered = [c if p == 1 else p ** (1.0 + c) for c in cos_props]
    lo, hi = min(powered), max(powered)
    props = [(v - lo) / (hi - lo) for v in powered]
    if warmup:
        for i, e in enumerate(epochs):
            if e <= first + warmup:
                props[i] = e / (first + warmup)
    lrs = [min_lr + (max_lr - min_lr) * f for f in props]
    return lrs, props, cos_props


# --- known values worked out by hand ------------------------------------------------------


def test_hand_values_three_epochs_p1():
    # c = (1 + cos(pi/3))/2, (1 + cos(2pi/3))/2, (1 + cos(pi))/2 = 0.75, 0.25, 0
    # rescaled by its own range: 1, 1/3, 0.
    lr = cosine_power_annealing(3, max_lr=1.0, min_lr=0.0, exponent_order=1)
    np.testing.assert_allclose(lr, [1.0, 1.0 / 3.0, 0.0], **TOL)


def test_hand_values_three_epochs_p2():
    # f = 2 ** (c + 1) for c = 0.75, 0.25, 0, then shifted to start at 0 and divided by its max.
    span = 2**1.75 - 2
    lr = cosine_power_annealing(3, max_lr=0.5, min_lr=0.1, exponent_order=2)
    np.testing.assert_allclose(lr, [0.5, 0.1 + 0.4 * (2**1.25 - 2) / span, 0.1], **TOL)


def test_two_epochs_are_max_then_min():
    np.testing.assert_array_equal(cosine_power_annealing(2, max_lr=0.3, min_lr=0.01), [0.3, 0.01])


# --- every branch against the per-element reference ---------------------------------------


@pytest.mark.parametrize("p", [1, 1.5, 2, 10])
def test_int_epochs_matches_reference(p):
    lr, props, cos_props = cosine_power_annealing(
        50, max_lr=0.025, min_lr=1e-4, exponent_order=p, return_intermediates=True
    )
    want_lr, want_props, want_cos = reference(50, 0.025, 1e-4, p)
    assert lr.dtype == np.float64 and lr.shape == (50,)
    np.testing.assert_allclose(lr, want_lr, **TOL)
    np.testing.assert_allclose(props, want_props, **TOL)
    np.testing.assert_allclose(cos_props, want_cos, **TOL)
    # Without warmup the curve runs from exactly max_lr to exactly min_lr.
    assert lr[0] == 0.025
    assert lr[-1] == pytest.approx(1e-4, rel=1e-12)
    assert np.all(np.diff(lr) < 0)


def test_numpy_integer_epoch_count_is_a_count():
    np.testing.assert_array_equal(cosine_power_annealing(np.int64(20)), cosine_power_annealing(20))


def test_array_of_epochs_rescales_by_its_own_range():
    epochs = np.arange(101, 301)
    lr = cosine_power_annealing(epochs, max_lr=0.2, min_lr=7.5e-4, exponent_order=10)
    np.testing.assert_allclose(lr, reference(epochs, 0.2, 7.5e-4, 10)[0], **TOL)
    # The part of the curve is stretched to the full range again (not a slice of 1..300).
    assert lr[0] == 0.2
    full = cosine_power_annealing(300, max_lr=0.2, min_lr=7.5e-4, exponent_order=10)
    assert not np.allclose(lr, full[100:])


def test_array_with_max_epoch():
    epochs = np.arange(1, 101)
    lr = cosine_power_annealing(epochs, max_lr=0.1, min_lr=1e-3, exponent_order=2, max_epoch=300)
    np.testing.assert_allclose(lr, reference(epochs, 0.1, 1e-3, 2, max_epoch=300)[0], **TOL)
    # Still rescaled to the full range of this array.
    assert lr[0] == 0.1 and lr[-1] == pytest.approx(1e-3, rel=1e-12)


def test_int_epochs_with_max_epoch():
    lr = cosine_power_annealing(40, max_lr=0.1, min_lr=1e-3, exponent_order=3, max_epoch=120)
    np.testing.assert_allclose(lr, reference(40, 0.1, 1e-3, 3, max_epoch=120)[0], **TOL)


def test_none_epochs_with_max_epoch_is_one_to_max_epoch():
    lr = cosine_power_annealing(None, max_lr=0.05, min_lr=1e-5, exponent_order=2, max_epoch=30)
    np.testing.assert_allclose(lr, reference(30, 0.05, 1e-5, 2)[0], **TOL)
    np.testing.assert_array_equal(
        lr, cosine_power_annealing(30, max_lr=0.05, min_lr=1e-5, exponent_order=2)
    )


def test_list_of_epochs_is_accepted():
    np.testing.assert_array_equal(
        cosine_power_annealing([1, 2, 3, 4, 5]), cosine_power_annealing(5)
    )


def test_p1_is_plain_cosine_annealing_rescaled():
    lr = cosine_power_annealing(60, max_lr=0.1, min_lr=1e-3, exponent_order=1)
    cos = cosine_annealing(60, max_lr=0.1, min_lr=1e-3)
    rescaled = (cos - cos.min()) / (cos.max() - cos.min()) * (0.1 - 1e-3) + 1e-3
    np.testing.assert_allclose(lr, rescaled, **TOL)
    # ...and it differs from the not-rescaled cosine only at the start.
    assert lr[0] > cos[0]


def test_larger_exponent_decays_faster_early():
    cos_like = cosine_power_annealing(100, exponent_order=1)
    p2 = cosine_power_annealing(100, exponent_order=2)
    p10 = cosine_power_annealing(100, exponent_order=10)
    assert np.all(p10[1:-1] < p2[1:-1])
    assert np.all(p2[1:-1] < cos_like[1:-1])


# --- warmup ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 10])
def test_warmup_matches_reference(p):
    lr, props, cos_props = cosine_power_annealing(
        30, max_lr=0.025, min_lr=1e-4, exponent_order=p, warmup_epochs=5, return_intermediates=True
    )
    want_lr, want_props, want_cos = reference(30, 0.025, 1e-4, p, warmup=5)
    np.testing.assert_allclose(lr, want_lr, **TOL)
    np.testing.assert_allclose(props, want_props, **TOL)
    np.testing.assert_allclose(cos_props, want_cos, **TOL)


def test_warmup_ramp_values():
    lr, props, _ = cosine_power_annealing(
        20, max_lr=0.1, min_lr=0.0, exponent_order=2, warmup_epochs=5, return_intermediates=True
    )
    # Epochs 1..6 (W + 1 of them) ramp as 1/6 .. 6/6; epoch 6 is at max_lr.
    np.testing.assert_allclose(props[:6], [k / 6 for k in range(1, 7)], **TOL)
    np.testing.assert_allclose(lr[:6], [0.1 * k / 6 for k in range(1, 7)], **TOL)
    assert lr[5] == 0.1
    assert np.all(np.diff(lr[:6]) > 0)
    # After warmup: strictly decreasing, ending at min_lr.
    assert np.all(np.diff(lr[5:]) < 0)
    assert lr[-1] == 0.0


def test_warmup_with_min_lr_offsets_ramp():
    lr = cosine_power_annealing(10, max_lr=0.5, min_lr=0.1, exponent_order=2, warmup_epochs=2)
    np.testing.assert_allclose(lr[:3], [0.1 + 0.4 / 3, 0.1 + 0.8 / 3, 0.5], **TOL)


def test_warmup_zero_or_none_is_no_warmup():
    plain = cosine_power_annealing(25, exponent_order=2)
    np.testing.assert_array_equal(
        cosine_power_annealing(25, exponent_order=2, warmup_epochs=0), plain
    )
    np.testing.assert_array_equal(
        cosine_power_annealing(25, exponent_order=2, warmup_epochs=None), plain
    )


def test_warmup_does_not_modify_callers_array():
    epochs = np.arange(1, 21)
    before = epochs.copy()
    cosine_power_annealing(epochs, warmup_epochs=5)
    np.testing.assert_array_equal(epochs, before)


def test_warmup_longer_than_run_ramps_by_epoch():
    # The original fails here (ramp length != warmup entries); we keep ramping epoch/(1+W).
    lr = cosine_power_annealing(3, max_lr=0.6, min_lr=0.0, warmup_epochs=5)
    np.testing.assert_allclose(lr, [0.1, 0.2, 0.3], **TOL)


def test_single_epoch_is_max_lr():
    # The original divides 0 by 0 here (nan); we give max_lr.
    np.testing.assert_array_equal(cosine_power_annealing(1, max_lr=0.1), [0.1])


# --- resuming -------------------------------------------------------------------------------


def test_start_epoch_with_restart_lr_keeps_whole_curve():
    full = cosine_power_annealing(200, exponent_order=10)
    np.testing.assert_array_equal(
        cosine_power_annealing(200, exponent_order=10, start_epoch=101, restart_lr=True), full
    )


def test_start_epoch_without_restart_lr_drops_done_epochs():
    full = cosine_power_annealing(200, exponent_order=10)
    lr, props, cos_props = cosine_power_annealing(
        200, exponent_order=10, start_epoch=101, restart_lr=False, return_intermediates=True
    )
    np.testing.assert_array_equal(lr, full[100:])
    assert lr.shape == (100,)
    # The intermediates are not shortened.
    assert props.shape == (200,) and cos_props.shape == (200,)


def test_start_epoch_one_ignores_restart_lr():
    np.testing.assert_array_equal(
        cosine_power_annealing(30, start_epoch=1, restart_lr=False), cosine_power_annealing(30)
    )


def test_return_intermediates_relation():
    lr, props, cos_props = cosine_power_annealing(
        40, max_lr=0.3, min_lr=0.01, exponent_order=4, warmup_epochs=3, return_intermediates=True
    )
    np.testing.assert_allclose(lr, props * (0.3 - 0.01) + 0.01, **TOL)
    assert props.min() == 0.0 and props.max() == 1.0
    # cos_proportions use the warmup-shifted epochs, so they peak (1) at epoch W.
    assert cos_props[2] == 1.0


# --- errors ---------------------------------------------------------------------------------


def test_epochs_and_max_epoch_both_none():
    with pytest.raises(ValueError, match="epochs"):
        cosine_power_annealing()


@pytest.mark.parametrize("p", [0.5, 0, -2])
def test_exponent_order_below_one(p):
    with pytest.raises(ValueError, match="exponent_order"):
        cosine_power_annealing(10, exponent_order=p)


def test_warmup_needs_epochs_from_one():
    with pytest.raises(ValueError, match="warmup"):
        cosine_power_annealing(np.arange(2, 20), warmup_epochs=3)
    # Without warmup a later start is fine.
    assert cosine_power_annealing(np.arange(2, 20)).shape == (18,)


# --- comparison curves ----------------------------------------------------------------------


def test_cosine_annealing_values():
    got = cosine_annealing(8, max_lr=0.2, min_lr=0.01)
    want = [0.01 + 0.19 * (1 + math.cos(math.pi * e / 8)) / 2 for e in range(1, 9)]
    np.testing.assert_allclose(got, want, **TOL)
    assert got[-1] == pytest.approx(0.01, rel=1e-12)


def test_cosine_annealing_matches_torch_cosine_annealing_lr():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.2)
    torch_sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=8, eta_min=0.01)
    seen = []
    for _ in range(8):
        optimizer.step()
        torch_sched.step()
        seen.append(optimizer.param_groups[0]["lr"])
    np.testing.assert_allclose(cosine_annealing(8, 0.2, 0.01), seen, rtol=1e-9)


def test_exponential_decay_values():
    got = exponential_decay(5, max_lr=0.1, min_lr=1e-5)
    np.testing.assert_allclose(got, [1e-1, 1e-2, 1e-3, 1e-4, 1e-5], rtol=1e-12)
    assert exponential_decay(1, 0.1, 1e-5).tolist() == [0.1]
    with pytest.raises(ValueError):
        exponential_decay(5, max_lr=0.1, min_lr=0.0)


# --- the torch scheduler --------------------------------------------------------------------


def make_optimizer(lrs=(0.05,)):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def run_epochs(optimizer, scheduler, n):
    """The learning rates in effect during each of n epochs."""
    seen = []
    for _ in range(n):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_scheduler_follows_function_over_whole_run_and_holds_last():
    optimizer = make_optimizer()
    scheduler = CosinePowerAnnealingLR(
        optimizer, epochs=12, min_lr=1e-4, exponent_order=2, warmup_epochs=3
    )
    want = cosine_power_annealing(12, max_lr=0.05, min_lr=1e-4, exponent_order=2, warmup_epochs=3)
    # The epoch-1 value is in effect before the first step.
    assert optimizer.param_groups[0]["lr"] == want[0]
    seen = [lrs[0] for lrs in run_epochs(optimizer, scheduler, 15)]
    assert seen[:12] == want.tolist()
    assert seen[12:] == [want[-1]] * 3
    assert scheduler.get_last_lr() == [want[-1]]


def test_scheduler_explicit_max_lr_sets_every_group():
    optimizer = make_optimizer((0.05, 0.5))
    scheduler = CosinePowerAnnealingLR(
        optimizer, epochs=6, max_lr=0.1, min_lr=0.0, exponent_order=10
    )
    want = cosine_power_annealing(6, max_lr=0.1, min_lr=0.0, exponent_order=10).tolist()
    seen = run_epochs(optimizer, scheduler, 6)
    assert seen == [[value, value] for value in want]


def test_scheduler_default_max_lr_is_each_groups_initial_lr():
    optimizer = make_optimizer((0.05, 0.5))
    scheduler = CosinePowerAnnealingLR(optimizer, epochs=6, min_lr=1e-3, exponent_order=2)
    seen = np.array(run_epochs(optimizer, scheduler, 6))
    for column, top in enumerate((0.05, 0.5)):
        want = cosine_power_annealing(6, max_lr=top, min_lr=1e-3, exponent_order=2)
        np.testing.assert_array_equal(seen[:, column], want)


def test_scheduler_resumes_exactly_from_state_dict():
    kwargs = dict(epochs=20, min_lr=1e-4, exponent_order=10, warmup_epochs=4)
    optimizer = make_optimizer()
    scheduler = CosinePowerAnnealingLR(optimizer, **kwargs)
    uninterrupted = run_epochs(optimizer, scheduler, 22)

    optimizer = make_optimizer()
    scheduler = CosinePowerAnnealingLR(optimizer, **kwargs)
    first_part = run_epochs(optimizer, scheduler, 7)
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain values only

    # Resume into fresh objects; the scheduler is built after the optimizer's state is loaded,
    # which resets the lr, and load_state_dict must put the right one back.
    optimizer = make_optimizer()
    optimizer.load_state_dict(saved["optimizer"])
    scheduler = CosinePowerAnnealingLR(optimizer, **kwargs)
    scheduler.load_state_dict(saved["scheduler"])
    second_part = run_epochs(optimizer, scheduler, 15)
    assert first_part + second_part == uninterrupted


def test_scheduler_resumes_with_last_epoch_argument():
    kwargs = dict(epochs=10, exponent_order=2)
    optimizer = make_optimizer()
    scheduler = CosinePowerAnnealingLR(optimizer, **kwargs)
    uninterrupted = run_epochs(optimizer, scheduler, 10)
    optimizer = make_optimizer()
    run_epochs(optimizer, CosinePowerAnnealingLR(optimizer, **kwargs), 4)
    # initial_lr is already in the groups; last_epoch=3 -> one more step puts us at epoch 5.
    scheduler = CosinePowerAnnealingLR(optimizer, last_epoch=3, **kwargs)
    assert run_epochs(optimizer, scheduler, 6) == uninterrupted[4:]


def test_scheduler_rejects_bad_settings():
    with pytest.raises(ValueError):
        CosinePowerAnnealingLR(make_optimizer(), epochs=10, exponent_order=0.5)
    with pytest.raises(ValueError):
        CosinePowerAnnealingLR(make_optimizer(), epochs=0)


# --- gin --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "binding",
    [
        "CosinePowerAnnealingLR.min_lr = 1.0",
        "sharpdarts.core.schedules.CosinePowerAnnealingLR.warmup_epochs = 2",
        "sharpdarts.core.schedules.cosine_power_annealing.epochs = 3",
    ],
)
def test_what_the_code_always_passes_is_not_gin_configurable(binding):
    """The scheduler class and the numpy curve get every argument from the schedule factory:
    a binding on them could never take effect, so gin refuses it."""
    with pytest.raises(ValueError):
        gin.parse_config(binding)


def test_gin_schedule_factory_applies_its_bindings():
    gin.parse_config(
        [
            "cosine_power_annealing.warmup_epochs = 2",
            "cosine_power_annealing.exponent_order = 3",
            "cosine_power_annealing.min_lr = 1e-3",
        ]
    )
    optimizer = make_optimizer()
    scheduler = SCHEDULES["cosine_power_annealing"](optimizer, 10)
    want = cosine_power_annealing(10, max_lr=0.05, min_lr=1e-3, exponent_order=3, warmup_epochs=2)
    got = [lrs[0] for lrs in run_epochs(optimizer, scheduler, 10)]
    np.testing.assert_allclose(got, want, **TOL)
    # The numpy function keeps its own defaults: the factory's bindings do not reach it.
    np.testing.assert_array_equal(
        cosine_power_annealing(10), cosine_power_annealing(10, exponent_order=10)
    )


def test_cosine_annealing_schedule_is_darts_plain_cosine():
    optimizer = make_optimizer()
    scheduler = cosine_annealing_schedule(optimizer, 8, min_lr=0.01)
    got = [lrs[0] for lrs in run_epochs(optimizer, scheduler, 8)]
    # Epoch e uses the curve after e - 1 steps: the initial lr first, no warm-up, no rescaling.
    want = [0.01 + (0.05 - 0.01) * (1 + math.cos(math.pi * (e - 1) / 8)) / 2 for e in range(1, 9)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_cosine_annealing_stepped_first_is_snas_search_schedule():
    """SNAS's train_search.py (PyTorch 0.4) steps its CosineAnnealingLR(T_max=150, eta_min
    1e-3) at the start of every epoch, after the step its constructor took: epoch e (from 0)
    runs at the closed form of e + 1 steps, the last one at eta_min."""
    optimizer = make_optimizer()
    scheduler = cosine_annealing_schedule(optimizer, 150, min_lr=1e-3, step_first=True)
    got = [lrs[0] for lrs in run_epochs(optimizer, scheduler, 150)]
    want = [1e-3 + (0.05 - 1e-3) * (1 + math.cos(math.pi * (e + 1) / 150)) / 2 for e in range(150)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert got[-1] == pytest.approx(1e-3, abs=1e-15)


def test_constant_schedule_keeps_the_initial_lr():
    optimizer = make_optimizer()
    assert run_epochs(optimizer, SCHEDULES["constant"](optimizer, 5), 5) == [[0.05]] * 5


def test_schedules_are_found_by_name_with_did_you_mean():
    assert resolve_schedule("cosine_annealing") is cosine_annealing_schedule
    assert resolve_schedule(constant_schedule) is constant_schedule
    with pytest.raises(KeyError, match="Did you mean: cosine_annealing"):
        resolve_schedule("cosine_anealing")
