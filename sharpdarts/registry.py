"""The one registry class: named components (ops, weightings, primitive sets, datasets,
schedules, optimizers, experiments, ...) with ``list``-style lookup and did-you-mean errors.

Every "unknown name" error of the library comes from :func:`unknown_name`, so they all read
alike: ``Unknown op 'sep_conv_3x33'. Did you mean: sep_conv_3x3?``
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; ``str()`` is the plain message (a KeyError would quote it).

    Also a ``ValueError``-free ``KeyError`` so that existing ``except KeyError`` callers keep
    working; the command line turns it into exit status 2 (see :mod:`sharpdarts.errors`).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def close_matches(
    name: object, candidates: Iterable[str], n: int = 5, cutoff: float = 0.6
) -> list[str]:
    """The candidates closest to ``name``, compared case-insensitively."""
    folded = {str(c).lower(): str(c) for c in candidates}
    matches = difflib.get_close_matches(str(name).lower(), list(folded), n=n, cutoff=cutoff)
    return [folded[m] for m in matches]


def unknown_name(
    kind: str,
    name: object,
    candidates: Iterable[str],
    *,
    where: str = "",
    cutoff: float = 0.6,
    hint: str = "",
) -> UnknownNameError:
    """The error for an unknown name, naming the closest known names (or all of them).

    Args:
        kind: what the name names ("op", "genotype", "dataset", ...).
        name: the name asked for.
        candidates: every known name.
        where: an optional place, e.g. "in the op table OPS".
        cutoff: difflib's similarity cutoff for suggestions.
        hint: a sentence appended to the message (where names come from, ...).
    """
    candidates = sorted(str(c) for c in candidates)
    close = close_matches(name, candidates, cutoff=cutoff)
    if close:
        suggestion = "Did you mean: " + ", ".join(close) + "?"
    elif len(candidates) <= 40:
        suggestion = "Known names: " + (", ".join(candidates) or "(none)") + "."
    else:
        suggestion = f"There are {len(candidates)} known names."
    place = f" {where}" if where else ""
    message = f"Unknown {kind} {str(name)!r}{place}. {suggestion}"
    return UnknownNameError(message + (f" {hint}" if hint else ""))


class Registry(MutableMapping[str, T], Generic[T]):
    """A named mapping ``name -> component`` with a ``register`` decorator.

    Looking up an unknown name raises :class:`UnknownNameError` with suggestions. Iteration
    keeps registration order (the order of a primitive set, say).

    Example:
        >>> WEIGHTINGS = Registry("weighting")
        >>> @WEIGHTINGS.register("scalar")
        ... def scalar(w): return w
    """

    def __init__(self, kind: str, name: str | None = None, *, hint: str = ""):
        """
        Args:
            kind: what one entry is ("op", "weighting", ...), used in error messages.
            name: the registry's own name, when there are several of one kind ("OPS").
            hint: a sentence appended to unknown-name errors.
        """
        self.kind = kind
        self.name = name or kind
        self.hint = hint
        self._items: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = True) -> Callable[[T], T]:
        """A decorator adding its target under ``name`` and returning it unchanged."""

        def decorate(item: T) -> T:
            if not replace and name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered in {self.name}")
            self._items[name] = item
            return item

        return decorate

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._items)

    def error(self, name: object) -> UnknownNameError:
        """The did-you-mean error for ``name``."""
        where = f"in {self.name}" if self.name != self.kind else ""
        return unknown_name(self.kind, name, self._items, where=where, hint=self.hint)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise self.error(name) from None

    def __setitem__(self, name: str, item: T) -> None:
        self._items[name] = item

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}: {', '.join(self._items)})"
