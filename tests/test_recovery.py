"""Damaged checkpoints, full disks, out-of-memory errors and unexpected exceptions: a run never
loses what it recorded, and the terminal never shows a raw traceback without ``-v``."""

import contextlib
import errno
import io
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
from test_faults import SMALL_SUPERNET  # tests/test_faults.py: one node of four ops a cell

from sharpdarts.core import io as io_lib
from sharpdarts.engine import checkpoint as checkpoint_lib
from sharpdarts.engine import search_job
from sharpdarts.face import cli

# No eigenvalue (collapse_metrics.every = 0): a fifth of a smoke search's time, and nothing
# these tests look at (tests/test_midepoch_resume.py resumes a search that measures it).
EXPERIMENT = ["run", "demo/search", "--smoke", "--seed", "1", "--gin_param", "EPOCHS=3"]
EXPERIMENT += ["--gin_param", "collapse_metrics.every = 0", *SMALL_SUPERNET]


def run(capsys, results, *extra) -> tuple[int, str]:
    code = cli.main([*EXPERIMENT, "--results", str(results), *map(str, extra)])
    err = capsys.readouterr().err
    return code, err


def the_run(results) -> Path:
    folders = sorted((Path(results) / "runs" / "demo" / "search").iterdir())
    assert len(folders) == 1, folders
    return folders[0]


def info(folder) -> dict:
    return json.loads((Path(folder) / "run.json").read_text())


def epochs(folder) -> list[int]:
    lines = (Path(folder) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def interrupted_after(capsys, results, epoch: int, monkeypatch) -> Path:
    """A run stopped (as by a kill) just after the checkpoint of ``epoch`` is written."""
    real = checkpoint_lib.save_checkpoint

    def save(path, state):
        real(path, state)
        if state["epoch"] == epoch:
            raise KeyboardInterrupt  # marks the run 'interrupted', as a Ctrl-C does

    with monkeypatch.context() as m:
        m.setattr(checkpoint_lib, "save_checkpoint", save)
        code, _ = run(capsys, results)
    assert code == 130
    folder = the_run(results)
    assert info(folder)["status"] == "interrupted"
    return folder


def test_a_damaged_checkpoint_resumes_from_the_previous_good_one(tmp_path, capsys, monkeypatch):
    """A storage fault: the same length, a few bytes changed in the middle. A checkpoint cut
    short is found by the same check (its sha256 matches no record, checked before it is
    loaded); tests/test_faults.py resumes past a truncated one."""
    folder = interrupted_after(capsys, tmp_path, 2, monkeypatch)
    newest = folder / "checkpoint.pt"
    data = newest.read_bytes()
    middle = len(data) // 2
    newest.write_bytes(
        data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]
    )
    damaged = newest.read_bytes()

    code, err = run(capsys, tmp_path)
    assert code == 0, err
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if "damaged" in line]
    assert len(said) == 1 and "resuming from checkpoint.prev.pt (epoch 1)" in said[0]
    record = info(folder)
    assert record["status"] == "completed"
    assert epochs(folder) == [1, 2, 3]  # epoch 2 redone, logged once
    event = record["checkpoint_events"]
    assert event[0]["file"] == "checkpoint.pt" and event[-1] == {
        **event[-1],
        "resumed_from": "checkpoint.prev.pt",
        "epoch": 1,
    }
    aside = folder / event[0]["set_aside_as"]
    assert aside.read_bytes() == damaged  # set aside, never deleted


def test_no_good_checkpoint_exits_2_and_restart_starts_again_in_the_same_folder(
    tmp_path, capsys, monkeypatch
):
    """(Also the fault-injection case of both checkpoints damaged: the same check refuses
    them, whatever the bytes.)"""
    folder = interrupted_after(capsys, tmp_path, 2, monkeypatch)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (folder / name).write_bytes(b"not a checkpoint")
    before = epochs(folder)

    code, err = run(capsys, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert "--restart" in err and "No good checkpoint" in err
    assert epochs(folder) == before  # nothing recorded is lost
    assert len(list(folder.glob("checkpoint*.damaged-*"))) == 2
    assert info(folder)["status"] == "interrupted"
    code, err = run(capsys, tmp_path)  # still refused: the files are gone aside
    assert code == 2

    code, err = run(capsys, tmp_path, "--restart")
    assert code == 0, err
    assert the_run(tmp_path) == folder
    assert epochs(folder) == [1, 2, 3] and info(folder)["status"] == "completed"
    assert info(folder)["checkpoint_events"][-1]["restarted"] is True
    assert list(folder.glob("metrics.jsonl.damaged-*"))  # the old log is kept aside


@pytest.fixture(scope="module")
def out_of_space(tmp_path_factory) -> dict:
    """A run that fails for an injected ENOSPC while the checkpoint of epoch 3 is written, and
    the same command again: the folder, what each run returned and said, and run.json after
    the failure. Shared by the tests of both (one run and its resume, not two runs)."""
    results = tmp_path_factory.mktemp("out_of_space")
    real = io_lib.atomic_write

    def full_disk(path, data):
        if torch.load(io.BytesIO(data), weights_only=True)["epoch"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    def run_quietly() -> tuple[int, str]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([*EXPERIMENT, "--results", str(results)])
        return code, err.getvalue()

    with pytest.MonkeyPatch.context() as m:
        m.setattr(checkpoint_lib, "atomic_write", full_disk)
        failed = run_quietly()
    folder = the_run(results)
    after_failure = {
        "info": info(folder),
        "files": {f.name: checkpoint_lib.file_sha256(f) for f in folder.glob("checkpoint*.pt")},
        "error_log": (folder / "error.log").read_text(),
    }
    return {"folder": folder, "failed": failed, "after": after_failure, "resumed": run_quietly()}


def test_running_out_of_space_loses_nothing(out_of_space):
    """The run fails with one paragraph; the previous checkpoints and run.json are intact; the
    run then completes."""
    code, err = out_of_space["failed"]
    assert code == 1 and "Traceback" not in err and "No space left" in err
    record, files = out_of_space["after"]["info"], out_of_space["after"]["files"]
    assert record["status"] == "failed" and "No space left" in record["reason"]
    shas = {r["sha256"]: r["epoch"] for r in record["checkpoints"]}
    assert shas[files["checkpoint.pt"]] == 2 and shas[files["checkpoint.prev.pt"]] == 1
    assert "OSError" in out_of_space["after"]["error_log"]

    code, err = out_of_space["resumed"]
    folder = out_of_space["folder"]
    assert code == 0, err
    assert epochs(folder) == [1, 2, 3] and info(folder)["status"] == "completed"


def test_the_last_two_checkpoints_are_kept_with_their_checksums(out_of_space):
    """After three epochs (the third in the resumed run above), the checkpoints of epochs 3
    and 2 are kept, each with its checksum recorded; the first is gone, no temporary file."""
    code, err = out_of_space["resumed"]
    assert code == 0, err
    folder = out_of_space["folder"]
    recorded = {r["sha256"]: r["epoch"] for r in info(folder)["checkpoints"]}
    for name, epoch in (("checkpoint.pt", 3), ("checkpoint.prev.pt", 2)):
        assert recorded[checkpoint_lib.file_sha256(folder / name)] == epoch
        assert torch.load(folder / name, weights_only=True)["epoch"] == epoch
    assert sorted(p.name for p in folder.glob("checkpoint*")) == [
        "checkpoint.prev.pt",
        "checkpoint.pt",
    ]
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))


