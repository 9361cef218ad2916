"""Named experiments: the ``.gin`` files under every root's ``experiments/`` folder.

The roots come from :mod:`sharpdarts.resources`: the user's project (``--project DIR`` or
``$SHARPDARTS_PROJECT``) first, then the source checkout, then the files shipped inside the
installed package. A name found in an earlier root hides the same name in a later one, so a
user can override a shipped experiment by writing their own under the same name.

This module also says where gin looks for ``include``\\ d fragments
(:func:`gin_search_paths`) and makes the user's own modules importable from a config's
``import`` statements (:func:`make_user_code_importable`). No torch here: ``sharpdarts list``
uses it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sharpdarts import resources
from sharpdarts.errors import UserError
from sharpdarts.registry import unknown_name


def experiment_dirs() -> list[Path]:
    """Every root's ``experiments/`` folder, the user's project first."""
    return resources.find_all("experiments")


def experiment_files() -> dict[str, Path]:
    """``{name: .gin path}`` for every named experiment, sorted by name.

    A name is the path under ``experiments/`` without ``.gin`` (``cifar10/sharpdarts``).
    """
    files: dict[str, Path] = {}
    for folder in experiment_dirs():
        for path in folder.rglob("*.gin"):
            files.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    return dict(sorted(files.items()))


def experiment_names() -> list[str]:
    """Every named experiment, sorted."""
    return list(experiment_files())


def experiment_path(name: str) -> Path:
    """The .gin file of a named experiment (see :func:`resolve_experiment`)."""
    return resolve_experiment(name)[1]


def _name_of(path: Path) -> str:
    """The experiment name of a .gin file: its path under a root's experiments/, else its stem."""
    resolved = path.resolve()
    for folder in experiment_dirs():
        try:
            return resolved.relative_to(folder.resolve()).with_suffix("").as_posix()
        except ValueError:
            continue
    return path.stem


def resolve_experiment(name: str) -> tuple[str, Path]:
    """An experiment name (``cifar10/sharpdarts``) or a path to any .gin file.

    Returns:
        ``(experiment name, .gin path)``.

    Raises:
        UserError: neither a .gin file nor a known name (the message names close matches).
    """
    path = Path(name)
    if path.suffix == ".gin" and path.is_file():
        return _name_of(path), path
    files = experiment_files()
    if name in files:
        return name, files[name]
    error = unknown_name(
        "experiment",
        name,
        files,
        cutoff=0.5,
        hint="`sharpdarts list` shows every experiment; a path to a .gin file also works.",
    )
    raise UserError(str(error)) from None


def gin_fragment(name: str) -> Path:
    """A fragment under ``gin/`` from the first root holding it, e.g. ``'smoke'`` or
    ``'datasets/cifar10'`` (no suffix)."""
    relative = f"gin/{name}.gin"
    path = resources.find(relative)
    if path is None:  # only a broken install lacks the shipped fragments
        raise UserError(f"{relative} is in none of {', '.join(map(str, resources.roots()))}.")
    return path


def smoke_gin() -> Path:
    """``gin/smoke.gin``, the fragment that ``--smoke`` adds."""
    return gin_fragment("smoke")


def gin_search_paths() -> list[str]:
    """The folders gin resolves ``include 'gin/...'`` against, the user's project first.

    The runner passes each to ``gin.add_config_file_search_path`` before parsing.
    """
    return [str(root) for root in resources.roots()]


def user_code_paths(config_files: list[str | os.PathLike]) -> list[Path]:
    """The folders a config's ``import my_module`` is resolved in: the project root, then the
    folder of each config file, without repeats."""
    folders: list[Path] = []
    project = resources.project_root()
    candidates = ([project] if project is not None else []) + [
        Path(f).resolve().parent for f in config_files
    ]
    for folder in candidates:
        if folder not in folders:
            folders.append(folder)
    return folders


def make_user_code_importable(config_files: list[str | os.PathLike]) -> list[Path]:
    """Puts :func:`user_code_paths` at the front of ``sys.path`` (as Python does for a script's
    folder), so that a ``.gin`` file can ``import my_ops`` from beside itself or from the
    project root; the module then registers its ops, weightings or schedules on import.

    Call it before parsing the files. Folders already on ``sys.path`` are left where they are.

    Returns:
        The folders added.
    """
    present = {Path(p).resolve() for p in sys.path if p}
    added = [folder for folder in user_code_paths(config_files) if folder not in present]
    sys.path[:0] = [str(folder) for folder in added]
    return added


def describe_experiments() -> list[dict]:
    """Each experiment with its table and row, read from the table definitions (data)."""
    from sharpdarts.store import table_defs  # not results: `list` needs no pandas

    rows, links = {}, []
    for r in table_defs.paper_rows():
        if r["experiment"]:
            without = (
                " (without AutoAugment)"
                if r["table"] == "cifar10" and r["autoaugment"] == "no"
                else ""
            )
            rows[r["experiment"]] = (r["table"], f"{r['architecture']}{without}")
        if r.get("search_experiment"):  # the search whose runs give the row's search cost
            rows.setdefault(r["search_experiment"], (r["table"], f"{r['architecture']} (search)"))
        if r.get("nb201_experiment"):  # a search whose cells' benchmark figures join the row
            links.append(
                (r["nb201_experiment"], r["table"], f"{r['architecture']} (NAS-Bench-201)")
            )
    for name, table, row in links:  # a row of its own table first, then the linked row
        mine = rows.get(name)
        rows[name] = (mine[0], f"{mine[1]}; {table}: {row}") if mine else (table, row)
    prefixes = {}
    for table, definition in table_defs.load_table_defs(
        resources.find("experiments/tables.json")
    ).items():
        for name in definition.get("rows", {}).get("experiments", []):
            rows.setdefault(name, (table, name.split("/")[-1]))
        if "experiment_prefix" in definition.get("rows", {}):
            prefixes[definition["rows"]["experiment_prefix"]] = table
    out = []
    for name, path in experiment_files().items():
        header = [
            line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")
        ]
        table = next((t for prefix, t in prefixes.items() if name.startswith(prefix)), "-")
        table, row = rows.get(name, (table, "-"))
        out.append(
            {"experiment": name, "table": table, "row": row, "summary": header[0] if header else ""}
        )
    return out
