"""Run folders: provenance, atomic run.json, metrics log, skip/resume/new, concurrency."""

import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import stat
import subprocess
import sys

import pytest

from sharpdarts.core import io
from sharpdarts.errors import UserError
from sharpdarts.store import keys, provenance
from sharpdarts.store.keys import config_hash
from sharpdarts.store.run import Run
from sharpdarts.store.store import find_run, start_run

CONFIG = "EPOCHS = 2\nBATCH_SIZE = 8  # small\n"


@pytest.fixture(autouse=True)
def _no_torch(monkeypatch):
    """Device detection imports torch (seconds); the tests that need it call the real one."""
    monkeypatch.setattr(provenance, "_device_info", lambda: ("cpu", 0))


@pytest.fixture
def norepo(tmp_path):
    """A folder outside any git repository (provenance is then fast and commit-less)."""
    path = tmp_path / "norepo"
    path.mkdir()
    return path


def _start(results, seed=1, config=CONFIG, experiment="cifar10/sharpdarts", repo=None, **kw):
    kw.setdefault("command", ["sharpdarts", "run", experiment, "--seed", str(seed)])
    kw.setdefault("kind", "train")
    return start_run(results, experiment, seed, config, repo_dir=repo, **kw)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _git(repo, *args) -> bytes:
    """Runs git in ``repo`` with a fixed identity and no user config; returns its output."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env=env
    ).stdout


# ---------------------------------------------------------------------------- config hash


def test_config_hash_ignores_comments_blank_lines_and_line_ends():
    base = config_hash("a = 1\nb = 'x'\n")
    assert len(base) == 12 and int(base, 16) >= 0
    assert config_hash("# header\na = 1   # one\r\n\n\nb = 'x'\n") == base
    assert config_hash("a = 2\nb = 'x'\n") != base
    # A '#' inside a string is content, not a comment.
    assert config_hash("a = 1\nb = 'x#y'\n") != config_hash("a = 1\nb = 'x'\n")
    # Order matters in gin (a later binding wins).
    assert config_hash("b = 'x'\na = 1\n") != base


# ---------------------------------------------------------------------------- new runs


def test_start_run_writes_every_design_field(tmp_path, norepo):
    run, decision = _start(
        tmp_path / "res", seed=3, repo=norepo, extra={"genotype_name": "SHARP_DARTS", "smoke": True}
    )
    assert decision == "new"
    assert run.path.parent == tmp_path / "res" / "runs" / "cifar10" / "sharpdarts"
    assert keys.RUN_ID_RE.match(run.run_id)
    info = json.loads((run.path / "run.json").read_text())
    assert info["experiment"] == "cifar10/sharpdarts"
    assert info["seed"] == 3 and info["kind"] == "train"
    assert info["command"] == ["sharpdarts", "run", "cifar10/sharpdarts", "--seed", "3"]
    assert set(info["git"]) == {"commit", "branch", "dirty"}
    assert info["git"]["commit"] is None  # not a git repository
    assert info["config_hash"] == config_hash(CONFIG)
    started = dt.datetime.fromisoformat(info["started"])
    assert started.utcoffset() == dt.timedelta(0)
    assert info["status"] == "running" and info["ended"] is None
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert info["device"] == "cpu" and info["device_count"] == 0
    assert {"torch", "torchvision", "numpy", "pandas", "gin-config", "sharpdarts"} <= set(
        info["packages"]
    )
    assert info["packages"]["sharpdarts"]
    assert info["genotype_name"] == "SHARP_DARTS" and info["smoke"] is True
    assert (run.path / "config.gin").read_text() == CONFIG
    assert not (run.path / "git.diff").exists()
    assert run.checkpoint_path == run.path / "checkpoint.pt"
    assert run.info == info


def test_finish_fail_interrupt_record_status_times_and_final(tmp_path, norepo):
    res = tmp_path / "res"
    run, _ = _start(res, seed=1, repo=norepo)
    run.write_text("operative_config.gin", "x = 1\n")
    info = run.finish({"test_error_top1": 2.5, "params_m": 3.3}, best_epoch=7)
    assert info["status"] == "completed" and info["final"]["test_error_top1"] == 2.5
    assert info["best_epoch"] == 7 and info["reason"] is None
    assert dt.datetime.fromisoformat(info["ended"]).utcoffset() == dt.timedelta(0)
    assert 0 <= info["wall_seconds"] < 60
    assert (run.path / "operative_config.gin").read_text() == "x = 1\n"
    assert json.loads((run.path / "run.json").read_text()) == info

    failed, _ = _start(res, seed=2, repo=norepo)
    assert failed.fail("CUDA out of memory")["status"] == "failed"
    assert failed.info["reason"] == "CUDA out of memory" and failed.info["resumable"] is True
    stopped, _ = _start(res, seed=3, repo=norepo)
    assert stopped.interrupt("SIGTERM")["status"] == "interrupted"
    assert stopped.info["reason"] == "SIGTERM" and stopped.info["ended"]


def test_guard_marks_exceptions_failed_and_ctrl_c_interrupted(tmp_path, norepo):
    run, _ = _start(tmp_path, seed=1, repo=norepo)
    with pytest.raises(RuntimeError):
        with run.guard():
            raise RuntimeError("boom")
    assert run.status == "failed" and "boom" in run.info["reason"]
    run2, _ = _start(tmp_path, seed=2, repo=norepo)
    with pytest.raises(KeyboardInterrupt):
        with run2.guard():
            raise KeyboardInterrupt
    assert run2.status == "interrupted"


def test_bad_names_kinds_and_reserved_extra_are_refused(tmp_path, norepo):
    with pytest.raises(UserError):
        _start(tmp_path, experiment="../escape", repo=norepo)
    with pytest.raises(UserError):
        _start(tmp_path, kind="dance", repo=norepo)
    with pytest.raises(ValueError):
        _start(tmp_path, extra={"status": "completed"}, repo=norepo)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("run.json"))


# ---------------------------------------------------------------------------- atomic writes


def test_run_json_writes_are_atomic_and_leave_no_temp_files(tmp_path, norepo, monkeypatch):
    run, _ = _start(tmp_path, repo=norepo)
    run.update(note="first")
    run.log_epoch({"epoch": 1, "lr": 0.1})
    assert sorted(p.name for p in run.path.iterdir()) == ["config.gin", "metrics.jsonl", "run.json"]
    before = (run.path / "run.json").read_bytes()
    info_before = dict(run.info)

    def crash(*args, **kwargs):
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        run.update(note="second", final={"x": 1})
    with pytest.raises(OSError, match="simulated"):
        run.finish({"test_error_top1": 1.0})
    assert (run.path / "run.json").read_bytes() == before
    assert run.info == info_before
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    assert json.loads((run.path / "run.json").read_text())["note"] == "first"


def test_run_files_are_fsynced_and_honour_the_umask(tmp_path, norepo, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    run, _ = _start(tmp_path, repo=norepo)
    after_start = len(synced)
    run.log_epoch({"epoch": 1})
    assert after_start >= 2 and len(synced) > after_start  # run.json, config.gin, the epoch
    # mkstemp makes 0600 files; results are shared data, so they get what open() would give.
    expected = 0o666 & ~io._UMASK
    for name in ("run.json", "config.gin", "metrics.jsonl"):
        assert stat.S_IMODE((run.path / name).stat().st_mode) == expected, name


# ---------------------------------------------------------------------------- metrics


def test_log_epoch_appends_and_refuses_a_duplicate_epoch(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    for epoch in (1, 2):
        run.log_epoch({"epoch": epoch, "lr": 0.1 / epoch, "train_acc": 50.0 + epoch})
    before = run.metrics_path.read_bytes()
    with pytest.raises(ValueError, match="already logged"):
        run.log_epoch({"epoch": 2, "lr": 0.0})
    assert run.metrics_path.read_bytes() == before
    # A fresh Run object (another process) refuses it too.
    with pytest.raises(ValueError):
        Run(run.path).log_epoch({"epoch": 1})
    with pytest.raises(ValueError):
        run.log_epoch({"lr": 0.1})
    assert run.logged_epochs() == [1, 2]
    assert run.metrics()[1] == {"epoch": 2, "lr": 0.05, "train_acc": 52.0}
    assert Run(run.path).info["last_epoch"] == 2


def test_truncate_metrics_drops_later_epochs_and_a_torn_line(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    for epoch in range(1, 6):
        run.log_epoch({"epoch": epoch, "valid_acc": float(epoch)})
    with open(run.metrics_path, "a") as f:
        f.write('{"epoch": 6, "valid_a')  # a crash mid-append
    assert Run(run.path).logged_epochs() == [1, 2, 3, 4, 5]  # readers ignore the torn line
    resumed = Run(run.path)
    kept = resumed.truncate_metrics(3)
    assert [r["epoch"] for r in kept] == [1, 2, 3]
    text = run.metrics_path.read_text()
    assert text.endswith("\n") and [json.loads(l)["epoch"] for l in text.splitlines()] == [1, 2, 3]
    assert Run(run.path).info["last_epoch"] == 3
    resumed.log_epoch({"epoch": 4, "valid_acc": 40.0})
    assert resumed.logged_epochs() == [1, 2, 3, 4]
    assert [p for p in run.path.iterdir() if p.name.endswith(".tmp")] == []


def test_log_epoch_after_a_torn_line_repairs_the_file_first(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    run.log_epoch({"epoch": 1})
    with open(run.metrics_path, "a") as f:
        f.write('{"epoch": 2, "lr"')
    other = Run(run.path)
    other.log_epoch({"epoch": 2, "lr": 0.5})
    lines = run.metrics_path.read_text().splitlines()
    assert [json.loads(l) for l in lines] == [{"epoch": 1}, {"epoch": 2, "lr": 0.5}]


# ---------------------------------------------------------------------------- decisions


def test_completed_run_is_skipped(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    run.finish({"test_error_top1": 2.0})
    again, decision = _start(tmp_path, repo=norepo)
    assert decision == "skip" and again.path == run.path
    assert again.info["status"] == "completed"
    # The config hash ignores comments, so a reworded comment still skips.
    _, decision = _start(tmp_path, config="# same\n" + CONFIG, repo=norepo)
    assert decision == "skip"


def test_other_seed_or_config_is_a_new_run(tmp_path, norepo):
    run, _ = _start(tmp_path, seed=1, repo=norepo)
    run.finish({})
    other_seed, d1 = _start(tmp_path, seed=2, repo=norepo)
    other_config, d2 = _start(tmp_path, seed=1, config=CONFIG + "EPOCHS = 3\n", repo=norepo)
    assert (d1, d2) == ("new", "new")
    assert len({run.path, other_seed.path, other_config.path}) == 3


def test_interrupted_run_resumes_in_its_folder_and_wall_time_accumulates(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    run.log_epoch({"epoch": 1})
    run.interrupt("SIGTERM")
    # Pretend the first session lasted 100 s.
    run.update(wall_seconds=100.0, wall_seconds_done=100.0)
    resumed, decision = _start(tmp_path, repo=norepo, command=["sharpdarts", "run", "again"])
    assert decision == "resume" and resumed.path == run.path
    info = resumed.info
    assert info["status"] == "running" and info["resumes"] == 1 and info["reason"] is None
    assert info["pid"] == os.getpid() and len(info["sessions"]) == 2
    assert info["sessions"][0]["ended"] and info["sessions"][1]["ended"] is None
    assert info["command"] == ["sharpdarts", "run", "cifar10/sharpdarts", "--seed", "1"]
    assert info["last_command"] == ["sharpdarts", "run", "again"]
    done = resumed.finish({"test_error_top1": 2.0})
    assert 100.0 <= done["wall_seconds"] < 160.0
    assert done["sessions"][1]["ended"] and done["resumes"] == 1


def test_failed_run_resumes_unless_it_was_not_resumable(tmp_path, norepo):
    run, _ = _start(tmp_path, seed=1, repo=norepo)
    run.fail("out of memory")
    resumed, decision = _start(tmp_path, seed=1, repo=norepo)
    assert decision == "resume" and resumed.path == run.path

    nan, _ = _start(tmp_path, seed=2, repo=norepo)
    nan.fail("loss is NaN at epoch 3", resumable=False)
    fresh, decision = _start(tmp_path, seed=2, repo=norepo)
    assert decision == "new" and fresh.path != nan.path
    assert Run(nan.path).status == "failed"  # kept as a record


def test_running_run_with_a_dead_pid_resumes_with_its_session_closed(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    t0 = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    info = dict(
        run.info,
        pid=_dead_pid(),
        pid_start=None,
        wall_seconds_done=10.0,
        session_started=t0.isoformat(),
        updated=(t0 + dt.timedelta(seconds=50)).isoformat(),
    )
    (run.path / "run.json").write_text(json.dumps(info))  # a crash: no status change
    resumed, decision = _start(tmp_path, repo=norepo)
    assert decision == "resume" and resumed.path == run.path
    assert resumed.info["wall_seconds_done"] == pytest.approx(60.0)
    assert resumed.info["crashes"] == 1 and resumed.info["pid"] == os.getpid()


def test_reused_pid_counts_as_dead(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    run.update(pid_start="1")  # our pid, but a different process start time
    _, decision = _start(tmp_path, repo=norepo)
    assert decision == "resume"


def test_same_key_while_the_first_process_is_alive_is_a_user_error(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    with pytest.raises(UserError, match="already running in"):
        _start(tmp_path, repo=norepo)
    # A live child process holding the run: still refused; once it is gone, resumed.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.update(pid=child.pid, pid_start=provenance.process_start_time(child.pid))
        with pytest.raises(UserError, match=str(run.path)):
            _start(tmp_path, repo=norepo)
    finally:
        child.kill()
        child.wait()
    _, decision = _start(tmp_path, repo=norepo)
    assert decision == "resume"


def test_running_on_another_host_is_not_resumed(tmp_path, norepo):
    run, _ = _start(tmp_path, repo=norepo)
    run.update(host="some-other-machine", pid=_dead_pid())
    with pytest.raises(UserError, match="some-other-machine"):
        _start(tmp_path, repo=norepo)


# ---------------------------------------------------------------------------- git


def test_dirty_tree_detection_and_diff(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "model.py").write_text("WIDTH = 16\n")
    _git(repo, "add", "model.py")
    _git(repo, "commit", "-q", "-m", "first")
    results = repo / "results"  # the results store inside the repo never makes it dirty

    clean, _ = _start(results, seed=1, repo=repo, allow_dirty=False)
    assert clean.info["git"]["dirty"] is False and clean.info["git"]["branch"] == "main"
    assert len(clean.info["git"]["commit"]) == 40
    assert not (clean.path / "git.diff").exists()
    second, _ = _start(results, seed=2, repo=repo, allow_dirty=False)
    assert second.info["git"]["dirty"] is False

    (repo / "model.py").write_text("WIDTH = 36\n")
    (repo / "new_op.py").write_text("NEW = True\n")
    dirty, _ = _start(results, seed=3, repo=repo)
    assert dirty.info["git"]["dirty"] is True
    diff = (dirty.path / "git.diff").read_text()
    assert "+WIDTH = 36" in diff and "-WIDTH = 16" in diff and "+NEW = True" in diff

    before = sorted(p for p in results.rglob("*") if ".lock" not in p.name)
    with pytest.raises(UserError, match="--allow-dirty"):
        _start(results, seed=4, repo=repo, allow_dirty=False)
    assert sorted(p for p in results.rglob("*") if ".lock" not in p.name) == before


def test_repo_without_commits_and_no_repo_have_no_commit(tmp_path, norepo):
    repo = tmp_path / "fresh"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    prov = provenance.collect_provenance(repo)
    assert prov["git"]["commit"] is None and prov["git"]["dirty"] is True
    assert "+x = 1" in prov["diff"]
    assert provenance.collect_provenance(norepo)["git"] == {
        "commit": None,
        "branch": None,
        "dirty": None,
    }
    with pytest.raises(UserError, match="commit"):
        _start(tmp_path / "res", repo=norepo, allow_dirty=False)
    assert not list((tmp_path / "res").rglob("run.json"))


def test_real_provenance_reports_device_and_packages(monkeypatch, norepo):
    monkeypatch.undo()  # the real device detection (imports torch)
    prov = provenance.collect_provenance(norepo)
    assert isinstance(prov["device"], str) and prov["device"]
    assert isinstance(prov["device_count"], int) and prov["device_count"] >= 0
    assert (prov["device"] == "cpu") == (prov["device_count"] == 0)
    assert prov["packages"]["torch"] and prov["python"].count(".") == 2


# ---------------------------------------------------------------------------- find_run


def test_find_run_by_id_prefix_path_and_close_matches(tmp_path, norepo):
    run, _ = _start(tmp_path, seed=1, repo=norepo)
    other, _ = _start(tmp_path, seed=2, experiment="search/darts", kind="search", repo=norepo)
    assert find_run(tmp_path, run.run_id).path == run.path
    assert find_run(tmp_path, f"run:{other.run_id}").path == other.path
    assert find_run(tmp_path, str(other.path)).path == other.path
    assert find_run(tmp_path, f"cifar10/sharpdarts/{run.run_id}").path == run.path
    assert find_run(tmp_path, run.run_id[:-2]).path == run.path  # a unique prefix
    typo = run.run_id[:-1] + ("0" if run.run_id[-1] != "0" else "1")
    with pytest.raises(UserError, match="Did you mean"):
        find_run(tmp_path, typo)
    with pytest.raises(UserError, match="ambiguous"):
        find_run(tmp_path, run.run_id[:4])


# ---------------------------------------------------------------------------- concurrency


def _start_and_finish(results, repo, seed, barrier):
    barrier.wait(timeout=60)
    run, decision = _start(results, seed=seed, repo=repo)
    run.log_epoch({"epoch": 1, "train_loss": 1.0 / seed})
    run.finish({"test_error_top1": float(seed)})


def _start_same_key(results, repo, barrier, queue):
    barrier.wait(timeout=60)
    try:
        _, decision = _start(results, seed=7, repo=repo)
    except UserError:
        decision = "refused"
    queue.put(decision)
    barrier.wait(timeout=60)  # keep every process alive until all have decided


def _context():
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def test_ten_processes_starting_at_once_get_ten_complete_folders(tmp_path, norepo):
    ctx = _context()
    barrier = ctx.Barrier(10)
    procs = [
        ctx.Process(target=_start_and_finish, args=(tmp_path, norepo, seed, barrier))
        for seed in range(1, 11)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 10
    folders = [p.parent for p in (tmp_path / "runs").rglob("run.json")]
    assert len(folders) == len({f.name for f in folders}) == 10
    infos = [json.loads((f / "run.json").read_text()) for f in folders]
    assert sorted(i["seed"] for i in infos) == list(range(1, 11))
    assert all(
        i["status"] == "completed" and i["final"]["test_error_top1"] == i["seed"] for i in infos
    )
    assert all((f / "config.gin").read_text() == CONFIG for f in folders)
    assert all(len(Run(f).metrics()) == 1 for f in folders)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_same_key_started_at_once_runs_exactly_once(tmp_path, norepo):
    ctx = _context()
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_start_same_key, args=(tmp_path, norepo, barrier, queue))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    decisions = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(120)
    assert decisions == ["new", "refused", "refused", "refused"]
    assert len(list((tmp_path / "runs").rglob("run.json"))) == 1
