"""A plain (non-editable) install runs experiments from outside the checkout.

The fresh virtual environment borrows this interpreter's installed dependencies through a
``.pth`` path line (no download, no torch copy): a path line adds that folder to ``sys.path``
without running the ``.pth`` files inside it, so the editable install's finder of the
checkout's sharpdarts stays out, and only the freshly installed copy can be imported.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from sharpdarts import resources

# What the build reads.
SOURCES = ("setup.py", "sharpdarts", "experiments", "gin")


def _copy_sources(destination: Path) -> Path:
    """The checkout's build inputs, copied: an in-tree build leaves build/ and *.egg-info."""
    destination.mkdir()
    for name in SOURCES:
        source = resources.CHECKOUT_DIR / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(source, destination / name)
    # The user's promoted genotypes, if any, are theirs: a fresh install starts without them.
    (destination / "experiments" / "genotypes.json").unlink(missing_ok=True)
    return destination


def _fresh_venv(folder: Path) -> Path:
    """A virtual environment that sees this interpreter's packages but not the checkout."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    borrowed = sysconfig.get_paths()["purelib"]
    Path(site_packages, "_borrowed_dependencies.pth").write_text(borrowed + "\n")
    return python


def _clean_env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", resources.PROJECT_ENV_VAR, "VIRTUAL_ENV")
    }
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow(10)
def test_a_plain_install_lists_and_runs_an_experiment_from_outside_the_checkout(tmp_path):
    source = _copy_sources(tmp_path / "src")
    python = _fresh_venv(tmp_path / "venv")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _clean_env()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(a) for a in args],
            cwd=outside,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    installed = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--no-warn-script-location",
        source,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    where = run(
        python,
        "-c",
        "import json, sharpdarts, sharpdarts.resources as r; print(json.dumps("
        "[sharpdarts.__file__, [str(p) for p in r.roots()]]))",
    )
    assert where.returncode == 0, where.stderr
    package_file, roots = json.loads(where.stdout)
    assert Path(package_file).is_relative_to(tmp_path / "venv")
    assert roots == [str(Path(package_file).parent / "_shipped")]  # no checkout to find

    command = tmp_path / "venv" / "bin" / "sharpdarts"
    listed = run(command, "list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert {"demo/search", "cifar10/sharpdarts", "search/multi_channel_max_w"} <= set(names)

    results = tmp_path / "results"
    smoke = run(command, "run", "demo/search", "--smoke", "--results", results)
    assert smoke.returncode == 0, smoke.stderr
    assert "Path not found" not in smoke.stderr  # gin's search for includes stays quiet
    run_folder = Path(smoke.stdout.strip().splitlines()[-1])
    assert run_folder.is_relative_to(results)
    info = json.loads((run_folder / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["final"]["genotype"]
