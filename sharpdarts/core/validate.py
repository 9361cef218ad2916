"""Typed, bounded parameters: every value a run depends on is checked before anything is written.

Each component declares its parameters' kinds once, beside its definition::

    @gin.configurable
    @validate.params(C=validate.WIDTH, layers=validate.DEPTH, primitives=validate.PRIMITIVE_SET)
    class SearchNetwork(nn.Module): ...

The runner calls :func:`check_config` after the config is parsed and before the dry build: every
binding of a declared parameter (macros such as ``EPOCHS`` followed to their value) is checked,
and the first bad one is refused with a :class:`~sharpdarts.errors.UserError` (exit 2) that
names the binding. Values given on the command line (seed, data root, results root) go through
:func:`check_value` with the same kinds. The declaration does not wrap the component: a value
passed by Python code is the caller's business. Gin only: no torch.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sharpdarts.core import config
from sharpdarts.errors import UserError, one_line

__all__ = [
    "Kind",
    "Int",
    "Real",
    "Choice",
    "Satisfies",
    "Folder",
    "params",
    "check_config",
    "check_value",
    "declared",
    "EPOCHS",
    "BATCH_SIZE",
    "LEARNING_RATE",
    "WIDTH",
    "DEPTH",
    "COUNT",
    "PORTION",
    "PROBABILITY",
    "SEED",
    "NON_NEGATIVE",
    "PRIMITIVE_SET",
    "WORKERS",
    "FOLDER",
]


@dataclasses.dataclass(frozen=True)
class Kind(abc.ABC):
    """A kind of value: ``check(value)`` returns None when the value fits, else what is wrong.

    Attributes:
        what: the kind in words, for messages ('an integer >= 1').
        optional: whether None is allowed (for 'not used' values such as ``valid_portion``).
    """

    what: str
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        """None when ``value`` fits, else a short description of what is wrong."""
        if value is None:
            return None if self.optional else "it may not be None"
        return self._problem(value)

    @abc.abstractmethod
    def _problem(self, value: Any) -> str | None:
        """What is wrong with a value that is not None, or None when it fits."""

    def or_none(self) -> "Kind":
        """The same kind, allowing None."""
        return dataclasses.replace(self, optional=True, what=f"{self.what}, or None")


def _number(value: Any, integer: bool) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"it is a {type(value).__name__}"
    if integer and not isinstance(value, int):
        return "it is not an integer"
    if isinstance(value, float) and not math.isfinite(value):
        return "it is not finite"
    return None


@dataclasses.dataclass(frozen=True)
class Int(Kind):
    """An integer (never a bool or float) in ``[low, high]`` (a None bound is open)."""

    low: int | None = None
    high: int | None = None

    def _problem(self, value):
        wrong = _number(value, integer=True)
        if wrong is None and (
            (self.low is not None and value < self.low)
            or (self.high is not None and value > self.high)
        ):
            wrong = "it is out of range"
        return wrong


@dataclasses.dataclass(frozen=True)
class Real(Kind):
    """A finite number between ``low`` and ``high``, each bound open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def _problem(self, value):
        wrong = _number(value, integer=False)
        if wrong is not None:
            return wrong
        too_low = self.low is not None and (
            value <= self.low if self.low_open else value < self.low
        )
        too_high = self.high is not None and (
            value >= self.high if self.high_open else value > self.high
        )
        return "it is out of range" if too_low or too_high else None


@dataclasses.dataclass(frozen=True)
class Choice(Kind):
    """One of a fixed set of values."""

    choices: tuple = ()

    def _problem(self, value):
        return None if value in self.choices else "it is not one of them"


@dataclasses.dataclass(frozen=True)
class Satisfies(Kind):
    """A value that ``test`` accepts: it returns None, or raises ValueError, KeyError or
    TypeError saying what is wrong (e.g. an unknown primitive set, with close names)."""

    test: Callable[[Any], Any] = lambda value: None

    def _problem(self, value):
        try:
            self.test(value)
        except (ValueError, KeyError, TypeError) as exc:
            return one_line(exc)
        return None


