"""The store package: its light imports, and where it finds its files."""

import json
import subprocess
import sys

import pytest

import sharpdarts
import sharpdarts.resources
from sharpdarts.core import run_folder
from sharpdarts.errors import UserError
from sharpdarts.store import provenance, reader, results, store, table_defs, tables


def test_store_and_results_import_no_torch_and_no_higher_layer():
    code = (
        "import sys, sharpdarts.store, sharpdarts.store.results, sharpdarts.store.tables\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(("
        "'torch.', 'sharpdarts.engine', 'sharpdarts.nn', 'sharpdarts.face')))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
    code = (
        "import sys, sharpdarts.store.store, sharpdarts.store.run, sharpdarts.store.keys\n"
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"  # starting a run does not even need pandas


def test_new_runs_record_the_record_format(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_device_info", lambda: ("cpu", 0))
    (tmp_path / "norepo").mkdir()
    run, _ = store.start_run(
        tmp_path / "res",
        "demo/train",
        1,
        "EPOCHS = 1\n",
        command=["x"],
        kind="train",
        repo_dir=tmp_path / "norepo",
    )
    assert run.info["record_format"] == reader.RECORD_FORMAT == 2
    with pytest.raises(ValueError, match="record_format"):
        store.start_run(
            tmp_path / "res",
            "demo/train",
            2,
            "EPOCHS = 1\n",
            command=["x"],
            kind="train",
            repo_dir=tmp_path / "norepo",
            extra={"record_format": 1},
        )


def test_unknown_run_and_table_names_suggest_the_close_ones(tmp_path):
    folder = tmp_path / "runs" / "demo" / "20250101T000000000Z-abcdef"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"experiment": "demo", "status": "completed"}))
    with pytest.raises(
        UserError,
        match=r"Unknown run '20250101T000000000Z-abcdex' under .*"
        r"Did you mean: 20250101T000000000Z-abcdef\?",
    ):
        store.find_run(tmp_path, "20250101T000000000Z-abcdex")
    with pytest.raises(
        UserError,
        match=r"Unknown run 'zzz'.*Known names: "
        r"20250101T000000000Z-abcdef\.",
    ):
        store.find_run(tmp_path, "zzz")
    with pytest.raises(
        UserError, match=r"Unknown table 'imagenett'.*Did you mean: imagenet(, darts_imagenet)?\?"
    ):
        tables.build_table("imagenett", results.load_runs(tmp_path))


def test_tables_json_comes_from_the_project_root(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "experiments").mkdir(parents=True)
    (project / "experiments" / "tables.json").write_text(
        json.dumps(
            {
                "_format": "ignored",
                "mine": {
                    "title": "Mine",
                    "rows": {"experiments": ["demo/train"]},
                    "columns": [
                        {"name": "test_error", "label": "Test error %", "metric": "test_error_top1"}
                    ],
                },
            }
        )
    )
    monkeypatch.setenv("SHARPDARTS_PROJECT", str(project))
    assert table_defs.tables_json_path() == project / "experiments" / "tables.json"
    assert table_defs.table_names() == ["mine"]
    table = tables.build_table("mine", results.load_runs(tmp_path))
    assert list(table["experiment"]) == ["demo/train"] and table["seeds"].tolist() == [0]
    monkeypatch.delenv("SHARPDARTS_PROJECT")
    assert "cifar10" in table_defs.table_names()  # the checkout's (or the shipped) tables again


def test_no_tables_json_anywhere_is_a_user_error(monkeypatch):
    monkeypatch.setattr(sharpdarts.resources, "find", lambda relative: None)
    with pytest.raises(UserError, match="no experiments/tables.json found"):
        table_defs.load_table_defs()


def test_paper_tables_are_package_data():
    paper = table_defs.paper_tables()
    assert set(paper["table"]) >= {"cifar10", "imagenet"}
    ssc = paper[paper["architecture"] == "SharpSepConvDARTS"].iloc[0]
    assert ssc["error_top1"] == 1.98 and ssc["params_m"] == 3.6
    paper.loc[:, "table"] = "changed"  # a copy: the cached frame is untouched
    assert "cifar10" in set(table_defs.paper_tables()["table"])


def test_provenance_describes_the_repository_around_the_package(monkeypatch):
    # No repo_dir: the code that runs is what is traced, found from the package's folder.
    monkeypatch.setattr(provenance, "_device_info", lambda: ("cpu", 0))
    seen = []
    monkeypatch.setattr(
        run_folder,
        "git_state",
        lambda repo, exclude: (
            seen.append(repo) or {"commit": None, "branch": None, "dirty": None, "diff": ""}
        ),
    )
    provenance.collect_provenance()
    assert seen == [sharpdarts.resources.PACKAGE_DIR]
