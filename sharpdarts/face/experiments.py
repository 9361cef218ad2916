"""Named experiments: ``.gin`` files under experiments/, resolved by name or path."""
from __future__ import annotations

import difflib
from pathlib import Path

from sharpdarts.errors import UserError

REPO_DIR = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_DIR / "experiments"
SMOKE_GIN = REPO_DIR / "gin" / "smoke.gin"


def experiment_names() -> list[str]:
    """Every named experiment: the .gin files under experiments/, without the suffix."""
    return sorted(p.relative_to(EXPERIMENTS_DIR).with_suffix("").as_posix()
                  for p in EXPERIMENTS_DIR.rglob("*.gin"))


def resolve_experiment(name: str) -> tuple[str, Path]:
    """An experiment name (``cifar10/sharpdarts``) or a path to any .gin file."""
    path = Path(name)
    if path.suffix == ".gin" and path.is_file():
        try:
            return path.resolve().relative_to(EXPERIMENTS_DIR).with_suffix("").as_posix(), path
        except ValueError:
            return path.stem, path
    candidate = EXPERIMENTS_DIR / f"{name}.gin"
    if candidate.is_file():
        return name, candidate
    close = difflib.get_close_matches(name, experiment_names(), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"Unknown experiment '{name}'.{hint} `sharpdarts list` shows every "
                    "experiment; a path to a .gin file also works.")


def describe_experiments() -> list[dict]:
    """Each experiment with its table and row, read from the table definitions (data)."""
    from sharpdarts.store import results
    rows = {}
    paper = results.paper_tables()
    for r in paper.itertuples():
        if isinstance(r.experiment, str):
            without = " (without AutoAugment)" if r.table == "cifar10" and r.autoaugment == "no" else ""
            rows[r.experiment] = (r.table, f"{r.architecture}{without}")
    prefixes = {}
    for table, definition in results.load_table_defs().items():
        for name in definition.get("rows", {}).get("experiments", []):
            rows.setdefault(name, (table, name.split("/")[-1]))
        if "experiment_prefix" in definition.get("rows", {}):
            prefixes[definition["rows"]["experiment_prefix"]] = table
    out = []
    for name in experiment_names():
        header = [line[1:].strip() for line in
                  (EXPERIMENTS_DIR / f"{name}.gin").read_text().splitlines() if line.startswith("#")]
        table = next((t for prefix, t in prefixes.items() if name.startswith(prefix)), "-")
        table, row = rows.get(name, (table, "-"))
        out.append({"experiment": name, "table": table, "row": row,
                    "summary": header[0] if header else ""})
    return out
