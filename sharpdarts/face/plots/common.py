"""What every figure shares: the output formats, saving a matplotlib figure, running dot.

Every ``plot_*`` function writes one file (or, for ``plot_genotype(separate=True)``, one per
cell) and returns its path. The format follows the output file's extension: ``.svg``,
``.pdf`` or ``.png``; any other extension is a ``UserError``, raised before anything is
written. Parent folders are created as needed.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharpdarts.errors import UserError

if TYPE_CHECKING:  # matplotlib loads only where a figure is made
    from matplotlib.figure import Figure

FORMATS = ("svg", "pdf", "png")
CELLS = ("normal", "reduce")
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
DOT_HINT = (
    "Drawing genotypes needs the Graphviz 'dot' program, which was not found on the PATH. "
    "Install it with 'apt-get install graphviz' (Debian/Ubuntu), 'conda install graphviz' "
    "or 'brew install graphviz', then try again."
)

CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}


def output_format(out: str | Path) -> tuple[Path, str]:
    """The output path and its format, or a UserError for an unsupported extension."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UserError(
            f"Cannot write a figure to {str(out)!r}: unsupported file extension "
            f"{out.suffix or '(none)'!r}. Use one of {', '.join('.' + f for f in FORMATS)}.")
    return out, fmt


def save_figure(fig: Figure, out: Path, fmt: str) -> Path:
    """Saves a matplotlib figure reproducibly (no timestamps, fixed SVG ids)."""
    import matplotlib

    out.parent.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] | None = None
    if fmt == "svg":
        metadata = {"Date": None}
    elif fmt == "pdf":
        metadata = {"CreationDate": None}
    with matplotlib.rc_context({"svg.hashsalt": "sharpdarts", "svg.fonttype": "none"}):
        fig.savefig(out, format=fmt, metadata=metadata, dpi=120 if fmt == "png" else None)
    return out


def render_graph(graph, fmt: str) -> bytes:
    """Runs dot on a graph, turning a missing dot into a UserError with the install hint."""
    import graphviz

    if shutil.which("dot") is None:
        raise UserError(DOT_HINT)
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:
        raise UserError(DOT_HINT) from e
