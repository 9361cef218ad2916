"""`sharpdarts plot progress`: a search's most likely cells per epoch as an animated GIF.

Real smoke searches (convolutional and recurrent) are drawn with the pip Graphviz (no system
``dot`` on the PATH), and the GIF is read back with Pillow.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from sharpdarts.core import io, run_folder
from sharpdarts.face import cli
from sharpdarts.face.plots import common, progress
from sharpdarts.store import reader

ROOT = Path(__file__).resolve().parents[1]
PATH = os.environ.get("PATH", "")  # before no_system_dot hides dot
EPOCHS = 3


# Smaller than smoke mode (what is drawn is each epoch's logged cell, whatever the data):
# 16 images, halved into one batch of 8 for the weights and one for the architecture; the
# corpus in windows of 32 sequences, not 8.
TINY = {
    "conv": ("demo/search", ["build_datasets.synthetic_size = (16, 4)"]),
    "rnn": ("ptb/search_first_order", ["BATCH_SIZE = 32"]),
}


@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    """A convolutional and a recurrent smoke search of EPOCHS epochs: {kind: run folder}."""
    results = tmp_path_factory.mktemp("results")
    folders = {}
    for kind, (experiment, bindings) in TINY.items():
        args = ["run", experiment, "--smoke", "--results", str(results)]
        for binding in [f"EPOCHS={EPOCHS}", *bindings]:
            args += ["--gin_param", binding]
        assert cli.main(args) == 0
        folders[kind] = next((results / "runs" / experiment).iterdir())
    return results, folders


@pytest.fixture(autouse=True)
def no_system_dot(tmp_path_factory, monkeypatch):
    """Hides a system Graphviz: frames come from the pip-installed one."""
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("no_dot")))
    assert shutil.which("dot") is None


def frames_of(gif: Path) -> list[np.ndarray]:
    with Image.open(gif) as image:
        assert image.format == "GIF"
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]


def cells(frame: np.ndarray) -> np.ndarray:
    """The cell pictures of a frame (below its caption and progress bar)."""
    return frame[progress.HEADER_PX :]


def plot(*args, capsys=None) -> int:
    code = cli.main(["plot", "progress", *map(str, args)])
    if capsys is not None and code == 2:
        assert "sharpdarts: error:" in capsys.readouterr().err
    return code


def test_a_convolutional_search_animates_each_epochs_cells(searches, tmp_path):
    results, folders = searches
    run = folders["conv"]
    out, pngs = tmp_path / "cells.gif", tmp_path / "frames"
    assert plot(run.name, "--out", out, "--frames", pngs, "--results", results) == 0
    with Image.open(out) as image:
        assert image.is_animated and image.info["loop"] == 0
    frames = frames_of(out)
    logged = [r["genotype"] for r in reader.read_metrics(run)]
    assert len(frames) == len(logged) == EPOCHS
    assert len({f.shape for f in frames}) == 1
    # The GIF shows the PNG frames (one per epoch), colours kept to within palette rounding.
    written = sorted(pngs.iterdir())
    assert [p.name for p in written] == [f"epoch_{e:04d}.png" for e in range(1, EPOCHS + 1)]
    for frame, png in zip(frames, written):
        diff = np.abs(frame.astype(int) - np.asarray(Image.open(png).convert("RGB")).astype(int))
        assert diff.mean() < 0.1
    # The cells look the same exactly when the epochs' genotypes are the same.
    for i in range(1, len(frames)):
        same = np.array_equal(cells(frames[i - 1]), cells(frames[i]))
        assert same == (logged[i - 1] == logged[i]), f"epochs {i} and {i + 1}"
    # The progress bar grows: frames differ in their header even with equal cells.
    assert not np.array_equal(frames[0][: progress.HEADER_PX], frames[-1][: progress.HEADER_PX])


def test_a_recurrent_search_every_other_epoch_and_the_last(searches, tmp_path):
    results, folders = searches
    out, pngs = tmp_path / "rnn.gif", tmp_path / "frames"
    assert (
        plot(folders["rnn"], "--out", out, "--every", 2, "--frames", pngs, "--duration", 250) == 0
    )
    frames = frames_of(out)
    assert len(frames) == 2  # epochs 1 and 3
    assert sorted(p.name for p in pngs.iterdir()) == ["epoch_0001.png", "epoch_0003.png"]
    assert frames[0].shape == frames[1].shape
    with Image.open(out) as image:
        durations = []
        for frame in ImageSequence.Iterator(image):
            durations.append(frame.info["duration"])
    assert durations == [250, 250 * progress.LAST_FRAME_HOLD]
    logged = {r["epoch"]: r["genotype"] for r in reader.read_metrics(folders["rnn"])}
    assert logged[1]["layout"] == "recurrent"
    same = np.array_equal(cells(frames[0]), cells(frames[1]))
    assert same == (logged[1] == logged[3])


def _with_genotypes(run: Path, folder: Path, genotypes: list[dict]) -> Path:
    """A copy of a real search run whose epochs logged ``genotypes`` (one record each)."""
    shutil.copytree(run, folder)
    template = reader.read_metrics(run)[0]
    io.write_jsonl(
        folder / run_folder.METRICS,
        [{**template, "epoch": e, "genotype": g} for e, g in enumerate(genotypes, 1)],
    )
    return folder


def test_a_cell_is_laid_out_once_and_keeps_its_place(searches, tmp_path, monkeypatch):
    _, folders = searches
    a = reader.read_metrics(folders["conv"])[0]["genotype"]
    b = copy.deepcopy(a)
    b["normal"][0][0] = "skip_connect" if a["normal"][0][0] != "skip_connect" else "max_pool_3x3"
    run = _with_genotypes(folders["conv"], tmp_path / "run", [a, a, b, a])
    laid_out = []
    original = common.render_graph
    monkeypatch.setattr(
        common, "render_graph", lambda graph, fmt: laid_out.append(graph) or original(graph, fmt)
    )
    out = progress.plot_progress(run, tmp_path / "x.gif")
    # Three different cells: normal A, reduce A (the same in every epoch) and normal B.
    assert len(laid_out) == 3
    frames = frames_of(out)
    assert len(frames) == 4
    assert np.array_equal(cells(frames[0]), cells(frames[1]))
    assert not np.array_equal(cells(frames[1]), cells(frames[2]))
    assert np.array_equal(cells(frames[0]), cells(frames[3]))
    # The reduction cell (the bottom of the frame) does not move when the normal one changes.
    quarter = frames[0].shape[0] * 3 // 4
    assert all(np.array_equal(f[quarter:], frames[0][quarter:]) for f in frames)


@pytest.mark.parametrize(
    "count, every, epochs",
    [
        (10, 3, [1, 4, 7, 10]),
        (8, 3, [1, 4, 7, 8]),
        (5, 1, [1, 2, 3, 4, 5]),
        (1, 4, [1]),
        (10, None, list(range(1, 11))),  # under max_frames: every epoch
    ],
)
def test_pick_takes_every_nth_epoch_and_the_last(count, every, epochs):
    frames = [progress.Frame(e, None, None) for e in range(1, count + 1)]
    assert [f.epoch for f in progress.pick(frames, every, max_frames=20)] == epochs


def test_a_long_search_is_thinned_to_max_frames():
    frames = [progress.Frame(e, None, None) for e in range(1, 601)]
    picked = progress.pick(frames, None, max_frames=100)
    assert len(picked) <= 100 and picked[0].epoch == 1 and picked[-1].epoch == 600
    assert len(progress.pick(frames, 1, max_frames=100)) == 600  # an explicit --every wins


def test_user_errors_exit_2_and_write_nothing(searches, tmp_path, capsys):
    results, folders = searches
    run = folders["conv"]
    out = tmp_path / "out" / "cells.gif"
    assert plot(run, "--out", tmp_path / "out" / "cells.png", capsys=capsys) == 2
    assert plot(run, "--out", out, "--every", 0, capsys=capsys) == 2
    assert plot(run, "--out", out, "--duration", 0, capsys=capsys) == 2
    assert plot("no_such_run", "--out", out, "--results", results, capsys=capsys) == 2
    # A training run logs no cells.
    train = tmp_path / "train"
    shutil.copytree(run, train)
    info = json.loads((train / run_folder.RUN_JSON).read_text())
    io.atomic_write_json(train / run_folder.RUN_JSON, {**info, "kind": "train"})
    assert plot(train, "--out", out, "--frames", tmp_path / "out" / "f") == 2
    assert "not a search run" in " ".join(capsys.readouterr().err.split())
    # A search whose epochs logged no genotype (one that has not finished an epoch yet).
    empty = tmp_path / "empty"
    shutil.copytree(run, empty)
    io.write_jsonl(
        empty / run_folder.METRICS,
        [{k: v for k, v in r.items() if k != "genotype"} for r in reader.read_metrics(run)],
    )
    assert plot(empty, "--out", out) == 2
    assert "no epoch that logged a genotype" in " ".join(capsys.readouterr().err.split())
    (empty / run_folder.METRICS).unlink()
    assert plot(empty, "--out", out, capsys=capsys) == 2
    # A multi-channel search logs a path through its grid, not cells.
    path = {
        "normal": ["a", "b"],
        "normal_concat": [],
        "reduce": [],
        "reduce_concat": [],
        "layout": "path",
    }
    grid = _with_genotypes(run, tmp_path / "grid", [path])
    assert plot(grid, "--out", out) == 2
    assert "plot grid" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_plot_progress_imports_no_torch(searches, tmp_path):
    """Drawing cells needs no torch: the command starts in well under a second."""
    _, folders = searches
    probe = (
        "import sys; from sharpdarts.face.cli import main; code = main(sys.argv[1:]); "
        "print('PROBE', code, 'torch' in sys.modules)"
    )
    out = tmp_path / "cells.gif"
    proc = subprocess.run(
        [sys.executable, "-c", probe, "plot", "progress", str(folders["rnn"]), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PATH": PATH},
    )  # dot, if any: faster
    assert "PROBE 0 False" in proc.stdout, proc.stderr
    assert len(frames_of(out)) == EPOCHS


def test_tables_write_each_searchs_progress_beside_its_cells(searches, tmp_path):
    results, _ = searches
    out = tmp_path / "tables"
    assert cli.main(["tables", "--results", str(results), "--out", str(out)]) == 0
    figures = out / "figures"
    for stem in ("demo-search", "ptb-search_first_order"):
        assert len(frames_of(figures / f"{stem}-progress.gif")) == EPOCHS
        assert (figures / f"{stem}-genotype.svg").read_text().lstrip().startswith("<")
    assert (figures / "demo-search-alphas.svg").exists()  # a recurrent search has no cell alphas
    assert not (figures / "ptb-search_first_order-alphas.svg").exists()