def test_a_run_json_write_that_fails_for_space_leaves_run_json_as_it_was(tmp_path, monkeypatch):
    from sharpdarts.store.run import Run

    folder = tmp_path / "run"
    folder.mkdir()
    io_lib.atomic_write_json(folder / "run.json", {"status": "running", "epoch": 1})
    run_ = Run(folder)
    before = (folder / "run.json").read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        run_.update(status="completed")
    monkeypatch.undo()
    assert (folder / "run.json").read_bytes() == before
    assert run_.info["status"] == "running"
    assert [p.name for p in folder.iterdir()] == ["run.json"]  # no temp file left


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 320 KiB tmpfs (room for two of the small supernet's checkpoints of about 130 KiB, not
    three), where allowed."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(
            "this machine does not allow mounting a tmpfs: "
            + done.stderr.decode(errors="replace").strip()
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_tmpfs_loses_nothing(small_tmpfs, capsys):
    code, err = run(capsys, small_tmpfs)
    assert code == 1 and "Traceback" not in err
    folder = the_run(small_tmpfs)
    record = info(folder)  # readable: never torn
    assert record["status"] in ("failed", "running")
    good = {r["sha256"]: r["epoch"] for r in record["checkpoints"]}
    kept = [good.get(checkpoint_lib.file_sha256(f)) for f in folder.glob("checkpoint*.pt")]
    assert kept and None not in kept  # every checkpoint on disk is a recorded good one
    logged = epochs(folder)
    assert logged == sorted(set(logged)) and max(kept) >= 1

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    code, err = run(capsys, small_tmpfs)
    assert code == 0, err
    assert epochs(folder) == [1, 2, 3] and info(folder)["status"] == "completed"


def test_out_of_memory_names_batch_size_and_device(tmp_path, capsys, monkeypatch):
    def oom(self, x, y):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(search_job.SearchJob, "train_step", oom)
    code, err = run(capsys, tmp_path)
    text = " ".join(err.split())
    assert code == 1 and "Traceback" not in err
    assert "out of memory on cpu with batch size 8" in text
    folder = the_run(tmp_path)
    assert str(folder) in text and "error.log" in text
    assert "batch size 8" in info(folder)["reason"]
    assert "OutOfMemoryError" in (folder / "error.log").read_text()


def test_an_unexpected_error_fails_the_run_with_one_paragraph(tmp_path, capsys, monkeypatch):
    def bug(self, epoch):
        raise ZeroDivisionError("a bug in end_epoch")

    monkeypatch.setattr(search_job.SearchJob, "end_epoch", bug)
    code, err = run(capsys, tmp_path)
    assert code == 1
    assert "Traceback" not in err and err.startswith("sharpdarts: error: The run failed")
    folder = the_run(tmp_path)
    assert info(folder)["status"] == "failed"
    assert "ZeroDivisionError: a bug in end_epoch" in info(folder)["reason"]
    log = (folder / "error.log").read_text()
    assert "Traceback" in log and "end_epoch" in log

    code = cli.main(["-v", *EXPERIMENT, "--results", str(tmp_path)])  # resumes, fails again
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err


def test_an_unexpected_error_outside_a_run_is_one_paragraph(tmp_path, capsys, monkeypatch):
    from sharpdarts.store import results

    def broken(*args, **kwargs):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(results, "load_runs", broken)
    assert cli.main(["table", "demo", "--results", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "the disk went away" in err and "-v" in err
    assert cli.main(["-v", "table", "demo", "--results", str(tmp_path)]) == 1
    assert "Traceback" in capsys.readouterr().err
