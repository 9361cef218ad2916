"""Fault injection: kill a run at chosen points, damage each file of a run folder, run again.

Every case must end with the run completed and every epoch logged exactly once, or with a
clear exit 2 that loses nothing already recorded. A kill is a real one: the run goes on in a
forked child process that ends itself with ``os._exit`` (no ``finally``, no handler, like
SIGKILL) at the chosen point; the same command then runs in this process. Points and epochs
are drawn from a seeded generator, so a failure is reproducible.
"""

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from sharpdarts.core import io as io_lib
from sharpdarts.core import run_folder
from sharpdarts.engine import checkpoint as checkpoint_lib
from sharpdarts.face import cli

EPOCHS = 3
# No eigenvalue (collapse_metrics.every = 0): a fifth of a smoke search's time, and nothing
# these tests look at (tests/test_midepoch_resume.py resumes a search that measures it).
COMMAND = ["run", "demo/search", "--smoke", "--seed", "1", "--gin_param", f"EPOCHS={EPOCHS}"]
COMMAND += ["--gin_param", "collapse_metrics.every = 0"]
# A supernet of one node of four ops a cell (not smoke.gin's two nodes of DARTS's eight): a
# fifth of a smoke search's time, and the same run folder, checkpoints and records that
# these tests (and tests/test_recovery.py, test_diff.py, test_validate.py) look at.
SMALL_SUPERNET_BINDINGS = [
    "SearchNetwork.steps = 1",
    "SearchNetwork.multiplier = 1",
    "SearchNetwork.primitives = ['none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3']",
]
SMALL_SUPERNET = [arg for binding in SMALL_SUPERNET_BINDINGS for arg in ("--gin_param", binding)]
COMMAND += SMALL_SUPERNET
DRAW = random.Random(12)  # the kill points' epochs: seeded, so a failure reproduces
KILLED = 137


def run(results, *extra) -> int:
    return cli.main([*COMMAND, "--results", str(results), *extra])


def folders(results) -> list[Path]:
    root = Path(results) / "runs" / "demo" / "search"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


def logged(folder: Path) -> list[int]:
    text = (folder / "metrics.jsonl").read_text(errors="replace")
    return [json.loads(line)["epoch"] for line in text.splitlines() if line.strip()]


def status(folder: Path) -> str:
    return json.loads((folder / "run.json").read_text())["status"]


def die() -> None:
    os._exit(KILLED)


def _torn_write(path, data) -> None:
    """What a kill in the middle of :func:`atomic_write` leaves: a temp file cut short."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    with open(path.parent / f".{path.name}.killed.tmp", "wb") as f:
        f.write(payload[: len(payload) // 2])
    die()


def _nth(n: int, condition=lambda *a, **k: True):
    """A counter that says True at the n-th call for which ``condition`` holds."""
    calls = [0]

    def hit(*args, **kwargs) -> bool:
        if condition(*args, **kwargs):
            calls[0] += 1
            return calls[0] == n
        return False

    return hit


def inject(point: str, n: int) -> None:
    """Arms a kill at the ``n``-th occurrence of ``point`` (in the child process only)."""
    if point == "checkpoint_write":  # mid-write of checkpoint.next.pt
        real, hit = io_lib.atomic_write, _nth(n)
        checkpoint_lib.atomic_write = lambda p, d: _torn_write(p, d) if hit() else real(p, d)
    elif point == "checksum_recorded":  # the checksum is in run.json, the file is not written
        real_save, hit = checkpoint_lib.save_checkpoint, _nth(n)
        checkpoint_lib.save_checkpoint = lambda p, s: die() if hit() else real_save(p, s)
    elif point == "between_metrics_and_checkpoint":  # the epoch is logged, not checkpointed
        real_record, hit = checkpoint_lib.record_checkpoint, _nth(n)
        checkpoint_lib.record_checkpoint = lambda r, e, s: die() if hit() else real_record(r, e, s)
    elif point == "mid_rotation":  # checkpoint.pt is now .prev.pt; .next.pt is not renamed yet
        real_replace = os.replace
        hit = _nth(n, lambda src, dst: Path(src).name == run_folder.CHECKPOINT_NEXT)
        os.replace = lambda src, dst: die() if hit(src, dst) else real_replace(src, dst)
    elif point == "metrics_append":  # a torn metrics line
        real_append, hit = io_lib.append_jsonl, _nth(n)

        def append(path, record):
            if not hit():
                return real_append(path, record)
            with open(path, "a", encoding="utf-8") as f:
                line = json.dumps(record)
                f.write(line[: len(line) // 2])
            die()

        io_lib.append_jsonl = append
    elif point == "run_json_write":
        real_write = io_lib.atomic_write
        hit = _nth(n, lambda p, d: Path(p).name == "run.json")
        io_lib.atomic_write = lambda p, d: _torn_write(p, d) if hit(p, d) else real_write(p, d)
    else:
        raise ValueError(point)


def killed_run(results, point: str, n: int) -> int:
    """Runs the command in a forked child killed at ``point``; returns its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            inject(point, n)
            code = run(results)
        except BaseException:
            code = 99
        os._exit(code)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def assert_completed_once(results) -> Path:
    """The run completed with every epoch logged exactly once; returns its folder."""
    done = [
        f
        for f in folders(results)
        if (f / "run.json").exists() and _readable(f) and status(f) == "completed"
    ]
    assert len(done) == 1, [(f.name, sorted(p.name for p in f.iterdir())) for f in folders(results)]
    assert logged(done[0]) == list(range(1, EPOCHS + 1))
    return done[0]


