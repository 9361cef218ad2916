"""Genotypes: the named-genotype registry (read side), the one resolver, and the public path
of the Genotype type, the primitive sets and cell parsing (defined in
:mod:`sharpdarts.core.genotype_types` and :mod:`sharpdarts.core.recurrent_genotypes`).

Named genotypes come from two places: the published ones in ``reference/genotypes.json``
(shipped with the package; the *builtin* names) and a user registry file holding genotypes
promoted from search runs together with their lineage. By default the user registry is
``experiments/genotypes.json`` under ``sharpdarts.resources.writable_root()`` (the project
root); the environment variable ``SHARPDARTS_GENOTYPES`` names another file. Builtin names
always win and cannot be shadowed.

A name belongs to one search *space* (:func:`space_of`): ``'darts'`` for the DARTS family's
genotypes (cells, weights, paths and recurrent cells) and ``'nb201'`` for NAS-Bench-201 cells,
which the registry keeps as the benchmark's arch strings (``'|nor_conv_3x3~0|+|...|'``, see
:mod:`sharpdarts.core.nb201_arch`): :func:`get` returns such a name's string.

This module only reads the registry; writing to it (promotion) is
:mod:`sharpdarts.store.genotype_store`'s job. :func:`resolve` is the one place where a
genotype given as a value (a Genotype, a dict or a name) becomes a Genotype.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sharpdarts import resources
from sharpdarts.core import genotype_types as _types
from sharpdarts.core import nb201_arch

# The public API promises these names at this path (docs/api.md); they are defined in
# genotype_types and recurrent_genotypes, and imported from here everywhere else.
from sharpdarts.core.genotype_types import (  # noqa: F401
    DARTS_PRIMITIVES,
    LAYOUTS,
    MULTICHANNELNET_PRIMITIVES,
    PRIMITIVES,
    SHARPER_PRIMITIVES,
    Genotype,
    parse_cell,
    reference_data,
)
from sharpdarts.core.recurrent_genotypes import (  # noqa: F401
    RECURRENT_GENOTYPES,
    RNN_PRIMITIVES,
    RecurrentGenotype,
    recurrent_from_dict,
    recurrent_to_dict,
)
from sharpdarts.errors import UserError
from sharpdarts.registry import unknown_name

__all__ = [
    "DARTS_PRIMITIVES",
    "MULTICHANNELNET_PRIMITIVES",
    "PRIMITIVES",
    "RNN_PRIMITIVES",
    "SHARPER_PRIMITIVES",
    "Genotype",
    "parse_cell",
    "to_dict",
    "from_dict",
    "to_json",
    "from_json",
    "get",
    "resolve",
    "names",
    "builtin_names",
    "aliases",
    "is_builtin",
    "lineage",
    "user_registry_path",
    "NAME_RE",
    "SPACES",
    "space_of",
    "entry_genotype",
]

ENV_VAR = "SHARPDARTS_GENOTYPES"

# What a promoted name may look like (a Python identifier, so gin macros can hold it).
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The search spaces a registry name can belong to: what a genotype of each is, in words.
SPACES = {"darts": "a DARTS-space genotype", "nb201": "a NAS-Bench-201 cell"}


def space_of(genotype) -> str:
    """``'nb201'`` for a NAS-Bench-201 arch string, ``'darts'`` for any other genotype."""
    return "nb201" if isinstance(genotype, str) else "darts"


def entry_genotype(value: Any):
    """A registry entry's or a run's recorded genotype: an arch string stays a (checked) string,
    a genotype dict becomes a Genotype (or RecurrentGenotype).

    Raises:
        ValueError: a malformed genotype dict or arch string.
    """
    if isinstance(value, str):
        try:
            nb201_arch.parse_arch(value)
        except UserError as e:  # its message shows what an arch string looks like
            raise ValueError(str(e)) from None
        return value.strip()
    return from_dict(value)


def to_dict(genotype) -> dict[str, Any]:
    """A genotype's JSON-ready dict; recurrent genotypes have ``recurrent``, ``concat`` and
    ``layout='recurrent'`` (see :func:`sharpdarts.core.genotype_types.to_dict` for cells)."""
    if isinstance(genotype, RecurrentGenotype):
        return recurrent_to_dict(genotype)
    return _types.to_dict(genotype)


def from_dict(d: Mapping[str, Any]):
    """Inverse of :func:`to_dict`, for cell, path, raw-weight and recurrent genotypes."""
    if isinstance(d, Mapping) and (d.get("layout") == "recurrent" or "recurrent" in d):
        return recurrent_from_dict(d)
    return _types.from_dict(d)


def to_json(genotype) -> str:
    """A genotype as JSON text (see :func:`to_dict`)."""
    return json.dumps(to_dict(genotype))


def from_json(text: str):
    """Parses the JSON text written by :func:`to_json`."""
    return from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------
# Registry


@functools.lru_cache(maxsize=1)
def _builtin() -> dict[str, Genotype]:
    """Every published genotype by name, aliases resolved to their target's genotype."""
    ref = reference_data()
    table: dict[str, Genotype] = {}
    for section in ("cell_genotypes", "edge_genotypes", "raw_weight_genotypes"):
        for name, d in ref.get(section, {}).items():
            table[name] = from_dict(d)
    for name, path in ref["multichannel_paths"].items():
        table[name] = Genotype(list(path), [], [], [], "path")
    for alias, target in ref["aliases"].items():
        table[alias] = table[target]
    return table


