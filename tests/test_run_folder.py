"""The run folder has one owner: sharpdarts.core.run_folder names its files and folders, says
where each lies and reads the git state; no other module of the package writes those names."""

import ast
from pathlib import Path

from test_runs import _git  # tests/test_runs.py: git with a fixed identity

from sharpdarts.core import run_folder
from sharpdarts.store import provenance
from sharpdarts.store.store import start_run

PACKAGE = Path(__file__).resolve().parents[1] / "sharpdarts"
OWNER = PACKAGE / "core" / "run_folder.py"


# ---------------------------------------------------------------------------- the layout


def test_the_layout_is_pinned(tmp_path):
    """The file and folder names, byte for byte: changing one breaks every older run folder."""
    results, folder = tmp_path / "results", tmp_path / "results" / "runs" / "a/b" / "r1"
    assert run_folder.runs_root(results) == results / "runs"
    assert run_folder.lock_file(results) == results / "runs" / ".lock"
    assert run_folder.experiment_dir(results, "a/b") == results / "runs" / "a" / "b"
    assert run_folder.relative_name(results, folder) == "a/b/r1"
    assert run_folder.relative_name(results, folder.parent) == "a/b"
    names = {
        run_folder.run_json_path: "run.json",
        run_folder.metrics_path: "metrics.jsonl",
        run_folder.config_path: "config.gin",
        run_folder.operative_config_path: "operative_config.gin",
        run_folder.git_diff_path: "git.diff",
        run_folder.error_log_path: "error.log",
        run_folder.checkpoint_path: "checkpoint.pt",
    }
    for where, name in names.items():
        assert where(folder) == folder / name, where.__name__
    assert run_folder.git_diff_path(folder, 3) == folder / "git.resume3.diff"
    assert run_folder.checkpoint_files(folder) == [
        folder / "checkpoint.pt",
        folder / "checkpoint.prev.pt",
        folder / "checkpoint.next.pt",
    ]
    assert run_folder.phase_dir(folder, "sample_00") == folder / "phases" / "sample_00"
    assert run_folder.EVENTS_GLOB == "events.out.tfevents.*"
    assert run_folder.MARKERS == {"run.json", "metrics.jsonl", "config.gin"}


