"""A search's most likely cells over time, as an animated GIF (like DARTS's "progress" pictures).

A search run logs, per epoch, the genotype its architecture weights give (``genotype`` in
``metrics.jsonl``). :func:`plot_progress` draws one frame per recorded epoch (or per
``every``-th): the epoch's convolutional normal and reduction cells, or its recurrent cell,
under a caption with the experiment, the epoch and that epoch's validation figure. Each cell
is laid out by Graphviz (a system ``dot`` or the pip one, see ``plots.render``) and
rasterised by resvg, so frames look the same with or without a system Graphviz; a cell that
did not change since an earlier frame is not laid out again. Every cell keeps one place in
every frame (cells are padded to their largest size over the frames), so the animation does
not jump, and Pillow writes the frames as a looping GIF.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharpdarts.core import genotypes, run_folder
from sharpdarts.errors import UserError
from sharpdarts.store import reader

__all__ = [
    "HEADER_PX",
    "LAST_FRAME_HOLD",
    "MAX_FRAMES",
    "Frame",
    "check_out",
    "pick",
    "plot_progress",
    "progress_frames",
    "render_frames",
]

# Without --every, a long search is thinned to at most this many frames (the last epoch is
# always one of them): a 600-epoch search would otherwise take minutes and megabytes.
MAX_FRAMES = 100
DEFAULT_DURATION_MS = 600
# The last frame stays this many times longer, so that a looping GIF shows where it ended.
LAST_FRAME_HOLD = 4
# Cells are rasterised at 96 dpi: Graphviz's 20 pt labels are about 27 px, legible, and the
# GIF stays small (resvg's anti-aliasing looks as good as 192 dpi shrunk, at a third the time).
_ZOOM = 1.0
_MARGIN = 16
_CAPTION_PX = 30
_BAR_PX = 6
_BAR_COLOR = (70, 130, 180)
_CAPTION_FONT = "STIXGeneral.ttf"  # Times-like, as the cells' labels
# The caption and progress bar above the cells: every frame's cells start this far down.
HEADER_PX = _MARGIN + _CAPTION_PX + _MARGIN // 2 + _BAR_PX + _MARGIN // 2


@dataclass(frozen=True)
class Frame:
    """One epoch of a search: its genotype and caption figures."""

    epoch: int
    genotype: Any  # a cell Genotype or a RecurrentGenotype
    valid: str | None  # the validation figure, formatted ("valid acc 91.20%"), if logged


def _valid_text(record: Mapping[str, Any]) -> str | None:
    """The epoch's validation figure: perplexity for language models, else accuracy."""
    for key, text in (("valid_ppl", "valid ppl {:.2f}"), ("valid_acc", "valid acc {:.2f}%")):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return text.format(value)
    return None


def progress_frames(run_dir: str | Path) -> tuple[dict, list[Frame]]:
    """The search run's info and one :class:`Frame` per epoch that logged a genotype.

    Raises:
        UserError: not a run folder, not a search run, no epoch with a genotype, a malformed
            genotype, or genotypes that are not cells (a multi-channel search's paths).
    """
    folder = run_folder.run_dir(run_dir)
    info = reader.read_info(folder)
    if info.get("kind") != "search":
        raise UserError(
            f"{folder} is a {info.get('kind') or 'run of unknown kind'} run, not a search run: "
            "only a search logs its most likely cells per epoch. Pass a search run (e.g. one "
            "of demo/search, search/darts_first_order or ptb/search_first_order)."
        )
    frames = []
    for record in reader.read_metrics(folder, info):
        value = record.get("genotype")
        if not isinstance(value, Mapping):
            continue
        try:
            genotype = genotypes.from_dict(value)
        except (ValueError, TypeError, KeyError) as e:
            raise UserError(
                f"The genotype of epoch {record['epoch']} in "
                f"{run_folder.metrics_path(folder)} is malformed: {e}"
            ) from e
        if genotype.layout not in ("cell", "edges", "recurrent"):
            raise UserError(
                f"The search in {folder} logs {genotype.layout!r} genotypes (a multi-channel "
                "search), not cells, so there are no cells to animate; draw its grid with "
                "'sharpdarts plot grid RUN --out grid.svg'."
            )
        frames.append(Frame(record["epoch"], genotype, _valid_text(record)))
    if not frames:
        raise UserError(
            f"The search in {folder} has no epoch that logged a genotype yet "
            f"({run_folder.METRICS} holds no 'genotype' per epoch): nothing to animate. Wait for "
            "its first epoch to end, or pass a search run written by this version."
        )
    return info, frames


