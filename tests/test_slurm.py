"""``sharpdarts sweep`` on a real Slurm: the single-node cluster of tests/slurm/start.sh.

CI (.ci/run) installs Debian's slurm-wlm and munge and starts that cluster before `make test`;
where no Slurm answers (``sinfo`` missing or failing) these tests skip. The cluster has no GPUs
and no accounting (no slurmdbd, so ``sacct`` fails): states come from ``squeue`` and the run
folders. Every job is a smoke run on one CPU.

Slurm holds a requeued batch job back for two minutes (its begin time) before it may start
again; the tests start their own requeued jobs at once (``scontrol update StartTime=now``),
as an administrator could, so that a test takes seconds, not minutes.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sharpdarts.face import cli, sweep_status

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "cifar10/sharpsepconv_darts"
# One CPU, 1 GB and no GPU per job: the node of start.sh (2 CPUs, no GPUs) runs two at once.
SMALL = ["--gpus", "0", "--cpus", "1", "--mem", "1", "--time", "5", "--smoke", "--allow-dirty"]


def _slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not _slurm_answers(),
        reason="no Slurm answers here (sinfo missing or failing); tests/slurm/start.sh starts one",
    ),
]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(autouse=True)
def _cancel_at_end(tmp_path):
    """A test that fails leaves no job behind on the cluster: its sweeps' jobs are cancelled
    (scancel of an ended job does nothing)."""
    yield
    for record in tmp_path.glob("results/sweeps/*/sweep.json"):
        ids = {job["job_id"].split("_")[0] for job in json.loads(record.read_text())["jobs"]}
        subprocess.run(["scancel", *sorted(ids)], capture_output=True, timeout=30)


def _submit(monkeypatch, capsys, results: Path, *more: str) -> dict:
    """``sharpdarts sweep --launcher slurm`` in this process; returns the sweep record. The jobs
    take this environment (sbatch exports it): one thread, this checkout on PYTHONPATH."""
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    argv = ["sweep", EXPERIMENT, "--launcher", "slurm", "--results", str(results), *more]
    rc = cli.main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    return sweep_status.load_sweep(results, None)


def _slurm(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _start_requeued(record: dict) -> None:
    """Starts the sweep's requeued jobs now rather than after Slurm's two minutes."""
    mine = {job["job_id"] for job in record["jobs"]}
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", "PD", "-o", "%i|%r"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        job, _, reason = line.partition("|")
        if job in mine and reason == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)


def _wait(results: Path, record: dict, until, timeout: float, *, then=None) -> list[dict]:
    """Polls the sweep's status rows until ``until(rows)``; ``then(rows)`` is called each time
    (e.g. to requeue a job once it has logged an epoch)."""
    deadline = time.monotonic() + timeout
    rows: list = []
    while time.monotonic() < deadline:
        _, rows = sweep_status.job_states(results, record["sweep_id"])
        if until(rows):
            return rows
        if then is not None:
            then(rows)
        _start_requeued(record)
        time.sleep(0.5)
    logs = sorted((results / "sweeps" / record["sweep_id"] / "jobs").glob("*_log.*"))
    tails = "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in logs)
    raise AssertionError(f"timed out: {rows}\n{tails}")


def _all(state: str):
    return lambda rows: all(r["state"] == state for r in rows)


def _info(results: Path) -> dict:
    [path] = results.glob("runs/*/*/*/run.json")
    return json.loads(path.read_text())


def _epochs(run: dict) -> list[int]:
    text = (Path(run["path"]) / "metrics.jsonl").read_text()
    return [json.loads(line)["epoch"] for line in text.splitlines() if line.strip()]


def _status(results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sharpdarts", "sweep", "--status", "--results", str(results)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow(8)
def test_a_sweep_of_two_seeds_completes_and_its_status_is_quiet(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    record = _submit(monkeypatch, capsys, results, "--seeds", "1-2", "--parallel", "2", *SMALL)
    assert [job["job_id"].split("_")[1] for job in record["jobs"]] == ["0", "1"]
    _wait(results, record, _all("completed"), 240)
    status = _status(results)
    lines = [line for line in status.stdout.splitlines() if line.startswith("  ")]
    assert status.returncode == 0 and [line.split()[6] for line in lines] == ["completed"] * 2
    # No accounting on this cluster: no warning about sacct, submitit's or anyone's.
    assert status.stderr == "" and "sacct" not in status.stdout, status.stdout + status.stderr
    assert "2 completed seeds, 0 still running or queued" in status.stdout
    runs = [json.loads(p.read_text()) for p in results.glob("runs/*/*/*/run.json")]
    assert sorted(r["scheduler"]["array_task_id"] for r in runs) == ["0", "1"]
    assert {r["scheduler"]["executor"] for r in runs} == {"slurm"}


@pytest.mark.parametrize(
    "more, advice",
    [
        ([], "the partition has no GPUs: pass --gpus 0;"),
        (["--gpus", "0", "--cpus", "1", "--mem", "1", "--partition", "gpu"], "one of debug"),
        (["--gpus", "0", "--cpus", "1", "--mem", "1", "--time", "2880"], "pass --time 1440 or"),
        (["--gpus", "0", "--cpus", "999", "--mem", "1"], "CPUs: pass --cpus"),
    ],
)
def test_a_request_the_cluster_refuses_exits_2_and_queues_nothing(
    tmp_path, monkeypatch, capsys, more, advice
):
    """The defaults (a GPU, 8 CPUs, 32 GB) on this GPU-less node, an unknown partition, a time
    over the partition's day: sbatch refuses, and the user reads which option to change."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    results = tmp_path / "results"
    argv = ["sweep", EXPERIMENT, "--launcher", "slurm", "--smoke", "--results", str(results)]
    capsys.readouterr()
    rc = cli.main([*argv, *more])
    err = capsys.readouterr().err
    assert rc == 2 and advice in " ".join(err.split()), err
    assert err.startswith("sharpdarts: error: Slurm refused") and "Traceback" not in err
    assert not results.exists()
    # No job of this test's in Slurm's queue, nor among its recently ended jobs.
    assert str(tmp_path) not in _slurm("squeue", "-h", "--states=all", "-O", "StdOut:1000")