def _readable(folder: Path) -> bool:
    try:
        json.loads((folder / "run.json").read_text())
        return True
    except (ValueError, UnicodeDecodeError):
        return False


KILL_POINTS = [
    ("checkpoint_write", DRAW.randint(1, EPOCHS)),
    ("checksum_recorded", DRAW.randint(1, EPOCHS)),
    ("between_metrics_and_checkpoint", DRAW.randint(1, EPOCHS)),
    ("mid_rotation", DRAW.randint(2, EPOCHS)),
    ("metrics_append", DRAW.randint(1, EPOCHS)),
    ("run_json_write", DRAW.randint(2, 12)),
]


@pytest.mark.parametrize("point, n", KILL_POINTS)
def test_a_killed_run_resumes_and_completes_with_each_epoch_once(point, n, tmp_path, capsys):
    assert killed_run(tmp_path, point, n) == KILLED
    assert len(folders(tmp_path)) == 1
    assert run(tmp_path) == 0, capsys.readouterr().err
    folder = assert_completed_once(tmp_path)
    assert folder == folders(tmp_path)[0]  # resumed in its own folder
    assert not list(folder.glob(".*.tmp"))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A results store whose run was killed after logging epoch 3, before its checkpoint:
    checkpoint.pt (epoch 2), checkpoint.prev.pt (epoch 1), three metrics lines."""
    results = tmp_path_factory.mktemp("interrupted")
    assert killed_run(results, "between_metrics_and_checkpoint", 3) == KILLED
    return results


def _damage(file: Path, how: str) -> None:
    data = file.read_bytes()
    if how == "truncate":
        file.write_bytes(data[: len(data) // 2])
    else:  # a storage fault: bytes flipped in the middle, the size unchanged
        middle = len(data) // 2
        file.write_bytes(
            data[:middle]
            + bytes(b ^ 0xFF for b in data[middle : middle + 16])
            + data[middle + 16 :]
        )


# config.gin stands for the text files that resume does not read (git.diff likewise).
FILES = ["run.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt", "operative_config.gin"]
# A corrupted checkpoint.pt is refused by the check that refuses a truncated one (its sha256
# matches no record, before it is loaded): tests/test_recovery.py resumes past a corrupted one.
CASES = [(name, "truncate") for name in FILES] + [
    (name, "corrupt") for name in ("run.json", "metrics.jsonl")
]


@pytest.mark.parametrize("name, how", CASES)
def test_a_damaged_file_ends_completed_or_in_a_clear_exit_2(
    name, how, interrupted, tmp_path, capsys
):
    results = tmp_path / "results"
    shutil.copytree(interrupted, results)
    (folder,) = folders(results)
    _damage(folder / name, how)
    damaged = (folder / name).read_bytes()
    metrics_before = (folder / "metrics.jsonl").read_bytes()

    code = run(results)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 2:  # a clear refusal that loses nothing
        assert "--restart" in err or "run.json" in err, err
        kept = [p.read_bytes() for p in folder.glob(f"{name}*")]
        assert damaged in kept
        assert (folder / "metrics.jsonl").read_bytes() == metrics_before
        assert run(results, "--restart") == 0, capsys.readouterr().err
    else:
        assert code == 0, err
    done = assert_completed_once(results)
    if done != folder:  # a run.json that cannot be read: that folder is kept as it was
        assert name == "run.json" and (folder / name).read_bytes() == damaged
