"""What Slurm answers a sweep, with sbatch, sinfo, squeue and sacct faked on PATH.

The faked answers are the real ones: captured from Slurm 22.05.8 (Debian 12's slurm-wlm) on
the single-node cluster of tests/slurm/start.sh (2 CPUs, 22899 MB, no GPUs, partition
``debug`` with a one-day limit, no accounting). tests/test_slurm.py asks the real cluster.
"""

import json
import shlex
from pathlib import Path

import pytest

from sharpdarts.face import cli, sweep_slurm, sweep_status

EXPERIMENT = "cifar10/sharpsepconv_darts"
SINFO = "debug*|(null)|2|22899|1-00:00:00"
NO_ACCOUNTING = "Slurm accounting storage is disabled"
# sbatch's stderr (exit status 1) for each refused request, as Slurm 22.05.8 prints it.
GRES = "sbatch: error: Invalid generic resource (gres) specification"
PARTITION = (
    "sbatch: error: invalid partition specified: gpu\n"
    "sbatch: error: Batch job submission failed: Invalid partition name specified"
)
TIME = (
    "sbatch: error: Batch job submission failed: Requested time limit is invalid "
    "(missing or exceeds some limit)"
)
CPUS = "sbatch: error: Batch job submission failed: More processors requested than permitted"
MEMORY = (
    "sbatch: error: Memory specification can not be satisfied\n"
    "sbatch: error: Batch job submission failed: Requested node configuration is not available"
)