def aliases() -> dict[str, str]:
    """The published aliases: ``{alias: target_name}``."""
    return dict(reference_data()["aliases"])


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a published (builtin) genotype name or alias."""
    return name in _builtin() or name in RECURRENT_GENOTYPES


def user_registry_path() -> Path:
    """The user registry file: ``$SHARPDARTS_GENOTYPES``, else
    ``resources.writable_root() / 'experiments' / 'genotypes.json'``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return resources.writable_root() / "experiments" / "genotypes.json"


def read_registry(path: Path) -> dict[str, Any]:
    """Reads a user registry file (``{"genotypes": {NAME: {genotype, lineage}}}``); a missing
    file is an empty registry.

    Raises:
        ValueError: the file is not JSON or not of that shape.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"genotypes": {}}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"The genotype registry {path} is not valid JSON: {e}.") from e
    if not isinstance(data, dict) or not isinstance(data.get("genotypes", {}), dict):
        raise ValueError(f'The genotype registry {path} must hold {{"genotypes": {{NAME: ...}}}}.')
    data.setdefault("genotypes", {})
    return data


def _user_entries(path: Path | None = None) -> dict[str, Any]:
    return read_registry(Path(path) if path is not None else user_registry_path())["genotypes"]


def get(name: str) -> Genotype | RecurrentGenotype | str:
    """Looks up a named genotype: builtin first, then the user registry.

    Args:
        name: A published name or alias (e.g. ``'DARTS_V2'``) or a promoted name.

    Returns:
        A fresh copy of the genotype (mutating it does not touch the registry); for a promoted
        NAS-Bench-201 cell, its arch string.

    Raises:
        KeyError: The name is unknown (the message lists close matches).
        ValueError: The user registry file or its entry is malformed.
    """
    table = _builtin()
    if name in table:
        return copy.deepcopy(table[name])
    # The recurrent cells (DARTS's language models) are kept apart from the convolutional
    # table so that code iterating over builtin cell names keeps meaning image cells.
    if name in RECURRENT_GENOTYPES:
        return copy.deepcopy(RECURRENT_GENOTYPES[name])
    entries = _user_entries()
    if name not in entries:
        raise unknown_name(
            "genotype", name, list(table) + list(RECURRENT_GENOTYPES) + list(entries)
        )
    try:
        return entry_genotype(entries[name]["genotype"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"Genotype {name!r} in {user_registry_path()} is malformed: {e}") from e


def resolve(value: Any) -> Genotype:
    """The one genotype resolver: a Genotype, a genotype dict or a registry name -> Genotype.

    Args:
        value: a ``Genotype`` (returned as it is); a dict as written by :func:`to_dict`; a
            named tuple with Genotype's fields (e.g. the original code's 4-field Genotype);
            or a name of the registry (builtin or promoted).

    Returns:
        The genotype.

    Raises:
        UnknownNameError: (a KeyError) an unknown name, with close matches.
        ValueError: a malformed dict or registry entry, or the name of a NAS-Bench-201 cell (a
            DARTS-space network cannot take one).
        TypeError: a value of any other type.
    """
    if isinstance(value, (Genotype, RecurrentGenotype)):
        return value
    if isinstance(value, str):
        genotype = get(value)
        if space_of(genotype) != "darts":
            raise ValueError(
                f"Genotype {value!r} is a NAS-Bench-201 cell (for NB201Network), not a "
                "DARTS-space genotype."
            )
        return genotype
    if isinstance(value, Mapping):
        return from_dict(value)
    if hasattr(value, "_asdict"):
        return from_dict(value._asdict())
    raise TypeError(
        f"A genotype is a Genotype, a genotype dict or a registry name, got {type(value).__name__}."
    )


def _check_layout(layout: str | None) -> None:
    if layout is not None and layout not in LAYOUTS + ("nb201",):
        raise ValueError(
            f"Unknown genotype layout {layout!r}; expected one of {', '.join(LAYOUTS)} or nb201."
        )


def builtin_names(layout: str | None = None) -> list[str]:
    """Sorted published names (aliases included), optionally of one layout; never the user
    registry's (tests parametrise over these: they are the same on every machine).

    Raises:
        ValueError: An unknown layout.
    """
    _check_layout(layout)
    return sorted(n for n, g in _builtin().items() if layout is None or g.layout == layout)


def names(layout: str | None = None) -> list[str]:
    """Sorted names of every builtin and promoted genotype, optionally of one layout.

    Args:
        layout: None for all, else one of ``LAYOUTS``, or ``'nb201'`` (NAS-Bench-201 cells).

    Raises:
        ValueError: An unknown layout.
    """
    _check_layout(layout)
    found = {n: g.layout for n, g in _builtin().items()}
    for n, entry in _user_entries().items():
        if n not in found:
            genotype = entry.get("genotype", {}) if isinstance(entry, dict) else {}
            if isinstance(genotype, str):
                found[n] = "nb201"
            else:
                found[n] = genotype.get("layout", "cell") if isinstance(genotype, dict) else None
    return sorted(n for n, lay in found.items() if layout is None or lay == layout)


def lineage(name: str) -> dict | None:
    """The lineage recorded when ``name`` was promoted, or None for a builtin genotype.

    Raises:
        KeyError: The name is unknown.
    """
    if is_builtin(name):
        return None
    entries = _user_entries()
    if name not in entries:
        raise unknown_name("genotype", name, list(_builtin()) + list(entries))
    return copy.deepcopy(entries[name].get("lineage"))