def pick(frames: Sequence[Frame], every: int | None, max_frames: int = MAX_FRAMES) -> list[Frame]:
    """Every ``every``-th frame from the first, and always the last.

    Without ``every``, the step is the smallest that keeps at most ``max_frames`` frames.
    """
    if every is None:
        every = max(1, math.ceil(len(frames) / max_frames))
        picked = list(frames[::every])
        if picked[-1] is not frames[-1]:
            picked = picked[: max_frames - 1] + [frames[-1]]
        return picked
    picked = list(frames[::every])
    if picked[-1] is not frames[-1]:
        picked.append(frames[-1])
    return picked


def _panels(genotype) -> list[tuple[str, tuple, Callable[[], Any]]]:
    """The cells of one frame, top to bottom: (slot, cache key, graph builder)."""
    from sharpdarts.face.plots.cells import genotype_graph
    from sharpdarts.face.plots.common import CELLS
    from sharpdarts.face.plots.recurrent import recurrent_graph

    if genotype.layout == "recurrent":
        key = ("recurrent", tuple(map(tuple, genotype.recurrent)), tuple(genotype.concat))
        return [("recurrent", key, lambda: recurrent_graph(genotype))]
    # One graph per cell: a change in one cell then moves nothing in the other.
    return [
        (
            cell,
            (
                cell,
                tuple(map(tuple, getattr(genotype, cell))),
                tuple(getattr(genotype, f"{cell}_concat")),
            ),
            lambda cell=cell: genotype_graph(genotype, (cell,)),
        )
        for cell in CELLS
    ]


def _raster(graph):
    """A graph laid out by Graphviz and rasterised by resvg at 96 dpi (an RGB image)."""
    from PIL import Image

    from sharpdarts.face.plots import render
    from sharpdarts.face.plots.common import render_graph

    # SVG then resvg, whichever dot laid it out: the same fonts and scale either way.
    png = render.svg_to_png(render_graph(graph, "svg"), zoom=_ZOOM)
    return Image.open(io.BytesIO(png)).convert("RGB")


def _font(size: int):
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(
        str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _CAPTION_FONT), size
    )


def _caption(info: Mapping[str, Any], frame: Frame, last_epoch: int) -> str:
    parts = [str(info.get("experiment") or "search"), f"epoch {frame.epoch} of {last_epoch}"]
    if frame.valid:
        parts.append(frame.valid)
    return "    ".join(parts)


def render_frames(
    info: Mapping[str, Any], frames: Sequence[Frame], last_epoch: int, cache: dict | None = None
) -> list:
    """The frames as equal-size RGB Pillow images.

    Args:
        info: the run's run.json (for the experiment name).
        frames: the frames to draw, in order.
        last_epoch: the last recorded epoch (the caption's "of N" and the progress bar).
        cache: rasterised cells by cache key, shared between calls (None: a fresh one).

    Raises:
        UserError: a genotype that cannot be drawn, or no Graphviz at all.
    """
    from PIL import Image, ImageDraw

    cache = {} if cache is None else cache
    stacks = []
    for frame in frames:
        stack = []
        for slot, key, build in _panels(frame.genotype):
            if key not in cache:
                cache[key] = _raster(build())
            stack.append((slot, cache[key]))
        stacks.append(stack)
    # Each slot (normal, reduce, recurrent) as large as its largest picture in any frame.
    slot_size: dict[str, tuple[int, int]] = {}
    for stack in stacks:
        for slot, image in stack:
            w, h = slot_size.get(slot, (0, 0))
            slot_size[slot] = (max(w, image.width), max(h, image.height))
    font = _font(_CAPTION_PX)
    top = HEADER_PX
    width = max(w for w, _ in slot_size.values()) + 2 * _MARGIN
    captions = [_caption(info, frame, last_epoch) for frame in frames]
    width = max(width, max(round(font.getlength(c)) for c in captions) + 2 * _MARGIN)
    height = top + sum(h for _, h in slot_size.values()) + _MARGIN
    images = []
    for frame, caption, stack in zip(frames, captions, stacks):
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        draw.text((_MARGIN, _MARGIN), caption, fill="black", font=font)
        bar_y = _MARGIN + _CAPTION_PX + _MARGIN // 2
        bar_w = width - 2 * _MARGIN
        draw.rectangle((_MARGIN, bar_y, _MARGIN + bar_w, bar_y + _BAR_PX), fill=(225, 225, 225))
        done = round(bar_w * frame.epoch / max(last_epoch, 1))
        draw.rectangle((_MARGIN, bar_y, _MARGIN + done, bar_y + _BAR_PX), fill=_BAR_COLOR)
        y = top
        for slot, image in stack:
            canvas.paste(image, (_MARGIN, y))  # left-aligned: the inputs stay in place
            y += slot_size[slot][1]
        images.append(canvas)
    return images


