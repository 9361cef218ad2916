"""Where experiments, gin fragments, table definitions and the genotype registry are found.

Two kinds of roots, searched in order:

1. the *project root*: a folder of the user's own, laid out like this repository
   (``experiments/``, ``gin/``, ``experiments/genotypes.json``), named by
   ``$SHARPDARTS_PROJECT`` (the command line's ``--project`` sets it), else the source
   checkout this package runs from, if it is one;
2. the files shipped inside the installed package (``sharpdarts/_shipped/``), so that a
   plain ``pip install`` can run every named experiment.

No torch here: the quick commands (``list``, ``table``) read these files only.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ENV_VAR = "SHARPDARTS_PROJECT"
PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout this package was imported from, when it is one (an editable install).
CHECKOUT_DIR = PACKAGE_DIR.parent
SHIPPED_DIR = PACKAGE_DIR / "_shipped"


def _is_project(path: Path) -> bool:
    return (path / "experiments").is_dir()


def checkout_root() -> Path | None:
    """The source checkout this package is imported from (an editable install), if it is one.

    Installed, the package's parent is site-packages, which holds no setup.py.
    """
    if _is_project(CHECKOUT_DIR) and (CHECKOUT_DIR / "setup.py").is_file():
        return CHECKOUT_DIR
    return None


def project_root() -> Path | None:
    """The user's project root, if any: ``$SHARPDARTS_PROJECT``, else the source checkout."""
    named = os.environ.get(PROJECT_ENV_VAR)
    if named:
        return Path(named).expanduser().resolve()
    return checkout_root()


def roots() -> list[Path]:
    """Every root that exists, the project's first, the shipped files last."""
    found = []
    for root in (project_root(), checkout_root(), SHIPPED_DIR):
        if root is not None and root.is_dir() and root not in found:
            found.append(root)
    return found


def find(relative: str | os.PathLike) -> Path | None:
    """The first root's file or folder at ``relative`` (e.g. ``'gin/smoke.gin'``), or None."""
    for root in roots():
        candidate = root / relative
        if candidate.exists():
            return candidate
    return None


def find_all(relative: str | os.PathLike) -> list[Path]:
    """Every root's file or folder at ``relative``, the project's first."""
    return [root / relative for root in roots() if (root / relative).exists()]


def writable_root() -> Path:
    """Where the user's own files go (a promoted genotype): the project root, else the
    current folder."""
    return project_root() or Path.cwd()