@dataclasses.dataclass(frozen=True)
class Folder(Kind):
    """A folder path: it may not exist yet (it is then made), but it may not be a file, nor lie
    under a file."""

    def _problem(self, value):
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            return f"it is a {type(value).__name__}, not a path"
        path = Path(value)
        for part in (path, *path.parents):
            if part.exists():
                return None if part.is_dir() else f"{part} is a file, not a folder"
        return None


def _primitive_set(value: Any) -> None:
    from sharpdarts.core.genotype_types import primitives

    names = primitives(value)  # an unknown set name: KeyError with close names
    if not names:
        raise ValueError("the primitive set is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"the primitive set repeats a name: {names}")


EPOCHS = Int("an integer >= 1", low=1)
BATCH_SIZE = Int("an integer >= 1", low=1)
LEARNING_RATE = Real("a number > 0", low=0.0, low_open=True)
WIDTH = Int("an integer >= 1 (channels)", low=1)
DEPTH = Int("an integer >= 1 (layers)", low=1)
COUNT = Int("an integer >= 1", low=1)
NON_NEGATIVE = Real("a number >= 0", low=0.0)
WORKERS = Int("an integer >= 0", low=0)
PORTION = Real("a share in (0, 1)", low=0.0, high=1.0, low_open=True, high_open=True)
PROBABILITY = Real("a probability in [0, 1]", low=0.0, high=1.0)
SEED = Int("an integer in [0, 2**32)", low=0, high=2**32 - 1)
PRIMITIVE_SET = Satisfies(
    "a primitive set name (e.g. 'DARTS_PRIMITIVES') or a list of op names", test=_primitive_set
)
FOLDER = Folder("a folder (not a file)")

# The declared parameters of each component, keyed by the component itself.
_DECLARED: dict[Any, dict[str, Kind]] = {}


def params(**kinds: Kind) -> Callable[[Any], Any]:
    """Declares the kinds of a component's parameters (put it under ``@gin.configurable``).

    Raises:
        TypeError: a declared name is not a parameter of the component (a typo).
    """

    def declare(component):
        accepted = inspect.signature(component).parameters
        unknown = sorted(set(kinds) - set(accepted))
        if unknown:
            raise TypeError(f"{component.__qualname__} has no parameters {unknown}")
        _DECLARED.setdefault(component, {}).update(kinds)
        return component

    return declare


def declared() -> dict[Any, dict[str, Kind]]:
    """Every declaration made so far (component -> parameter -> kind)."""
    return {component: dict(kinds) for component, kinds in _DECLARED.items()}


def _refusal(name: str, value: Any, kind: Kind, wrong: str, macros: list[str] = ()) -> UserError:
    if name.startswith("--"):
        return UserError(
            f"The option {name} {value!r} is refused ({wrong}): it must be "
            f"{kind.what}. Nothing was run or written."
        )
    if macros:
        chain = " = ".join(f"%{m}" for m in macros)
        shown = f"The binding {name} = {chain} is refused: {macros[-1]} = {value!r} ({wrong})"
    else:
        shown = f"The binding {name} = {value!r} is refused ({wrong})"
    return UserError(
        f"{shown}; {name} must be {kind.what}. Nothing was run or written: fix "
        "the binding and run again."
    )


def check_value(name: str, value: Any, kind: Kind) -> None:
    """Refuses ``value`` of ``name`` (a binding or command-line option) unless it is ``kind``.

    Raises:
        UserError: naming ``name``, the value and the kind expected.
    """
    wrong = kind.problem(value)
    if wrong is not None:
        raise _refusal(name, value, kind, wrong)


def check_config() -> None:
    """Checks every binding of a declared parameter in gin's parsed config (call before the
    dry build, so that a bad value is refused before anything is built or written).

    Raises:
        UserError: the first bad binding, by name (with the macro it came through, if any).
    """
    for component, kinds in _DECLARED.items():
        selector = config.selector_of(component)
        if selector is None:
            continue  # not a gin configurable: nothing a config can bind
        for (scope, param), (value, macros) in sorted(config.bound_values(selector).items()):
            kind = kinds.get(param)
            if kind is None or macros is None:
                continue  # undeclared, or a reference (@fn()) known only when it is called
            wrong = kind.problem(value)
            if wrong is not None:
                name = config.binding_name((scope, selector, param))
                raise _refusal(name, value, kind, wrong, macros)
