"""``sharpdarts sweep``: jobs through submitit (local, debug, and Slurm's sbatch faked on PATH)."""

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sharpdarts.errors import UserError
from sharpdarts.face import cli, sweep, sweep_status

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "cifar10/sharpsepconv_darts"


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}


def _sweep(results, *more):
    return [
        sys.executable,
        "-m",
        "sharpdarts",
        "sweep",
        EXPERIMENT,
        "--smoke",
        "--results",
        str(results),
        *more,
    ]


def _sweep_here(capsys, monkeypatch, results, *more) -> tuple[int, str]:
    """``sharpdarts sweep`` in this process (its job processes are real ones, started by the
    launcher with the environment of :func:`_env`); returns the exit status and the output."""
    env = _env()
    for key in ("OMP_NUM_THREADS", "PYTHONUNBUFFERED", "PYTHONPATH"):
        monkeypatch.setenv(key, env[key])
    capsys.readouterr()
    code = cli.main(_sweep(results, *more)[3:])
    out = capsys.readouterr()
    return code, out.out + out.err


def _infos(results):
    return [json.loads(p.read_text()) for p in sorted(Path(results).glob("runs/*/*/*/run.json"))]


def _epochs(folder):
    return [
        json.loads(line)["epoch"]
        for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]


# ---- arguments and resources ---------------------------------------------------------------


