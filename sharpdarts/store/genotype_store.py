"""The write side of the genotype registry: promotion, and a genotype by name or by run.

:mod:`sharpdarts.core.genotypes` reads the registry (``get``, ``names``, ``lineage``); this
module adds to it. A promotion takes an exclusive lock on the registry's folder, re-reads the
file under the lock (so two promotions at once both land) and rewrites it atomically with
:func:`sharpdarts.core.io.atomic_write_json`: a crash never leaves half a registry.

:func:`genotype_of` is the one place where a command's ``NAME_OR_RUN`` argument becomes a
genotype with its lineage (the registry first, then the results store's runs), and
:func:`training_genotype` the one place where a training experiment's ``GENOTYPE`` does, checked
against the search space of the network that takes it. A NAS-Bench-201 cell is kept as the
benchmark's arch string throughout (:mod:`sharpdarts.core.nb201_arch`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sharpdarts.core import genotypes, nb201_arch
from sharpdarts.core.io import atomic_write_json
from sharpdarts.errors import UserError
from sharpdarts.store import store

try:  # POSIX only; elsewhere promotion runs without a lock.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["promote", "genotype_of", "training_genotype", "DirLock"]


class DirLock:
    """An exclusive ``flock`` on a folder, held for a ``with`` block.

    Args:
        directory: the folder to lock (it must exist).
    """

    def __init__(self, directory: str | os.PathLike):
        self._directory = Path(directory)
        self._fd: int | None = None

    def __enter__(self) -> DirLock:
        if fcntl is not None:
            self._fd = os.open(self._directory, os.O_RDONLY)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def promote(
    name: str,
    genotype: genotypes.Genotype | str,
    lineage: dict,
    path: str | os.PathLike | None = None,
    replace: bool = False,
) -> genotypes.Genotype | str:
    """Adds a genotype to the user registry under a new name, with its lineage.

    Args:
        name: The new name: letters, digits and underscores, not starting with a digit.
        genotype: The genotype to store (any layout), or a NAS-Bench-201 arch string.
        lineage: Where it came from (e.g. run id, commit, epoch); must be JSON-serialisable.
        path: The registry file; ``genotypes.user_registry_path()`` when None.
        replace: Replace a promoted genotype of the same name (never a builtin one).

    Returns:
        The stored genotype, as ``genotypes.get(name)`` will return it.

    Raises:
        ValueError: A bad name, a name already taken (builtin or promoted), a malformed
            genotype or a lineage that is not a JSON-serialisable dict. The file is then
            left unchanged.
    """
    if not isinstance(name, str) or not genotypes.NAME_RE.fullmatch(name):
        raise ValueError(
            f"Invalid genotype name {name!r}: use letters, digits and underscores, "
            "not starting with a digit."
        )
    if genotypes.is_builtin(name):
        raise ValueError(
            f"Genotype name {name!r} is already taken by a builtin genotype; choose another name."
        )
    if not isinstance(lineage, dict):
        raise ValueError(f"The lineage must be a dict, got {type(lineage).__name__}.")
    if isinstance(genotype, str):
        stored: Any = genotypes.entry_genotype(genotype)  # a malformed one is a ValueError
    else:
        stored = genotypes.to_dict(genotype)
    entry: dict[str, Any] = {"genotype": stored, "lineage": lineage}
    try:
        # A round trip: what is stored is exactly what a later read gives back.
        entry = json.loads(json.dumps(entry))
    except (TypeError, ValueError) as e:
        raise ValueError(f"The lineage of {name!r} is not JSON-serialisable: {e}") from e
    path = Path(path) if path is not None else genotypes.user_registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with DirLock(path.parent):
        data = genotypes.read_registry(path)
        if name in data["genotypes"] and not replace:
            raise ValueError(
                f"Genotype name {name!r} is already taken in {path}; choose another "
                "name (or replace it)."
            )
        data["genotypes"][name] = entry
        atomic_write_json(path, data)
    return genotypes.entry_genotype(entry["genotype"])


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (a KeyError's without the quotes ``str`` adds)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split())


def genotype_of(
    name_or_run: str, results_dir: str | os.PathLike, best: bool = False
) -> tuple[genotypes.Genotype | str, dict | None]:
    """A registry name, or a run (id, path or ``run:ID``) whose final (or best) genotype is wanted.

    Args:
        name_or_run: a genotype name (builtin or promoted), or a run as
            ``store.runs.find_run`` accepts it.
        results_dir: the results store searched for runs.
        best: take the run's best-epoch genotype rather than its final one.

    Returns:
        ``(genotype, lineage)``, the genotype an arch string for a NAS-Bench-201 cell: for a
        registry name its recorded lineage (None for a builtin one); for a run ``{run_id,
        experiment, commit, dirty, epoch, which, seed}``.

    Raises:
        UserError: neither a genotype nor a run, or a run without that genotype.
    """
    try:
        return genotypes.get(name_or_run), genotypes.lineage(name_or_run)
    except KeyError as exc:
        registry_error = exc
    try:
        run = store.find_run(results_dir, name_or_run)
    except UserError:
        raise UserError(
            f"'{name_or_run}' is neither a genotype nor a run: {_one_line(registry_error)}"
        ) from None
    final = run.info.get("final") or {}
    key = "best_genotype" if best else "genotype"
    if not final.get(key):
        raise UserError(
            f"Run {run.run_id} has no {key.replace('_', ' ')} (status {run.info.get('status')})."
        )
    epoch = final.get("best_epoch") if best else final.get("genotype_epoch")
    git = run.info.get("git") or {}
    lineage = {
        "run_id": run.run_id,
        "experiment": run.info.get("experiment"),
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "epoch": epoch,
        "which": key,
        "seed": run.info.get("seed"),
    }
    try:
        genotype = genotypes.entry_genotype(final[key])
    except (TypeError, ValueError) as exc:
        raise UserError(f"Run {run.run_id}'s {key} is malformed: {_one_line(exc)}") from None
    return genotype, lineage


# What a network of each space takes, for the message that refuses the other space's genotype.
_NETWORKS = {
    "darts": (
        "NetworkCIFAR, NetworkImageNet and the other DARTS-family networks",
        "a DARTS-space genotype name (builtin or promoted) or 'run:RUN_ID' of a DARTS search",
    ),
    "nb201": (
        "NB201Network",
        "a NAS-Bench-201 arch string (|nor_conv_3x3~0|+|...|), a promoted NAS-Bench-201 name "
        "or 'run:RUN_ID' of a NAS-Bench-201 search",
    ),
}


def _wrong_space(value: str, genotype: Any, network_space: str) -> UserError:
    networks, forms = _NETWORKS[network_space]
    return UserError(
        f"GENOTYPE={value!r} is {genotypes.SPACES[genotypes.space_of(genotype)]}, but this "
        f"experiment's network ({networks}) takes {genotypes.SPACES[network_space]}: bind "
        f"GENOTYPE to {forms}. `sharpdarts genotype list` shows each name's space."
    )


def training_genotype(
    value: Any, results_dir: str | os.PathLike, network_space: str = "darts"
) -> tuple[Any, dict | None]:
    """A training experiment's ``GENOTYPE``: what its network is to take, and the run's record.

    The value is a registry name (builtin or promoted), ``'run:RUN_ID'`` (that search run's
    final genotype), a NAS-Bench-201 arch string, or a genotype given in the config itself.

    Args:
        value: the ``GENOTYPE`` macro's value (None: the experiment binds none).
        results_dir: the results store searched for ``run:RUN_ID``.
        network_space: the space of the network that takes it, ``'darts'`` or ``'nb201'``.

    Returns:
        ``(bind, record)``: ``bind`` the value to give the network instead (a run's genotype,
        or a promoted NAS-Bench-201 name's arch string, since ``NB201Network`` takes arch
        strings), or None to keep ``value``; ``record`` what run.json keeps under ``genotype``:
        the name, its source and, for a promoted name or a run, the lineage (run id,
        experiment, commit, epoch). None when there is no ``GENOTYPE``.

    Raises:
        UserError: an unknown name or run, a run without a final genotype, a malformed arch
            string, or a genotype of the other space than the network's.
    """
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, {"name": None, "source": "config", "genotype": value}
    bind: Any = None
    if value.startswith("run:"):
        run = store.find_run(results_dir, value[4:])
        final = run.info.get("final") or {}
        if "genotype" not in final:
            raise UserError(
                f"Run {run.run_id} has no final genotype (status {run.info.get('status')}); "
                "only a completed search run can be named as GENOTYPE='run:RUN_ID'."
            )
        genotype = bind = final["genotype"]
        record = {
            "name": value,
            "source": "run",
            "run_id": run.run_id,
            "experiment": run.info.get("experiment"),
            "commit": (run.info.get("git") or {}).get("commit"),
            "epoch": final.get("genotype_epoch"),
            "genotype": genotype,
        }
    elif value.startswith("|"):  # a NAS-Bench-201 cell, written as the benchmark writes it
        nb201_arch.parse_arch(value)  # a malformed one is a UserError showing the form
        genotype = value
        record = {"name": value, "source": "nb201_arch", "genotype": value}
    else:
        try:
            genotype = genotypes.get(value)
        except KeyError as exc:
            raise UserError(
                f"Unknown genotype: {_one_line(exc)} Names come from the registry "
                "(`sharpdarts genotype list`), experiments/genotypes.json (promoted "
                "searches), or 'run:RUN_ID' for a search run's result."
            ) from None
        except ValueError as exc:
            raise UserError(_one_line(exc)) from None
        stored = genotype if isinstance(genotype, str) else genotypes.to_dict(genotype)
        record = {
            "name": value,
            "source": "builtin" if genotypes.is_builtin(value) else "promoted",
            "lineage": genotypes.lineage(value),
            "genotype": stored,
        }
        if isinstance(genotype, str):
            bind = genotype
    if genotypes.space_of(genotype) != network_space:
        raise _wrong_space(value, genotype, network_space)
    record["space"] = network_space
    return bind, record
