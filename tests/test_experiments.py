"""Experiment names and gin fragments resolve from every root, the user's project first; the
quick commands stay free of torch."""

import json
import os
import subprocess
import sys

import pytest

from sharpdarts import resources
from sharpdarts.errors import UserError
from sharpdarts.face import cli, experiments


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project with one experiment of its own and one that shadows a shipped one."""
    root = tmp_path / "project"
    (root / "experiments" / "mine").mkdir(parents=True)
    (root / "experiments" / "demo").mkdir(parents=True)
    (root / "experiments" / "mine" / "tiny.gin").write_text("# My own experiment.\n")
    (root / "experiments" / "demo" / "search.gin").write_text("# My demo search.\n")
    (root / "gin").mkdir()
    (root / "gin" / "smoke.gin").write_text("# My smoke settings.\n")
    monkeypatch.setenv(resources.PROJECT_ENV_VAR, str(root))
    return root.resolve()


def test_the_checkout_is_the_project_root_by_default(monkeypatch):
    monkeypatch.delenv(resources.PROJECT_ENV_VAR, raising=False)
    assert resources.roots()[0] == resources.checkout_root() == resources.CHECKOUT_DIR
    assert experiments.smoke_gin() == resources.CHECKOUT_DIR / "gin" / "smoke.gin"
    assert "demo/search" in experiments.experiment_names()


def test_a_project_comes_first_and_shadows_the_shipped_names(project):
    assert resources.roots()[0] == project
    assert experiments.gin_search_paths()[0] == str(project)
    names = experiments.experiment_names()
    assert "mine/tiny" in names and "cifar10/sharpdarts" in names
    assert names == sorted(names) and len(names) == len(set(names))
    assert experiments.resolve_experiment("demo/search") == (
        "demo/search",
        project / "experiments" / "demo" / "search.gin",
    )
    assert (
        experiments.resolve_experiment(str(project / "experiments" / "mine" / "tiny.gin"))[0]
        == "mine/tiny"
    )
    assert experiments.smoke_gin() == project / "gin" / "smoke.gin"


def test_an_outside_gin_file_is_named_by_its_stem(tmp_path):
    path = tmp_path / "trial.gin"
    path.write_text("EPOCHS = 1\n")
    assert experiments.resolve_experiment(str(path)) == ("trial", path)


def test_an_unknown_experiment_names_the_closest(project):
    with pytest.raises(UserError, match="Did you mean: mine/tiny") as info:
        experiments.resolve_experiment("mine/tinyy")
    assert "sharpdarts list" in str(info.value)


def test_list_with_a_project_option_shows_its_experiments(project, capsys, monkeypatch):
    monkeypatch.delenv(resources.PROJECT_ENV_VAR)
    assert cli.main(["--project", str(project), "list"]) == 0
    out = capsys.readouterr().out
    assert "mine/tiny" in out and "My own experiment." in out
    assert resources.PROJECT_ENV_VAR not in os.environ  # given back to in-process callers


def test_a_missing_project_folder_is_a_user_error(tmp_path, capsys):
    assert cli.main(["--project", str(tmp_path / "nowhere"), "list"]) == 2
    assert "nowhere" in capsys.readouterr().err


LIGHT = """
import json, sys
from sharpdarts.face import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print(json.dumps([code, 'torch' in sys.modules]))
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["table", "demo", "--results", "{tmp}"]])
def test_the_quick_commands_do_not_import_torch(args, tmp_path):
    command = [sys.executable, "-c", LIGHT] + [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=resources.CHECKOUT_DIR
    )
    code, imported_torch = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0, done.stderr
    assert not imported_torch
