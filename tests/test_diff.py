"""`sharpdarts diff`: binding-level differences of experiments and runs."""

import json

import pytest
from test_faults import SMALL_SUPERNET  # tests/test_faults.py: one node of four ops a cell

from sharpdarts.face import cli, diff


def test_parse_bindings_joins_continued_values_and_drops_comments():
    text = (
        "# Macros:\n# ====\nEPOCHS = 2\n\n# Parameters for search:\nsearch.primitives = \\\n"
        "    ['none',\n     'max_pool_3x3']\nscope/train.lr = 0.1  \nimport my_ops\n"
    )
    assert diff.parse_bindings(text) == {
        "EPOCHS": "2",
        "search.primitives": "['none', 'max_pool_3x3']",
        "scope/train.lr": "0.1",
        "import my_ops": "",
    }


def test_compare_sorts_added_removed_and_changed():
    found = diff.compare({"a": "1", "b": "2", "c": "3"}, {"b": "2", "c": "4", "d": "5"})
    assert found == {"added": [("d", "5")], "removed": [("a", "1")], "changed": [("c", "3", "4")]}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    folders = []
    for epochs in (1, 2):
        assert (
            cli.main(
                [
                    "run",
                    "demo/search",
                    "--smoke",
                    "--seed",
                    "1",
                    "--results",
                    str(results),
                    "--gin_param",
                    f"EPOCHS={epochs}",
                    # Both runs the same small supernet, without the eigenvalue: they still
                    # differ in EPOCHS alone, for a fraction of a smoke search's time.
                    "--gin_param",
                    "collapse_metrics.every = 0",
                    *SMALL_SUPERNET,
                ]
            )
            == 0
        )
    for info in sorted((results / "runs").rglob("run.json")):
        folders.append(info.parent)
    folders.sort(key=lambda f: json.loads((f / "run.json").read_text())["gin_params"])
    return results, folders


def test_two_runs_differ_in_the_binding_that_differs(two_runs, capsys):
    results, (one, two) = two_runs
    capsys.readouterr()
    assert cli.main(["diff", str(one), two.name, "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "changed (1):\n  EPOCHS: 1  ->  2\n" in out
    assert "added" not in out and "removed" not in out
    git = json.loads((one / "run.json").read_text())["git"]
    assert f"commit {git['commit'][:12]} ({'dirty' if git['dirty'] else 'clean'})" in out
    assert "commits: the same" in out


def test_a_run_against_its_experiment_shows_the_smoke_bindings(two_runs, capsys):
    results, (one, _) = two_runs
    capsys.readouterr()
    assert cli.main(["diff", str(one), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "B: experiment demo/search" in out
    changed = dict(line.strip().split(": ", 1) for line in out.splitlines() if "  ->  " in line)
    assert changed["EPOCHS"] == "1  ->  6"  # demo/search's own epochs; the run had EPOCHS=1
    assert changed["build_datasets.name"] == "'synthetic'  ->  'digits'"


def test_two_paper_rows(capsys):
    assert cli.main(["diff", "cifar10/sharpsepconv_darts", "cifar10/sharpdarts"]) == 0
    out = capsys.readouterr().out
    assert "GENOTYPE: 'SHARPSEPCONV_DARTS'  ->  'SHARP_DARTS'" in out
    assert "NetworkCIFAR.C_mid: None  ->  32" in out


def test_unknown_names_are_user_errors(tmp_path, capsys):
    assert (
        cli.main(["diff", "cifar10/no_such", "cifar10/sharpdarts", "--results", str(tmp_path)]) == 2
    )
    assert "neither an experiment nor a run" in capsys.readouterr().err
    assert cli.main(["diff", "cifar10/sharpdarts", "--results", str(tmp_path)]) == 2
    assert "one argument must be a run" in capsys.readouterr().err
