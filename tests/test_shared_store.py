"""A results store that many processes (and machines) share: lock files, run ids, tables."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sharpdarts.core import run_folder
from sharpdarts.store import keys, locks, results, store, tables

REPO = Path(__file__).resolve().parents[1]
SSC = "cifar10/sharpsepconv_darts"


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- the lock file ---------------------------------------------------------------------------

COUNTER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from sharpdarts.store import locks
    lock, counter, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    for _ in range(n):
        with locks.exclusive(lock):
            value = int(counter.read_text())  # read, then write: lost updates without the lock
            counter.write_text(str(value + 1))
""")


def test_the_lock_file_excludes_other_processes(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTER, str(tmp_path / "x.lock"), str(counter), "40"],
            env=_env(),
        )
        for _ in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    assert counter.read_text() == "160"
    assert not (tmp_path / "x.lock").exists()


def test_a_lock_left_by_a_dead_process_on_this_host_is_broken_at_once(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "token": "old"}))
    start = time.monotonic()
    with locks.exclusive(lock, timeout=5) as holder:
        assert locks.read_lock(lock)["token"] == holder["token"] != "old"
    assert time.monotonic() - start < 2 and not lock.exists()
    assert not list(tmp_path.glob("x.lock.stale.*"))


def test_a_lock_from_another_host_is_waited_for_until_it_is_stale(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
    with pytest.raises(locks.LockTimeout, match="elsewhere"):
        with locks.exclusive(lock, timeout=0.3, stale_after=60):
            pass
    assert locks.read_lock(lock)["token"] == "theirs"  # a live holder's lock is kept
    old = time.time() - 120
    os.utime(lock, (old, old))  # its machine died two minutes ago
    with locks.exclusive(lock, timeout=5, stale_after=60) as holder:
        assert locks.read_lock(lock)["token"] == holder["token"]


def test_a_holder_whose_lock_was_broken_does_not_remove_the_next_holders(tmp_path):
    lock = tmp_path / "x.lock"
    with locks.exclusive(lock):
        # Another process judged us stale and took the lock meanwhile.
        lock.unlink()
        lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "next"}))
    assert locks.read_lock(lock)["token"] == "next"


def test_breaking_a_stale_lock_gives_back_a_fresh_one_taken_meanwhile(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "fresh"}))
    locks._break(lock, {"host": "elsewhere", "pid": 1, "token": "stale"})
    assert locks.read_lock(lock)["token"] == "fresh"
    assert not list(tmp_path.glob("x.lock.stale.*"))


# ---- run ids ---------------------------------------------------------------------------------


def test_run_ids_carry_a_host_tag_and_stay_valid(monkeypatch):
    first = keys.new_run_id()
    monkeypatch.setattr(socket, "gethostname", lambda: "node-0042")
    other = keys.new_run_id()
    assert keys.RUN_ID_RE.match(first) and keys.RUN_ID_RE.match(other)
    assert first.split("-")[-1][:4] != other.split("-")[-1][:4]
    assert len({keys.new_run_id() for _ in range(2000)}) == 2000


# ---- many runs into one store ----------------------------------------------------------------


def _writer(results: Path, seed: int, finish: bool, repo_dir: Path) -> None:
    config = "EPOCHS = 3\n"
    run, decision = store.start_run(
        results, SSC, seed, config, command=["sharpdarts", "run"], kind="train", repo_dir=repo_dir
    )
    assert decision == "new", decision
    for epoch in (1, 2, 3):
        run.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch})
    if finish:
        run.finish({"test_error_top1": 2.0 + seed / 100})
    else:
        run.update(pid=999999999)  # still running elsewhere: its process is not this one
    print(run.path)


def test_twenty_concurrent_runs_land_once_each_and_tables_count_completed_seeds(tmp_path):
    """22 processes (forked, released together, so they meet at the store's lock at once)."""
    from spawning import forked_output, race_forked

    norepo = tmp_path / "norepo"
    norepo.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    res = tmp_path / "results"
    # 20 runs finish, 2 are still running when the table is built.
    jobs = [(seed, seed <= 20) for seed in range(1, 23)]
    codes = race_forked(
        [lambda s=seed, f=finish: _writer(res, s, f, norepo) for seed, finish in jobs], logs
    )
    outs = [forked_output(logs, i) for i in range(len(jobs))]
    assert codes == [0] * 22, [out for code, out in zip(codes, outs) if code][:2]
    folders = [Path(out.strip()) for out in outs]
    assert len(set(folders)) == 22
    for folder in folders:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    frame = results.load_runs(res)
    assert len(frame) == 22 and frame["run_id"].is_unique
    assert (frame["status"] == "completed").sum() == 20
    table = tables.build_table("cifar10", frame)
    row = table[table["experiment"] == SSC].iloc[0]
    assert row["seeds"] == 20 and row["running"] == 2
    assert row["test_error_mean"] == pytest.approx(2.0 + 10.5 / 100)
    text = tables.format_table(table, "markdown")
    assert f"Still running (not counted; seeds are completed runs only): {SSC}: 2" in text
    # Starting them all again skips every completed one: each is counted once.
    again = [
        store.start_run(
            res, SSC, seed, "EPOCHS = 3\n", command=["x"], kind="train", repo_dir=norepo
        )[1]
        for seed in range(1, 21)
    ]
    assert again == ["skip"] * 20
    assert not run_folder.lock_file(res).exists()


def test_a_requeued_scheduler_job_resumes_its_run_left_running_on_another_host(tmp_path):
    norepo = tmp_path / "norepo"
    norepo.mkdir()
    job = {"executor": "slurm", "job_id": "4242_3"}
    run, _ = store.start_run(
        tmp_path,
        SSC,
        1,
        "A = 1\n",
        command=["x"],
        kind="train",
        repo_dir=norepo,
        extra={"scheduler": job},
    )
    run.update(host="node-7")  # preempted there with SIGKILL: still 'running' on node-7
    with pytest.raises(Exception, match="already running"):
        store.start_run(
            tmp_path,
            SSC,
            1,
            "A = 1\n",
            command=["x"],
            kind="train",
            repo_dir=norepo,
            extra={"scheduler": {**job, "job_id": "4243"}},
        )
    again, decision = store.start_run(
        tmp_path,
        SSC,
        1,
        "A = 1\n",
        command=["x"],
        kind="train",
        repo_dir=norepo,
        extra={"scheduler": job},
    )
    assert decision == "resume" and again.path == run.path
