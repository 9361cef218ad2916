"""Learning-rate schedules: cosine power annealing, a torch scheduler around it, and the
injectable per-epoch schedules a job's config names.

Cosine power annealing (sharpDARTS) blends cosine annealing with exponential decay. The
computation follows the original exactly, including its quirks (the curve is rescaled by its
own minimum and maximum, so the values depend on which epochs are asked for); see
``docs/facts/sharpdarts.md``, "Cosine power annealing".

Plain ``cosine_annealing`` and ``exponential_decay`` curves over the same epochs are provided
for comparison plots.

A job's schedule is an injectable component, found by gin name or in :data:`SCHEDULES`:
``train.lr_schedule = @cosine_power_annealing`` (or ``@cosine_annealing``, ``@constant``),
with its settings bound on it (``cosine_power_annealing.min_lr = 1e-8``). A schedule factory
takes ``(optimizer, epochs)`` and returns a torch ``LRScheduler`` stepped once per epoch. The
gin name ``cosine_power_annealing`` belongs to the factory
(:func:`cosine_power_annealing_schedule`); the numpy function of the same Python name is not
gin-configurable, and neither is :class:`CosinePowerAnnealingLR`: the factory passes every
argument, so a binding on them could never take effect.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any, Sequence

import gin
import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from sharpdarts.core import validate
from sharpdarts.registry import Registry

__all__ = [
    "CosinePowerAnnealingLR",
    "SCHEDULES",
    "constant_schedule",
    "cosine_annealing",
    "cosine_annealing_schedule",
    "cosine_power_annealing",
    "cosine_power_annealing_schedule",
    "exponential_decay",
    "resolve_schedule",
    "step_decay_schedule",
]

EpochsArg = int | Sequence[float] | np.ndarray | None


def _epoch_array(epochs: EpochsArg, max_epoch: float | None = None) -> tuple[np.ndarray, float]:
    """Turns the ``epochs`` / ``max_epoch`` arguments into (epoch numbers, max_epoch).

    Args:
        epochs: An epoch count E (meaning epochs 1..E), an array of epoch numbers, or None.
        max_epoch: The largest epoch of the run; None means the largest epoch in the array.

    Returns:
        A new float64 array of epoch numbers (never the caller's array) and max_epoch.

    Raises:
        ValueError: When both are None, or when there are no epochs.
    """
    if epochs is None and max_epoch is None:
        raise ValueError(
            'cosine_power_annealing() needs "epochs" (a count or an array of epoch numbers), '
            f'"max_epoch", or both; got epochs={epochs!r} and max_epoch={max_epoch!r}.'
        )
    if epochs is None:
        epochs = max_epoch
    if np.ndim(epochs) == 0:
        count = float(epochs)  # type: ignore[arg-type]
        if not count.is_integer():
            raise ValueError(f"An epoch count must be a whole number, got {epochs!r}.")
        array = np.arange(int(count), dtype=np.float64) + 1
    else:
        # A float copy: the original shifted the caller's array in place; we never do.
        array = np.array(epochs, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"The schedule needs at least one epoch, got epochs={epochs!r}.")
    if max_epoch is None:
        max_epoch = float(array.max())
    return array, max_epoch


def cosine_power_annealing(
    epochs: EpochsArg = None,
    max_lr: float = 0.1,
    min_lr: float = 1e-4,
    exponent_order: float = 10,
    max_epoch: float | None = None,
    warmup_epochs: float | None = None,
    return_intermediates: bool = False,
    start_epoch: int = 1,
    restart_lr: bool = True,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine power annealing: a learning rate per epoch, from max_lr down to min_lr.

    Cosine annealing often decreases too slowly at the beginning and too quickly at the end;
    exponential decay does the opposite. Cosine power annealing raises ``exponent_order`` to
    the power of the cosine curve, which strikes a configurable balance between the two: the
    larger the exponent order, the more exponential (faster early) the decay; an exponent
    order of 1 is plain cosine annealing.

    The curve is rescaled to [min_lr, max_lr] using the minimum and maximum over the epochs
    asked for (not the theoretical bounds), so without warmup the first value is max_lr and
    the last is min_lr. With warmup, the first ``warmup_epochs + 1`` epochs ramp linearly up
    to max_lr and the cosine power curve is shifted ``warmup_epochs`` epochs later.

    Args:
        epochs: The number of epochs to train (the epochs 1..epochs), or an array of epoch
            numbers. When resuming from epoch 100 to run until epoch 300, give 200. May be
            None when ``max_epoch`` is given (then the epochs are 1..max_epoch).
        max_lr: The maximum learning rate, which is also the initial one.
        min_lr: The minimum learning rate, which is also the final one.
        exponent_order: The base of the power, at least 1. 1 is standard cosine annealing,
            10 decays with an exponential base of 10.
        max_epoch: The largest epoch number that will be encountered; None means the
            largest of ``epochs``. Useful when asking for a part of a longer run.
        warmup_epochs: The number of epochs W of linear warmup; None or 0 for none. The
            epochs up to W + m (m the smallest epoch, which must be 1) get the learning
            rate ``epoch / (m + W)`` of the way from min_lr to max_lr.
        return_intermediates: If True, return ``(lr, proportions, cos_proportions)``
            instead of ``lr``, for comparing and plotting curves.
        start_epoch: The epoch training starts from, which is at index 0 of the result
            when ``restart_lr`` is False.
        restart_lr: If True (the default), the curve starts over from epoch 1 even when
            resuming from a later ``start_epoch``. Otherwise the first ``start_epoch - 1``
            values are dropped, as if training had already run up to ``start_epoch``.

    Returns:
        A 1-d float64 array with the learning rate to use at each epoch. With
        ``return_intermediates``, a tuple ``(lr, proportions, cos_proportions)`` where
        ``proportions`` is the curve rescaled to [0, 1] (warmup ramp included) before it is
        mapped to [min_lr, max_lr], and ``cos_proportions`` is ``(1 + cos(pi * e / M)) / 2``
        for every (warmup-shifted) epoch e. Both intermediates cover every epoch, even when
        ``restart_lr=False`` shortens ``lr``.

    Raises:
        ValueError: If ``epochs`` and ``max_epoch`` are both None, if ``exponent_order`` is
            below 1, or if warmup is asked for while the smallest epoch is above 1.
    """
    epoch_numbers, max_epoch = _epoch_array(epochs, max_epoch)
    if exponent_order < 1:
        raise ValueError(
            "cosine_power_annealing() needs exponent_order >= 1, "
            f"got exponent_order={exponent_order!r}."
        )

    shifted = epoch_numbers
    in_warmup = None
    if warmup_epochs is not None and warmup_epochs > 0:
        first_epoch = float(epoch_numbers.min())
        if first_epoch > 1:
            raise ValueError(
                "cosine_power_annealing(): warmup needs the epochs to start at 1 (resuming with "
                "warmup is not supported; compute the curve from epoch 1 and index it instead); "
                f"got warmup_epochs={warmup_epochs!r} and smallest epoch {first_epoch:g}."
            )
        warmup_end = first_epoch + warmup_epochs
        in_warmup = epoch_numbers <= warmup_end
        # The cosine power curve starts once warmup is over; earlier epochs become <= 0.
        max_epoch = max_epoch - warmup_epochs
        shifted = epoch_numbers - warmup_epochs

    # A zero max_epoch only happens when every epoch is a warmup epoch, whose values are
    # replaced below, so its nan/inf need no warning.
    with np.errstate(divide="ignore", invalid="ignore"):
        # The first half of a cosine period, from 1 down to 0.
        cos_proportions = (1 + np.cos(np.pi * shifted / max_epoch)) / 2
        if exponent_order == 1:
            proportions = cos_proportions
        else:
            proportions = np.power(exponent_order, cos_proportions + 1)
        # Rescale by this array's own range, as the original does.
        proportions = proportions - proportions.min()
        top = proportions.max()
        if top > 0:
            proportions = proportions / top
        else:
            # Every value is equal (e.g. a single epoch): the original divides 0 by 0 and
            # returns nan; we return max_lr instead.
            proportions = np.ones_like(proportions)

    if in_warmup is not None:
        # A linear ramp m/(m+W), (m+1)/(m+W), ..., 1 over the epochs m..m+W.
        proportions[in_warmup] = epoch_numbers[in_warmup] / warmup_end

    lr = proportions * (max_lr - min_lr) + min_lr

    # With restart_lr the original keeps the first len(epochs) values, which is all of them.
    if start_epoch > 1 and not restart_lr:
        lr = lr[start_epoch - 1 :]

    if return_intermediates:
        return lr, proportions, cos_proportions
    return lr


def cosine_annealing(epochs: EpochsArg, max_lr: float, min_lr: float) -> np.ndarray:
    """Plain cosine annealing over the same epochs, for comparison plots.

    ``min_lr + (max_lr - min_lr) * (1 + cos(pi * e / E)) / 2`` for each epoch e, with E the
    largest epoch. This is the comparison curve of the original's figure: it is not rescaled,
    so epoch 1 is slightly below max_lr and epoch E is exactly min_lr. It equals torch's
    ``CosineAnnealingLR(T_max=E, eta_min=min_lr)`` after e steps.

    Args:
        epochs: The number of epochs E (epochs 1..E), or an array of epoch numbers.
        max_lr: The learning rate at epoch 0.
        min_lr: The learning rate at the last epoch.

    Returns:
        A 1-d float64 array with one learning rate per epoch.
    """
    epoch_numbers, last = _epoch_array(epochs)
    return min_lr + (max_lr - min_lr) * (1 + np.cos(np.pi * epoch_numbers / last)) / 2


def exponential_decay(epochs: EpochsArg, max_lr: float, min_lr: float) -> np.ndarray:
    """Exponential (geometric) decay from max_lr at epoch 1 to min_lr at the last epoch.

    ``max_lr * (min_lr / max_lr) ** ((e - 1) / (E - 1))`` for each epoch e, with E the largest
    epoch: a straight line on a log scale.

    Args:
        epochs: The number of epochs E (epochs 1..E), or an array of epoch numbers.
        max_lr: The learning rate at epoch 1 (positive).
        min_lr: The learning rate at the last epoch (positive).

    Returns:
        A 1-d float64 array with one learning rate per epoch.

    Raises:
        ValueError: If max_lr or min_lr is not positive.
    """
    if max_lr <= 0 or min_lr <= 0:
        raise ValueError(
            f"exponential_decay() needs positive learning rates, got max_lr={max_lr!r}, "
            f"min_lr={min_lr!r}."
        )
    epoch_numbers, last = _epoch_array(epochs)
    span = max(last - 1, 1)  # a single epoch stays at max_lr
    return max_lr * (min_lr / max_lr) ** ((epoch_numbers - 1) / span)


class CosinePowerAnnealingLR(LRScheduler):
    """Sets every param group's learning rate to the cosine power annealing schedule.

    Step it once per epoch, after the epoch's optimizer steps. The value for epoch 1 is set
    on construction; after k calls to ``step()`` the value for epoch k + 1 is in effect; past
    the last epoch the last value is held. The state (``state_dict()``) holds only plain
    Python numbers, so a checkpoint that contains it loads with ``weights_only=True``, and
    loading it continues the exact sequence of an uninterrupted run.

    Args:
        optimizer: The optimizer whose learning rates are set.
        epochs: The number of epochs of the run.
        max_lr: The learning rate at the top of the curve. None (the default) uses each
            param group's initial learning rate, so groups keep their own scale.
        min_lr: The final learning rate.
        exponent_order: The base of the power (>= 1); see ``cosine_power_annealing``.
        warmup_epochs: Epochs of linear warmup; None or 0 for none.
        last_epoch: The index of the last epoch done; -1 starts a new run.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        epochs: int,
        max_lr: float | None = None,
        min_lr: float = 1e-4,
        exponent_order: float = 10,
        warmup_epochs: float | None = None,
        last_epoch: int = -1,
    ) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
            raise ValueError(f"CosinePowerAnnealingLR needs epochs >= 1, got {epochs!r}.")
        # Plain Python numbers only: they go into state_dict().
        self.epochs = int(epochs)
        self.max_lr = None if max_lr is None else float(max_lr)
        self.min_lr = float(min_lr)
        self.exponent_order = float(exponent_order)
        self.warmup_epochs = None if warmup_epochs is None else float(warmup_epochs)
        # Fail on a bad configuration now rather than at the first step.
        self._curve(1.0 if max_lr is None else self.max_lr)
        super().__init__(optimizer, last_epoch)

    def _curve(self, max_lr: float) -> np.ndarray:
        return cosine_power_annealing(
            epochs=self.epochs,
            max_lr=max_lr,
            min_lr=self.min_lr,
            exponent_order=self.exponent_order,
            warmup_epochs=self.warmup_epochs,
        )

    def _lrs_at(self, step: int) -> list[float]:
        # step k (k optimizer epochs done) uses the value for epoch k + 1, held at the end.
        index = min(max(step, 0), self.epochs - 1)
        if self.max_lr is not None:
            tops = [self.max_lr] * len(self.base_lrs)
        else:
            tops = [float(base) for base in self.base_lrs]
        curves: dict[float, float] = {}
        for top in tops:
            if top not in curves:
                curves[top] = float(self._curve(top)[index])
        return [curves[top] for top in tops]

    def get_lr(self) -> list[float]:
        """The learning rate of each param group for the current ``last_epoch``."""
        return self._lrs_at(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        return self._lrs_at(self.last_epoch)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the position and settings saved by ``state_dict()``.

        Also sets the optimizer's learning rates to the value for the restored position, so
        resuming does not depend on whether the optimizer's state was loaded before or after
        this scheduler was built (building it resets them to the epoch-1 value).

        Args:
            state_dict: A dict returned by ``state_dict()``.
        """
        super().load_state_dict(state_dict)
        values = self._lrs_at(self.last_epoch)
        for group, value in zip(self.optimizer.param_groups, values, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value
        self._last_lr = [
            group["lr"].clone() if isinstance(group["lr"], torch.Tensor) else group["lr"]
            for group in self.optimizer.param_groups
        ]


# ---- Injectable per-epoch schedules -----------------------------------------------------------
ScheduleFactory = Callable[[Optimizer, int], LRScheduler]

SCHEDULES: Registry[ScheduleFactory] = Registry(
    "learning-rate schedule",
    "SCHEDULES",
    hint="Bind one with e.g. train.lr_schedule = @cosine_power_annealing.",
)


@SCHEDULES.register("cosine_power_annealing")
@gin.configurable("cosine_power_annealing", denylist=["optimizer", "epochs"])
@validate.params(
    min_lr=validate.NON_NEGATIVE,
    exponent_order=validate.Real("a number >= 1", low=1.0),
    warmup_epochs=validate.NON_NEGATIVE.or_none(),
)
def cosine_power_annealing_schedule(
    optimizer: Optimizer,
    epochs: int,
    min_lr: float = 1e-4,
    exponent_order: float = 2,
    warmup_epochs: float | None = 5,
) -> LRScheduler:
    """Cosine power annealing from each param group's initial lr down to ``min_lr``.

    The gin name is ``cosine_power_annealing``. The defaults are the search protocol's
    (docs/facts/sharpdarts.md, "Cell search settings": p = 2, 5 warm-up epochs, 1e-4).

    Args:
        optimizer: the optimizer whose learning rates are set (its lr is the top of the curve).
        epochs: the run's epoch count.
        min_lr: the final learning rate.
        exponent_order: the base of the power (>= 1); 1 is cosine annealing (rescaled).
        warmup_epochs: epochs of linear warm-up; None or 0 for none.
    """
    return CosinePowerAnnealingLR(
        optimizer, epochs, min_lr=min_lr, exponent_order=exponent_order, warmup_epochs=warmup_epochs
    )


@SCHEDULES.register("cosine_annealing")
@gin.configurable("cosine_annealing", denylist=["optimizer", "epochs"])
@validate.params(min_lr=validate.NON_NEGATIVE)
def cosine_annealing_schedule(
    optimizer: Optimizer, epochs: int, min_lr: float = 0.0, step_first: bool = False
) -> LRScheduler:
    """Plain cosine annealing, as DARTS's train.py: no warm-up, no rescaling.

    The gin name is ``cosine_annealing``. Epoch e (1-based) uses
    ``min_lr + (lr0 - min_lr) * (1 + cos(pi * (e - 1) / epochs)) / 2``: the initial lr in
    epoch 1, torch's ``CosineAnnealingLR(T_max=epochs, eta_min=min_lr)`` stepped per epoch.

    Args:
        optimizer: the optimizer whose learning rates are set.
        epochs: the run's epoch count (the half period).
        min_lr: the learning rate the curve reaches after ``epochs`` steps.
        step_first: step the schedule once before the first epoch, so that epoch e uses the
            curve at ``e`` rather than ``e - 1``: the initial lr is never used and the last
            epoch runs at ``min_lr``. That is what a loop does that calls
            ``scheduler.step()`` at the start of every epoch under PyTorch < 1.1, whose
            scheduler had already taken one step when built (SNAS's ``train_search.py``).
    """
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)
    if step_first:
        with warnings.catch_warnings():  # no optimizer step yet, on purpose
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
            scheduler.step()
    return scheduler


@SCHEDULES.register("constant")
@gin.configurable("constant", denylist=["optimizer", "epochs"])
def constant_schedule(optimizer: Optimizer, epochs: int) -> LRScheduler:
    """The initial learning rate in every epoch (gin name ``constant``).

    Args:
        optimizer: the optimizer, whose learning rates stay as they are.
        epochs: the run's epoch count (unused: every epoch is alike).
    """
    del epochs
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def resolve_schedule(schedule: str | ScheduleFactory) -> ScheduleFactory:
    """A schedule factory given by name (a key of :data:`SCHEDULES`) or passed through."""
    return schedule if callable(schedule) else SCHEDULES[schedule]


@SCHEDULES.register("step_decay")
@gin.configurable("step_decay", denylist=["optimizer", "epochs"])
def step_decay_schedule(optimizer: Optimizer, epochs: int, gamma: float = 0.97) -> LRScheduler:
    """The lr times ``gamma`` after every epoch (DARTS's ImageNet training: 0.97, gin name
    ``step_decay``); epoch e (1-based) uses ``lr0 * gamma ** (e - 1)``.

    Args:
        optimizer: the optimizer whose learning rates are set.
        epochs: the run's epoch count (unused: the decay is per epoch).
        gamma: the factor per epoch.
    """
    del epochs
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=gamma)