def _to_palette(image, palette):
    """``image`` (RGB) in the colours of ``palette`` (a 'P' image), each pixel its nearest.

    Pillow's own mapping to a given palette rounds colours first (white comes out light grey);
    a frame has a few hundred colours, so the exact nearest entry is cheap.
    """
    import numpy as np
    from PIL import Image

    rgb = np.asarray(image, dtype=np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)
    entries = np.asarray(palette.getpalette()[:768], dtype=np.int32).reshape(-1, 3)
    unpacked = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=1)
    nearest = ((unpacked[:, None, :] - entries[None, :, :]) ** 2).sum(-1).argmin(1)
    indexed = Image.fromarray(nearest[inverse].reshape(packed.shape).astype(np.uint8), "P")
    indexed.putpalette(palette.getpalette())
    return indexed


def _gif_bytes(images: Sequence, duration_ms: int) -> bytes:
    from PIL import Image

    # One palette for every frame (the cells share their few colours), so colours never
    # flicker between frames; taken from the last frame, whose progress bar is full.
    shared = images[-1].quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    palette = [_to_palette(im, shared) for im in images]
    durations = [duration_ms] * len(images)
    durations[-1] = duration_ms * LAST_FRAME_HOLD
    buffer = io.BytesIO()
    palette[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=palette[1:],
        duration=durations if len(images) > 1 else durations[0],
        loop=0,
        disposal=1,
        optimize=False,
    )
    return buffer.getvalue()


def check_out(out: str | Path) -> Path:
    """The output path, or a UserError unless it ends in ``.gif``."""
    out = Path(out)
    if out.suffix.lower() != ".gif":
        raise UserError(
            f"Cannot write the progress animation to {str(out)!r}: it is an animated GIF, so "
            f"--out must end in .gif (got {out.suffix or 'no extension'!r}). Use --frames DIR "
            "as well for one PNG per epoch."
        )
    return out


def plot_progress(
    run_dir: str | Path,
    out: str | Path,
    every: int | None = None,
    duration_ms: int = DEFAULT_DURATION_MS,
    frames_dir: str | Path | None = None,
    max_frames: int = MAX_FRAMES,
) -> Path:
    """Writes a search run's most likely cells per epoch as an animated GIF.

    Args:
        run_dir: a search run folder (convolutional or recurrent search).
        out: the GIF to write (must end in ``.gif``).
        every: draw every ``every``-th recorded epoch (and always the last); None: every
            epoch, thinned to at most ``max_frames`` frames.
        duration_ms: how long each frame shows (the last one ``LAST_FRAME_HOLD`` times longer).
        frames_dir: also write each frame as ``epoch_NNNN.png`` into this folder.
        max_frames: the most frames drawn when ``every`` is None.

    Returns:
        The GIF's path.

    Raises:
        UserError: a bad ``out`` suffix, ``every`` or ``duration_ms``; a folder that is not
            a search run, or a search without per-epoch genotypes. Nothing is written then.
    """
    out = check_out(out)
    if every is not None and every < 1:
        raise UserError(
            f"--every must be at least 1 (one frame per that many epochs), got {every}."
        )
    if duration_ms < 10:
        raise UserError(
            f"--duration is milliseconds per frame, at least 10 (a GIF counts "
            f"hundredths of a second), got {duration_ms}."
        )
    info, frames = progress_frames(run_dir)
    picked = pick(frames, every, max_frames)
    images = render_frames(info, picked, frames[-1].epoch)
    data = _gif_bytes(images, duration_ms)
    from sharpdarts.core.io import atomic_write

    if frames_dir is not None:
        frames_dir = Path(frames_dir)
        frames_dir.mkdir(parents=True, exist_ok=True)
        for frame, image in zip(picked, images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            atomic_write(frames_dir / f"epoch_{frame.epoch:04d}.png", buffer.getvalue())
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, data)