def test_paths_resolve_to_folders_and_checkpoints(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert run_folder.run_dir(folder) == folder
    assert run_folder.run_dir(folder / "run.json") == folder / "run.json"  # not there yet
    assert not run_folder.has_run_json(folder)
    (folder / "run.json").write_text("{}")
    assert run_folder.run_dir(folder / "run.json") == folder and run_folder.has_run_json(folder)
    assert run_folder.checkpoint_file(folder) == folder / "checkpoint.pt"
    assert run_folder.checkpoint_file(tmp_path / "w.pt") == tmp_path / "w.pt"
    assert run_folder.event_files(folder) == []
    for name in ("events.out.tfevents.2.host", "events.out.tfevents.1.host"):
        (folder / name).write_bytes(b"")
    assert [p.name for p in run_folder.event_files(folder)] == [
        "events.out.tfevents.1.host",
        "events.out.tfevents.2.host",
    ]


def test_a_started_run_lies_where_the_owner_says(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_device_info", lambda: ("cpu", 0))
    norepo = tmp_path / "norepo"
    norepo.mkdir()
    results = tmp_path / "results"
    run, decision = start_run(
        results, "cifar10/x", 1, "A = 1\n", command=["x"], kind="train", repo_dir=norepo
    )
    assert decision == "new"
    assert run.path == run_folder.experiment_dir(results, "cifar10/x") / run.run_id
    assert run_folder.relative_name(results, run.path) == f"cifar10/x/{run.run_id}"
    assert sorted(p.name for p in run.path.iterdir()) == ["config.gin", "run.json"]
    assert run_folder.config_path(run.path).read_text() == "A = 1\n"
    assert run.checkpoint_path == run_folder.checkpoint_path(run.path)
    assert run.metrics_path == run_folder.metrics_path(run.path)
    assert sorted(p.name for p in run_folder.runs_root(results).iterdir()) == ["cifar10"]


# ---------------------------------------------------------------------------- git


def test_git_head_and_the_tracked_diff_are_what_git_prints(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    assert run_folder.git_head(repo) is None and run_folder.git_tracked_diff(repo) is None
    _git(repo, "init", "-q")
    (repo / "pkg" / "a.py").write_bytes(b"x = 1\r\n")
    (repo / "other.py").write_text("y = 1\n")
    assert run_folder.git_head(repo) is None  # no commit yet
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    assert run_folder.git_head(repo) == _git(repo, "rev-parse", "HEAD").decode().strip()
    assert run_folder.git_tracked_diff(repo, "pkg") == b""
    (repo / "pkg" / "a.py").write_bytes(b"x = 2\r\n\xff\n")  # bytes kept as they are
    (repo / "other.py").write_text("y = 2\n")
    diff = run_folder.git_tracked_diff(repo, "pkg")
    assert diff == _git(repo, "diff", "HEAD", "--", "pkg")
    assert b"+x = 2\r\n" in diff and b"other.py" not in diff
    state = run_folder.git_state(repo)
    assert state["commit"] == run_folder.git_head(repo) and state["dirty"] is True
    assert "other.py" in state["diff"] and state["branch"]


# ---------------------------------------------------------------------------- one owner


def _written_names() -> set[str]:
    """Every file name the owner defines (the runs and phases folders are checked as path
    parts, since the same words name other things: a command-line argument, a run.json key)."""
    return {
        run_folder.RUN_JSON,
        run_folder.METRICS,
        run_folder.CONFIG,
        run_folder.OPERATIVE_CONFIG,
        run_folder.GIT_DIFF,
        run_folder.ERROR_LOG,
        run_folder.LOCK,
        run_folder.EVENTS_GLOB,
        *run_folder.CHECKPOINTS,
    }


def _findings(source: str) -> list[str]:
    """Where a source writes a run folder's name itself: a string equal to a file name, a path
    joined with the runs or phases folder, or a git command line."""
    tree = ast.parse(source)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    names, folders = _written_names(), {run_folder.RUNS, run_folder.PHASES}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue
            text = node.value
            if (
                text in names
                or "tfevents" in text
                or "git.resume" in text
                or text.startswith("rev-parse")
            ):
                found.append(f"line {node.lineno}: {text!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in folders:
                    found.append(f"line {node.lineno}: / {side.value!r}")
        elif isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value == "git":
                found.append(f"line {node.lineno}: a git command")
    return found


def test_the_checker_sees_a_written_name():
    source = '''
"""A docstring may say run.json."""
def f(folder, results):
    """And so may this one: checkpoint.pt."""
    print("a run.json is a message, not a path")
    a = folder / "checkpoint.pt"
    b = results / "runs" / "x"
    c = ["git", "-C", str(folder), "rev-parse", "HEAD"]
    return f"{folder}/git.resume{1}.diff", a, b, c, {"phases": 1}
'''
    lines = sorted(int(f.split(":")[0].split()[1]) for f in _findings(source))
    assert lines == [6, 7, 8, 8, 9]


def test_only_the_owner_writes_the_run_folder_names():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == OWNER:
            continue
        found = _findings(path.read_text(encoding="utf-8"))
        if found:
            offenders[path.relative_to(PACKAGE.parent).as_posix()] = found
    assert not offenders, (
        "the run folder's names belong to sharpdarts.core.run_folder; use "
        f"its names and functions instead: {offenders}"
    )


def test_the_owner_imports_nothing_of_the_project_nor_torch():
    tree = ast.parse(OWNER.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "contextlib", "os", "subprocess", "pathlib"}, imported


def test_every_public_function_is_the_owners_own():
    functions = [getattr(run_folder, name) for name in run_folder.__all__]
    functions = [f for f in functions if callable(f)]
    assert functions and all(f.__module__ == run_folder.__name__ for f in functions)