def test_seeds_take_ranges_and_lists_once_each():
    assert sweep.parse_seeds("1-8") == list(range(1, 9))
    assert sweep.parse_seeds("1,3,5") == [1, 3, 5]
    assert sweep.parse_seeds("1-3,7 2") == [1, 2, 3, 7]
    for bad in ("", "a", "3-1", "1-x"):
        with pytest.raises(UserError):
            sweep.parse_seeds(bad)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "1-x"], "--seeds"),
        (["--gin_param", "EPOCHZ = 3"], "EPOCHZ"),
        (["--launcher", "slurm"], "srun"),
        (["--parallel", "0"], "The option --parallel 0 is refused"),
        (["--parallel", "-3"], "The option --parallel -3 is refused"),
        (["--time", "0"], "--time"),
        (["--gpus", "-1"], "--gpus"),
        (["--mem", "-2"], "--mem"),
        (["--cluster_param", "cluster.nodes = 0"], "cluster.nodes = 0 is refused"),
    ],
)
def test_a_bad_sweep_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here (CI installs Slurm in /usr/bin)
    results = tmp_path / "results"
    rc = cli.main(["sweep", EXPERIMENT, "--smoke", "--results", str(results), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not results.exists()


def test_an_unknown_experiment_exits_2(tmp_path, capsys):
    rc = cli.main(["sweep", "cifar10/sharpsepconv_dart", "--results", str(tmp_path / "r")])
    assert rc == 2 and "sharpsepconv_darts" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _args(**kw):
    base = dict(
        partition=None, time=None, gpus=None, cpus=None, mem=None, parallel=None, cluster_param=[]
    )
    return argparse.Namespace(**{**base, **kw})


def test_resources_come_from_gin_cluster_gin_then_cluster_param_then_flags(tmp_path, monkeypatch):
    defaults = sweep._resources(_args())
    assert defaults["timeout_min"] == 1440 and defaults["partition"] is None
    assert defaults["tasks_per_node"] == defaults["gpus_per_node"] == 1
    # A project's own gin/cluster.gin replaces the shipped one.
    project = tmp_path / "project"
    (project / "gin").mkdir(parents=True)
    (project / "gin" / "cluster.gin").write_text(
        "cluster.partition = 'long'\ncluster.mem_gb = 200\ncluster.gpus_per_node = 4\n"
    )
    monkeypatch.setenv("SHARPDARTS_PROJECT", str(project))
    mine = sweep._resources(_args())
    assert (mine["partition"], mine["mem_gb"], mine["gpus_per_node"]) == ("long", 200, 4)
    assert mine["tasks_per_node"] == 4  # one process per GPU
    over = sweep._resources(
        _args(
            partition="short",
            time=30,
            cpus=3,
            cluster_param=["cluster.mem_gb = 64", "cluster.nodes = 2"],
        )
    )
    assert (over["partition"], over["timeout_min"], over["cpus_per_task"]) == ("short", 30, 3)
    assert (over["mem_gb"], over["nodes"], over["gpus_per_node"]) == (64, 2, 4)
    with pytest.raises(UserError, match="cluster.mem_gbb"):
        sweep._resources(_args(cluster_param=["cluster.mem_gbb = 1"]))


# ---- Slurm, with sbatch and sacct faked on PATH --------------------------------------------


def _fake_slurm(folder: Path, sacct_lines: list[str]) -> Path:
    """srun, sbatch (saves its script, answers job 4242), squeue (knows no job: Slurm's answer
    when the jobs have left the queue) and sacct (prints the given states)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    scripts = folder / "scripts"
    scripts.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {scripts}/\necho Submitted batch job 4242\n'
    )
    table = "\\n".join(["JobID|State|NodeList", *sacct_lines])
    (bin_dir / "squeue").write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n"
    )
    (bin_dir / "sacct").write_text(f"#!/bin/sh\nprintf '{table}\\n'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def test_slurm_sweep_submits_one_array_with_the_resources(tmp_path, monkeypatch, capsys):
    states = ["4242_0|COMPLETED|n1", "4242_1|RUNNING|n2", "4242_2|PENDING|", "4242_3|TIMEOUT|n3"]
    bin_dir = _fake_slurm(tmp_path, states)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    results = tmp_path / "results"
    rc = cli.main(
        [
            "sweep",
            EXPERIMENT,
            "--seeds",
            "1-4",
            "--launcher",
            "slurm",
            "--smoke",
            "--results",
            str(results),
            "--partition",
            "gpu",
            "--time",
            "90",
            "--gpus",
            "2",
            "--cpus",
            "6",
            "--mem",
            "48",
            "--parallel",
            "3",
            "--gin_param",
            "EPOCHS = 3",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "4 jobs submitted to Slurm" in out
    [script] = (tmp_path / "scripts").iterdir()
    text = script.read_text()
    for line in (
        "--partition=gpu",
        "--time=90",
        "--gpus-per-node=2",
        "--cpus-per-task=6",
        "--mem=48GB",
        "--array=0-3%3",
        "--signal=USR2@120",
        "--ntasks-per-node=2",
    ):
        assert f"#SBATCH {line}" in text, line
    [record_file] = results.glob("sweeps/*/sweep.json")
    record = json.loads(record_file.read_text())
    assert [job["job_id"] for job in record["jobs"]] == [f"4242_{i}" for i in range(4)]
    assert [job["seed"] for job in record["jobs"]] == [1, 2, 3, 4]
    assert record["jobs"][0]["argv"][:4] == ["run", EXPERIMENT, "--seed", "1"]
    assert "EPOCHS = 3" in record["jobs"][0]["argv"] and "--smoke" in record["jobs"][0]["argv"]
    assert not list(results.glob("runs/*/*/*/run.json"))  # nothing ran here

    _, rows = sweep_status.job_states(results)
    assert [r["state"] for r in rows] == ["completed", "running", "pending", "failed"]
    assert rows[3]["detail"] == "TIMEOUT"
    assert cli.main(["sweep", "--status", "--results", str(results)]) == 1  # one failed
    assert "4242_3" in capsys.readouterr().out


def test_status_combines_the_store_and_the_scheduler():
    run = {"path": "R", "last_epoch": 3}
    assert sweep_status._combine({**run, "status": "completed"}, "RUNNING", None)[0] == "completed"
    assert sweep_status._combine({**run, "status": "running"}, "RUNNING", None) == (
        "running",
        "epoch 3 done; R",
    )
    state, detail = sweep_status._combine({**run, "status": "interrupted"}, "PENDING", None)
    assert state == "pending" and "resumes from epoch 3" in detail
    state, detail = sweep_status._combine(
        {**run, "status": "failed", "reason": "loss nan"}, "FAILED", None
    )
    assert state == "failed" and detail.startswith("loss nan")
    # The job ended while its run still says running: the process died (e.g. out of memory).
    assert sweep_status._combine({**run, "status": "running"}, "OUT_OF_MEMORY", None)[0] == "failed"
    assert sweep_status._combine(None, "FAILED", "boom") == ("failed", "boom")


# ---- debug and local executors --------------------------------------------------------------


def test_debug_sweep_runs_in_process_and_records_the_job(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["sweep", EXPERIMENT, "--seeds", "3", "--launcher", "debug", "--smoke"]
    argv += ["--results", str(results), "--gin_param", "EPOCHS = 1"]
    rc = cli.main(argv)
    out = capsys.readouterr().out
    assert rc == 0, out
    [info] = _infos(results)
    assert info["status"] == "completed" and info["seed"] == 3
    job = info["scheduler"]
    assert job["executor"] == "debug" and job["sweep_index"] == 0 and job["host"]
    assert job["job_id"].startswith("DEBUG_")
    assert "1 completed seeds" in out and "completed" in out
    # The same sweep again skips the completed run (the runner decides, as for `run`).
    assert cli.main(argv) == 0
    assert "already completed" in capsys.readouterr().out
    assert len(_infos(results)) == 1


def test_a_failing_run_fails_its_job_with_the_reason(tmp_path, capsys):
    results = tmp_path / "results"
    rc = cli.main(
        [
            "sweep",
            EXPERIMENT,
            "--launcher",
            "debug",
            "--smoke",
            "--results",
            str(results),
            "--gin_param",
            "train.learning_rate = 1e10",
        ]
    )
    assert rc == 1
    _, [row] = sweep_status.job_states(results)
    assert row["state"] == "failed" and "loss became nan" in row["detail"]


# Sends SIGUSR2 to the first run (under RESULTS, argv[1]) that has logged an epoch, prints its
# folder and exits; gives up after argv[2] seconds. The standard library only: it starts at once.
PREEMPT_AFTER_AN_EPOCH = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    results, deadline = Path(sys.argv[1]), time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        for run_json in results.glob("runs/*/*/*/run.json"):
            metrics = run_json.parent / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().strip():
                os.kill(json.loads(run_json.read_text())["pid"], signal.SIGUSR2)
                print(run_json.parent, flush=True)
                sys.exit(0)
        time.sleep(0.05)
""")


@pytest.mark.slow(25)
def test_a_local_sweep_of_two_seeds_requeues_a_preempted_job_and_gives_the_mean_and_std(
    tmp_path, capsys, monkeypatch
):
    """Two seeds one at a time (--parallel 1): the second job waits for the first. The first
    job is preempted after its first epoch: SIGUSR2 is what Slurm (--signal) and the local
    executor send before the end; submitit checkpoints the job, requeues it, and the run
    resumes from its checkpoint while the sweep goes on to the other seed.

    One sweep covers both (it was two, each starting its own job processes, which import
    torch): the preempted job and the plain one are the same code path up to the signal.
    The runs train 64 images for 6 epochs (not the smoke 8 for 2): the five epochs after
    the signal give it time to land before the run ends, on a loaded machine too."""
    more = [
        "--gin_param",
        "EPOCHS = 6",
        "--gin_param",
        "build_datasets.synthetic_size = (64, 16)",
    ]
    results = tmp_path / "results"
    # The sweep runs here (its jobs in their own processes, as ever); a watcher in a small
    # process of its own signals the first job once it has logged an epoch. (A watching
    # thread beside an in-process sweep once missed its moment: no resume. The watcher no
    # longer shares this interpreter, and the sweep no longer needs one that imports torch.)
    watcher = subprocess.Popen(
        [sys.executable, "-c", PREEMPT_AFTER_AN_EPOCH, str(results), "200"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        code, output = _sweep_here(
            capsys,
            monkeypatch,
            results,
            *("--seeds", "1-2", "--launcher", "local", "--parallel", "1", *more),
        )
    finally:
        if watcher.poll() is None:
            watcher.kill()
        said = watcher.communicate(timeout=60)[0].strip()
    killed = Path(said) if said else None
    assert killed is not None and code == 0, output
    infos = _infos(results)
    assert sorted(i["seed"] for i in infos) == [1, 2]
    assert all(i["status"] == "completed" for i in infos)
    assert len({i["scheduler"]["job_id"] for i in infos}) == 2
    assert all(i["scheduler"]["executor"] == "local" for i in infos)
    assert "2 completed seeds, 0 still running" in output
    errors = [i["final"]["test_error_top1"] for i in infos]
    mean = sum(errors) / 2
    std = (sum((e - mean) ** 2 for e in errors) / (2 - 1)) ** 0.5  # the sample std
    assert f"test_error_top1 {mean:.2f} ± {std:.2f}" in output
    # The status reads only the store and the sweep's record: this process will do.
    capsys.readouterr()
    status = cli.main(["sweep", "--status", "--results", str(results)])
    listed = capsys.readouterr().out
    states = [line.split()[6] for line in listed.splitlines() if line.startswith("  ")]
    assert status == 0 and states == ["completed"] * 2, listed

    info = json.loads((killed / "run.json").read_text())
    assert info["seed"] == 1 and info["resumes"] == 1, info  # the first job, requeued
    assert len(info["sessions"]) == 2
    assert _epochs(killed) == [1, 2, 3, 4, 5, 6]  # no lost or repeated epoch
    [other] = [i for i in infos if i["run_id"] != killed.name]
    assert other["resumes"] == 0 and len(other["sessions"]) == 1

    # The same seed left alone gives the same numbers: the resume was exact. The job runs
    # the same `run` command; submitit's debug executor runs it in this process, which spares
    # starting two interpreters that import torch (the sweep's and its job's): the process
    # boundary is what the preempted sweep above tests, not this reference.
    again = tmp_path / "again"
    capsys.readouterr()
    argv = _sweep(again, "--seeds", "1", "--launcher", "debug", *more)[3:]
    assert cli.main(argv) == 0, capsys.readouterr()
    [plain] = _infos(again)
    assert plain["resumes"] == 0 and plain["scheduler"]["executor"] == "debug"

    def numbers(folder):
        keep = ("train_loss", "train_acc", "valid_acc", "test_acc", "lr")
        return [
            {k: v for k, v in json.loads(line).items() if k in keep}
            for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()
        ]

    assert numbers(killed) == numbers(next(again.glob("runs/*/*/*")))
    assert info["final"]["test_error_top1"] == plain["final"]["test_error_top1"]


@pytest.mark.parametrize(
    "launcher, expected",
    [
        (
            "slurm",
            [
                "sharpdarts sweep cifar10/sharpsepconv_darts --seeds 1-8 --launcher slurm "
                "--results R --partition gpu"
            ],
        ),
        ("", [f"sharpdarts run cifar10/sharpsepconv_darts --seed {s} --results R" for s in (1, 2)]),
    ],
)
def test_make_targets_take_launcher_as_well_as_seeds(launcher, expected):
    seeds = "1-8" if launcher else "1 2"
    done = subprocess.run(
        [
            "make",
            "-s",
            "cifar10-sharpsepconv-darts",
            f"LAUNCHER={launcher}",
            f"SEEDS={seeds}",
            "STAMP=",
            "SHARPDARTS=echo sharpdarts",
            "RESULTS=R",
            "SWEEP_ARGS=--partition gpu",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [" ".join(line.split()) for line in done.stdout.splitlines()] == expected


@pytest.mark.slow(10)
def test_a_job_of_two_tasks_trains_one_run_with_ddp(tmp_path, capsys, monkeypatch):
    """One task per GPU under Slurm; here two CPU tasks of the local executor join one
    process group from submitit's environment, and rank 0 records the run."""
    results = tmp_path / "results"
    code, output = _sweep_here(
        capsys,
        monkeypatch,
        results,
        "--seeds",
        "2",
        "--launcher",
        "local",
        "--cluster_param",
        "cluster.tasks_per_node = 2",
    )
    assert code == 0, output
    [info] = _infos(results)
    assert info["status"] == "completed" and info["world_size"] == 2
    assert info["scheduler"]["num_tasks"] == 2 and len(set(info["rank_seeds"])) == 2