def test_a_cancelled_job_shows_as_cancelled(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    later = "cluster.slurm_additional_parameters = {'begin': 'now+1hour'}"  # stays queued
    record = _submit(monkeypatch, capsys, results, "--cluster_param", later, *SMALL)
    [row] = sweep_status.job_states(results)[1]
    assert row["state"] == "pending"
    _slurm("scancel", record["jobs"][0]["job_id"])
    _wait(results, record, _all("cancelled"), 30)
    status = _status(results)
    assert status.returncode == 0 and "cancelled" in status.stdout and status.stderr == ""


@pytest.mark.slow(30)
def test_a_job_requeued_mid_run_resumes_and_logs_each_epoch_once(tmp_path, monkeypatch, capsys):
    """``scontrol requeue`` ends the job (SIGTERM, which submitit ignores, then SIGKILL after
    slurm.conf's KillWait of 2 s) and queues it again under the same id: the run resumes from
    its last epoch's checkpoint. Epochs of about 1 s and 8 or more to go: the run is far from
    done when it is killed (the SIGTERM makes a mid-epoch checkpoint, and the run carries on
    until the SIGKILL, up to 4 s later)."""
    results = tmp_path / "results"
    more = ["--gin_param", "EPOCHS = 10"]
    more += ["--gin_param", "build_datasets.synthetic_size = (256, 16)"]
    record = _submit(monkeypatch, capsys, results, "--seeds", "3", *more, *SMALL)
    job = record["jobs"][0]["job_id"]
    requeued = []

    def requeue_after_an_epoch(rows):
        detail = rows[0]["detail"]  # 'epoch N done; RUN_FOLDER'
        done = int(detail.split()[1]) if detail.startswith("epoch ") else 0
        if not requeued and rows[0]["state"] == "running" and done in (1, 2):  # 8+ to go
            _slurm("scontrol", "requeue", job)
            requeued.append(detail)

    _wait(results, record, _all("completed"), 240, then=requeue_after_an_epoch)
    info = _info(results)
    assert requeued and info["status"] == "completed" and info["resumes"] >= 1, info
    assert _epochs({"path": str(next(results.glob("runs/*/*/*")))}) == list(range(1, 11))
    assert info["scheduler"]["job_id"] == job


@pytest.mark.slow(60)
def test_a_job_at_its_time_limit_is_signalled_requeued_and_completes(tmp_path, monkeypatch, capsys):
    """A one-minute limit, with the signal due 10 s into each session (signal_delay_s = 50):
    Slurm checks time limits every 30 s (a fixed period of slurmctld), so the signal comes
    10 to 40 s into a session, and a run of some 45 s (28 epochs of about 1.5 s of one core, and
    4 s to start) is signalled at least once.
    (Due sooner, it could come before the job's Python has set its handler, and kill it.)
    On SIGUSR2 the run writes a mid-epoch checkpoint (engine/preemption.py), submitit requeues
    the job, and the run resumes at that batch.

    The slowest of these tests (over a minute on 2 cores, most of it the training), as a time
    limit is at least a minute and the signal follows slurmctld's clock."""
    results = tmp_path / "results"
    epochs = 28
    more = ["--gin_param", f"EPOCHS = {epochs}"]
    more += ["--gin_param", "build_datasets.synthetic_size = (256, 16)"]
    more += ["--cluster_param", "cluster.signal_delay_s = 50"]
    small = [*SMALL[:-4], "--time", "1", *SMALL[-2:]]
    record = _submit(monkeypatch, capsys, results, "--seeds", "4", *more, *small)
    _wait(results, record, _all("completed"), 420)
    info = _info(results)
    assert info["status"] == "completed" and info["resumes"] >= 1, info
    assert _epochs({"path": str(next(results.glob("runs/*/*/*")))}) == list(range(1, epochs + 1))
    logs = "".join(
        p.read_text() for p in (results / "sweeps" / record["sweep_id"] / "jobs").glob("*_log.*")
    )
    assert "Caught signal SIGUSR2" in logs and "this job is timed-out" in logs, logs[-3000:]
