"""`make demo-family`'s steps on tiny runs: the DARTS, GDAS and DrNAS demo searches,
the demo_family table of the three and their collapse plot; and the Makefile target that
chains them."""

import re
from pathlib import Path

from sharpdarts.face import cli

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("darts", "gdas", "drnas")
# --smoke's sizes (gin/smoke.gin), but not flagged smoke: tables leave smoke runs out.
TINY = [
    *("--gin_param", "build_datasets.name='synthetic'"),
    *("--gin_param", "build_datasets.synthetic_size=(16, 8)"),
    *("--gin_param", "EPOCHS=2", "--gin_param", "BATCH_SIZE=8"),
    *("--gin_param", "SearchNetwork.C=4", "--gin_param", "SearchNetwork.layers=3"),
    *("--gin_param", "SearchNetwork.steps=2", "--gin_param", "SearchNetwork.multiplier=2"),
    *("--gin_param", "collapse_metrics.iterations=2"),
]


def _run(capsys, *args) -> str:
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_the_makefile_target_runs_the_three_searches_the_table_and_the_plot():
    text = (ROOT / "Makefile").read_text()
    match = re.search(r"^demo-family:.*?(?=^\S)", text, re.M | re.S)
    assert match, "no demo-family target"
    recipe = match.group(0)
    assert re.search(r"^FAMILY_DEMO := darts gdas drnas$", text, re.M)
    assert "run demo/family_$$method" in recipe
    assert "table demo_family" in recipe and "plot collapse $$runs" in recipe
    assert "demo-family" in re.search(r"^\.PHONY:.*$", text, re.M).group(0)


def test_the_three_searches_give_the_table_and_the_collapse_plot(tmp_path, capsys):
    results = tmp_path / "results"
    runs = {}
    for method in METHODS:
        out = _run(capsys, "run", f"demo/family_{method}", "--seed", 1, "--results", results, *TINY)
        runs[method] = out.splitlines()[-1].split()[-1]
    table = _run(capsys, "table", "demo_family", "--results", results, "--format", "csv")
    header, *lines = [line.split(",") for line in table.splitlines() if line]
    rows = {line[0]: dict(zip(header, line)) for line in lines}
    assert set(rows) == {f"demo/family_{m}" for m in METHODS}
    for row in rows.values():
        assert 0.0 <= float(row["valid_acc_mean"]) <= 100.0
        assert float(row["wall_seconds_mean"]) > 0.0
    out = tmp_path / "collapse.svg"
    _run(capsys, "plot", "collapse", *runs.values(), "--out", out)
    svg = out.read_text()
    assert svg.lstrip().startswith("<") and all(f"demo/family_{m} seed 1" in svg for m in METHODS)
