"""Each job's parameters, declared once: one frozen dataclass per job.

A field is one parameter: its name, type, default (or ``REQUIRED``), the kind of value it must
be (a :class:`~sharpdarts.core.validate.Kind`, or ``UNCHECKED``) and a line of documentation::

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class SearchParams:
        epochs: int = param(validate.EPOCHS, REQUIRED, "search epochs.")
        learning_rate: float = param(validate.LEARNING_RATE, 0.025, "the weights' initial lr.")

    @job_entry(SearchParams)
    def search(run=None, seed: int = 0, data=None, build_only: bool = False, **params):
        job = SearchJob(seed, data, SearchParams(**params))
        return job if build_only else job.fit(run)

Everything else reads the dataclass. :func:`job_entry` gives the entry function the fields as
its keyword-only parameters, so gin binds them (``search.epochs``), insists on the ``REQUIRED``
ones and records each one it passes in the operative config, defaults included (the run's
record of its parameters); it declares their kinds to :mod:`sharpdarts.core.validate` (checked
by binding name before the build); it appends their documentation to the entry's docstring; and
it makes the entry a gin configurable whose own parameters (``run``, ``seed``, ``data``, ...)
are not configurable. The job's constructor takes the dataclass and keeps it as ``job.params``.
Gin only: no torch.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import gin

from sharpdarts.core import validate

__all__ = ["REQUIRED", "UNCHECKED", "param", "job_entry", "params_of", "kinds", "defaults"]

REQUIRED = gin.REQUIRED


class _Unchecked:
    """The kind of a parameter that no kind checks (a callable, a name resolved later, ...)."""

    def __repr__(self) -> str:
        return "UNCHECKED"


UNCHECKED = _Unchecked()


def param(kind: validate.Kind | _Unchecked, default: Any, doc: str) -> Any:
    """One parameter of a job: a dataclass field that carries its kind and documentation.

    Args:
        kind: what its values must be (checked by binding name before the build), or
            ``UNCHECKED``.
        default: its value when nothing binds it, or ``REQUIRED``.
        doc: what it does, for the entry's docstring.
    """
    if kind is not UNCHECKED and not isinstance(kind, validate.Kind):
        raise TypeError(f"a parameter's kind is a validate.Kind or UNCHECKED, not {kind!r}")
    return dataclasses.field(
        default=dataclasses.MISSING if default is REQUIRED else default,
        metadata={"kind": kind, "doc": doc},
    )


def defaults(params_class: type) -> dict[str, Any]:
    """Each parameter's default (``REQUIRED`` for one without)."""
    return {
        f.name: REQUIRED if f.default is dataclasses.MISSING else f.default
        for f in dataclasses.fields(params_class)
    }


def kinds(params_class: type) -> dict[str, validate.Kind | _Unchecked]:
    """Each parameter's kind (``UNCHECKED`` for one no kind checks)."""
    return {f.name: f.metadata["kind"] for f in dataclasses.fields(params_class)}


def params_of(entry: Callable[..., Any]) -> type | None:
    """The parameter dataclass of a job entry (its gin configurable), or None."""
    return getattr(entry, "params_class", None)


def _documented(doc: str | None, selector: str, params_class: type) -> str:
    """The entry's docstring followed by one line per parameter."""
    lines = [f"Parameters (bound as ``{selector}.NAME``; :class:`{params_class.__name__}`):"]
    for f in dataclasses.fields(params_class):
        kind = f.metadata["kind"]
        default = "required" if f.default is dataclasses.MISSING else f"default {f.default!r}"
        must = "" if kind is UNCHECKED else f"; {kind.what}"
        lines.append(f"    {f.name} ({default}{must}): {f.metadata['doc']}")
    return (inspect.cleandoc(doc or "") + "\n\n" + "\n".join(lines)).strip()


def job_entry(params_class: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Makes ``fn(run=None, seed=0, ..., **params)`` the gin-configurable entry of a job whose
    parameters are ``params_class``'s fields (see the module docstring).

    Raises:
        TypeError: ``params_class`` is not a dataclass of :func:`param` fields, or ``fn`` takes
            no ``**params`` or shares a name with a field.
    """
    fields = dataclasses.fields(params_class)
    missing = [f.name for f in fields if "kind" not in f.metadata]
    if missing:
        raise TypeError(f"{params_class.__name__} fields {missing} are not declared by param()")

    def declare(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(fn).parameters.values())
        if not own or own[-1].kind is not inspect.Parameter.VAR_KEYWORD:
            raise TypeError(f"{fn.__qualname__} must end with **params")
        own = own[:-1]
        clash = sorted({p.name for p in own} & {f.name for f in fields})
        if clash:
            raise TypeError(f"{fn.__qualname__} takes {clash} itself and as parameters")
        declared = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=f.type,
                default=defaults(params_class)[f.name],
            )
            for f in fields
        ]
        fn.__signature__ = inspect.signature(fn).replace(parameters=own + declared)
        fn.__doc__ = _documented(fn.__doc__, fn.__name__, params_class)
        fn.params_class = params_class  # gin's wrapper copies it (functools.wraps)
        checked = {
            name: kind for name, kind in kinds(params_class).items() if kind is not UNCHECKED
        }
        validate.params(**checked)(fn)
        # The entry's own parameters are the caller's (the runner's), never a binding's.
        return gin.configurable(denylist=[p.name for p in own])(fn)

    return declare
