"""The light commands import no torch, and a completed run is skipped without it.

Each command runs in a fresh interpreter, which then reports the exit status and whether
torch (or torchvision) was ever imported: timing is left to benchmarks/cli_latency.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sharpdarts.face import cli, quickskip

ROOT = Path(__file__).resolve().parents[1]
# Runs the command line in-process in a fresh interpreter and reports what it imported.
PROBE = """
import json, sys
from sharpdarts.face.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "torchvision", "gin", "pandas") if m in sys.modules)
print("PROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


def probe(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    line = [l for l in proc.stdout.splitlines() if l.startswith("PROBE ")][-1]
    return json.loads(line[6:]), proc


# One interpreter that has imported only the command line's module (as PROBE has when it calls
# main) forks a child per command: each child starts in the state a fresh interpreter would be
# in, runs the command, and reports as PROBE does; its output goes to files beside the report.
PROBE_EACH = """
import json, os, sys
from sharpdarts.face.cli import main
HEAVY = ("torch", "torchvision", "gin", "pandas")
assert not [m for m in HEAVY if m in sys.modules], "the parent imported a heavy module"
commands, out = json.loads(sys.argv[1]), sys.argv[2]
for i, args in enumerate(commands):
    pid = os.fork()
    if pid == 0:
        try:
            for fd, name in ((1, "out"), (2, "err")):
                os.dup2(os.open(f"{out}/{i}.{name}", os.O_WRONLY | os.O_CREAT), fd)
            try:
                code = main(args)
            except SystemExit as exc:
                code = exc.code
            sys.stdout.flush()
            sys.stderr.flush()
            heavy = sorted(m for m in HEAVY if m in sys.modules)
            with open(f"{out}/{i}.json", "w") as f:
                json.dump({"code": code, "heavy": heavy}, f)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
"""

LIGHT = [
    (("--help",), 0),
    (("list",), 0),
    (("table", "cifar10"), 0),
    (("table", "imagenet", "--format", "latex"), 0),
    (("genotype", "show", "SHARP_DARTS"), 0),
    (("genotype", "list"), 0),
    (("table", "no_such_table"), 2),
    (("genotype", "show", "NO_SUCH_GENOTYPE"), 2),
    (("run", "cifar10/no_such_experiment"), 2),
    (("run", "cifar10/sharpdart", "--smoke"), 2),
]


@pytest.fixture(scope="module")
def light_runs(tmp_path_factory) -> dict:
    """Every command of LIGHT run by PROBE_EACH: {args: (report, stdout, stderr)}."""
    out = tmp_path_factory.mktemp("light")
    commands = []
    for args, _ in LIGHT:
        results = ["--results", str(tmp_path_factory.mktemp("results"))]
        commands.append([*args, *results] if args[0] in ("table", "run") else list(args))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE_EACH, json.dumps(commands), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return {
        args: tuple(
            [json.loads((out / f"{i}.json").read_text())]
            + [(out / f"{i}.{name}").read_text() for name in ("out", "err")]
        )
        for i, (args, _) in enumerate(LIGHT)
    }


@pytest.mark.parametrize("args, code", LIGHT)
def test_light_commands_import_no_torch(args, code, light_runs):
    result, _, err = light_runs[args]
    assert result["code"] == code, err
    # Only a table that is printed needs pandas; nothing here needs torch.
    allowed = ["pandas"] if args[0] == "table" and code == 0 else []
    assert result["heavy"] == allowed, f"{args} imported {result['heavy']}"
    if code == 2:
        assert "sharpdarts: error:" in err


def test_a_completed_run_is_skipped_without_torch(tmp_path, capsys):
    args = ["run", "demo/search", "--smoke", "--seed", "4", "--results", str(tmp_path)]
    assert cli.main(args) == 0
    (folder,) = [p.parent for p in (tmp_path / "runs").rglob("run.json")]
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "completed" and len(info["request_key"]) == 64
    capsys.readouterr()

    result, proc = probe(*args)
    assert result == {"code": 0, "heavy": []}, proc.stderr
    assert proc.stdout.splitlines()[0] == f"already completed: {folder}"

    # Another seed or another binding is another request: the quick path does not skip it.
    base = ["run", "demo/search", "--smoke", "--results", str(tmp_path)]
    assert quickskip.completed_run(cli.build_parser().parse_args(base + ["--seed", "4"])) == folder
    for other in (["--seed", "5"], ["--seed", "4", "--gin_param", "EPOCHS=1"]):
        assert quickskip.completed_run(cli.build_parser().parse_args(base + other)) is None


def test_request_key_follows_every_included_file(tmp_path):
    fragment = tmp_path / "frag.gin"
    fragment.write_text("EPOCHS = 3\n")
    nested = tmp_path / "nested.gin"
    nested.write_text(f"include '{fragment}'\n")
    experiment = tmp_path / "exp.gin"
    experiment.write_text(f"include '{nested}'\nLR = 0.1\n")
    key = quickskip.request_key(experiment, [], False)
    assert quickskip.request_key(experiment, [], False) == key
    assert quickskip.request_key(experiment, ["EPOCHS=4"], False) != key
    assert quickskip.request_key(experiment, [], True) != key
    fragment.write_text("EPOCHS = 4\n")  # two includes deep
    assert quickskip.request_key(experiment, [], False) != key