def _tool(bin_dir: Path, name: str, out: str = "", err: str = "", rc: int = 0) -> None:
    path = bin_dir / name
    say = f"printf '%s' {shlex.quote(out)}\nprintf '%s' {shlex.quote(err)} >&2"
    path.write_text(f"#!/bin/sh\n{say}\nexit {rc}\n")
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A folder of faked Slurm commands, first on PATH; ``srun`` and ``sinfo`` answer."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "srun")
    _tool(bin_dir, "sinfo", SINFO + "\n")
    _tool(bin_dir, "sacct", err=NO_ACCOUNTING + "\n", rc=1)
    _tool(bin_dir, "squeue", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def _sweep(tmp_path, capsys, *more) -> tuple[int, str, Path]:
    results = tmp_path / "results"
    capsys.readouterr()
    argv = ["sweep", EXPERIMENT, "--seeds", "1-2", "--launcher", "slurm", "--smoke"]
    rc = cli.main([*argv, "--results", str(results), *more])
    return rc, capsys.readouterr().err, results


@pytest.mark.parametrize(
    "said, more, advice",
    [
        (GRES, [], "the partition has no GPUs: pass --gpus 0;"),
        (GRES, [], "its nodes have 2 CPUs: pass --cpus 2 or fewer"),
        (GRES, [], "22899 MB of memory: pass --mem 22 or less (GB)"),
        (PARTITION, ["--partition", "gpu"], "no partition 'gpu' on this cluster: pass --partition"),
        (TIME, ["--gpus", "0", "--cpus", "1", "--mem", "1", "--time", "2000"], "--time 1440 or"),
        (CPUS, ["--gpus", "0", "--cpus", "3", "--mem", "1"], "pass --cpus 2 or fewer"),
        (MEMORY, ["--gpus", "0", "--cpus", "1", "--mem", "40"], "pass --mem 22 or less"),
    ],
)
def test_a_refused_sweep_exits_2_with_one_paragraph_and_leaves_nothing(
    tmp_path, capsys, fake_slurm, said, more, advice
):
    _tool(fake_slurm, "sbatch", err=said + "\n", rc=1)
    rc, err, results = _sweep(tmp_path, capsys, *more)
    assert rc == 2 and advice in " ".join(err.split()), err
    assert "Traceback" not in err and "submitit" not in err
    # One paragraph: sbatch's own words once, inside it, and nothing else on stderr.
    assert err.startswith("sharpdarts: error: Slurm refused") and "\n\n" not in err.strip()
    assert err.count("sbatch:") == 1 and "error: sbatch" not in err
    assert not results.exists()  # no sweep.json claiming jobs, no submitit files


def test_a_refusal_keeps_a_results_folder_that_was_there(tmp_path, capsys, fake_slurm):
    _tool(fake_slurm, "sbatch", err=GRES + "\n", rc=1)
    (tmp_path / "results" / "runs").mkdir(parents=True)
    rc, _, results = _sweep(tmp_path, capsys)
    assert rc == 2 and sorted(p.name for p in results.iterdir()) == ["runs"]


def test_without_sinfo_the_refusal_names_the_option_from_sbatchs_words(
    tmp_path, capsys, fake_slurm
):
    _tool(fake_slurm, "sinfo", err="sinfo: error: Unable to contact slurm controller\n", rc=1)
    for said, option in ((GRES, "--gpus 0"), (TIME, "--time"), (CPUS, "--cpus")):
        _tool(fake_slurm, "sbatch", err=said + "\n", rc=1)
        rc, err, _ = _sweep(tmp_path, capsys)
        assert rc == 2 and f"change {option}" in " ".join(err.split()), err


def test_sinfo_figures_are_read():
    assert sweep_slurm.gpus_in("(null)") == 0
    assert sweep_slurm.gpus_in("gpu:4") == 4
    assert sweep_slurm.gpus_in("gpu:a100:2(S:0-1),gpu:v100:1") == 3
    assert sweep_slurm.gpus_in("mps:100") == 0
    assert sweep_slurm.minutes_in("1-00:00:00") == 1440
    assert sweep_slurm.minutes_in("2:30:00") == 150
    assert sweep_slurm.minutes_in("30:00") == 30
    assert sweep_slurm.minutes_in("infinite") == float("inf")


def _record(results: Path, job_ids: list[str | None]) -> None:
    folder = sweep_status.sweep_folder(results, "S1")
    folder.mkdir(parents=True)
    jobs = [
        {"index": i, "experiment": EXPERIMENT, "seed": i + 1, "argv": [], "job_id": job}
        for i, job in enumerate(job_ids)
    ]
    record = {"sweep_id": "S1", "launcher": "slurm", "created": "now", "results": str(results)}
    (folder / "sweep.json").write_text(json.dumps({**record, "resources": {}, "jobs": jobs}))


def test_status_without_accounting_comes_from_squeue_quietly(tmp_path, capsys, fake_slurm):
    """squeue knows the queue and the jobs that ended lately; sacct fails (no accounting) and
    is not shown; a job neither knows is judged by its run folder."""
    _tool(fake_slurm, "squeue", "7_0|COMPLETED\n7_1|RUNNING\n7_2|PENDING\n7_3|CANCELLED\n")
    results = tmp_path / "results"
    _record(results, ["7_0", "7_1", "7_2", "7_3", "7_4", None])
    capsys.readouterr()
    _, rows = sweep_status.job_states(results)
    assert [r["state"] for r in rows] == [
        "completed",
        "running",
        "pending",
        "cancelled",
        "failed",
        "pending",
    ]
    assert "no accounting (sacct)" in rows[4]["detail"]
    out = capsys.readouterr()
    assert out.out == out.err == ""  # no warning of sacct's, submitit's or ours


def test_status_asks_sacct_about_the_jobs_that_squeue_no_longer_knows(tmp_path, fake_slurm):
    _tool(fake_slurm, "squeue", "7_1|RUNNING\n")
    _tool(fake_slurm, "sacct", "7_0|COMPLETED\n7_1|RUNNING\n7_2|CANCELLED by 0\n")
    results = tmp_path / "results"
    _record(results, ["7_0", "7_1", "7_2"])
    assert sweep_slurm.scheduler_states(["7_0", "7_1", "7_2"]) == {
        "7_0": "COMPLETED",
        "7_1": "RUNNING",
        "7_2": "CANCELLED",
    }
    assert [r["state"] for r in sweep_status.job_states(results)[1]] == [
        "completed",
        "running",
        "cancelled",
    ]


def test_when_slurm_does_not_answer_a_running_run_is_believed(tmp_path, fake_slurm):
    _tool(fake_slurm, "squeue", err="squeue: error: Unable to contact slurm controller\n", rc=1)
    results = tmp_path / "results"
    _record(results, ["7_0"])
    assert sweep_slurm.scheduler_states(["7_0"]) == {"7_0": "UNKNOWN"}
    [row] = sweep_status.job_states(results)[1]
    assert row["state"] == "failed" and row["detail"].startswith("Slurm does not answer")
    run = {"path": "R", "last_epoch": 2, "status": "running"}
    assert sweep_status._combine(run, "UNKNOWN", "Slurm does not answer")[0] == "running"


def test_a_job_that_left_the_queue_is_judged_by_its_run():
    run = {"path": "R", "last_epoch": 2}
    gone = sweep_status.GONE
    assert sweep_status._combine({**run, "status": "completed"}, *gone) == ("completed", "R")
    state, detail = sweep_status._combine({**run, "status": "running"}, *gone)
    assert state == "failed" and detail.startswith("no longer in Slurm's queue")
    state, detail = sweep_status._combine({**run, "status": "running"}, "CANCELLED", None)
    assert (state, detail) == ("cancelled", "at epoch 2; R")


def test_a_requeued_job_shows_as_pending_until_it_resumes():
    """scontrol requeue: the job ends (COMPLETING) with its run still 'running' (killed), then
    waits in the queue (PENDING, begin time) under the same id, then runs again."""
    run = {"path": "R", "last_epoch": 2, "status": "running"}
    assert sweep_status._combine(run, "COMPLETING", None)[0] == "running"
    state, detail = sweep_status._combine(run, "PENDING", None)
    assert state == "pending" and detail.startswith("requeued, resumes from epoch 2")
    assert sweep_status._combine({**run, "status": "interrupted"}, "COMPLETING", None)[0] == (
        "pending"
    )


def test_squeue_is_asked_once_for_the_whole_sweep(tmp_path, fake_slurm):
    log = tmp_path / "asked"
    (fake_slurm / "squeue").write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "7_0|RUNNING"\n')
    results = tmp_path / "results"
    _record(results, ["7_0", "7_1"])
    sweep_status.job_states(results)
    [asked] = log.read_text().splitlines()
    assert asked.endswith("-j 7") and "--states=all" in asked and "-r" in asked.split()
