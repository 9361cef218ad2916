"""Wall time and peak memory of the light `sharpdarts` commands, each in a fresh process.

Every command runs ``--repeats`` times (5) as ``python -c 'from sharpdarts.face.cli import
main; ...' ARGS``, the way the console script starts it; the figure is the median wall time and
the median peak resident memory (the child's ``ru_maxrss``, from ``os.wait4``). The skip of a
completed run is timed against a smoke run of ``demo/search`` made first in a temporary store.

Usage: ``python benchmarks/cli_latency.py [--repeats 5] [--json FILE]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = "import sys; from sharpdarts.face.cli import main; sys.exit(main())"


def commands(results: str) -> list[tuple[str, list[str], int]]:
    """(label, arguments, expected exit status) of every command measured."""
    skip = ["run", "demo/search", "--smoke", "--seed", "1", "--results", results]
    return [
        ("sharpdarts --help", ["--help"], 0),
        ("sharpdarts list", ["list"], 0),
        ("sharpdarts table cifar10", ["table", "cifar10", "--results", results], 0),
        (
            "sharpdarts table imagenet --format latex",
            ["table", "imagenet", "--format", "latex", "--results", results],
            0,
        ),
        ("sharpdarts genotype show SHARP_DARTS", ["genotype", "show", "SHARP_DARTS"], 0),
        ("sharpdarts table no_such_table (bad name)", ["table", "no_such_table"], 2),
        ("sharpdarts run cifar10/sharpdart (bad name)", ["run", "cifar10/sharpdart"], 2),
        ("sharpdarts run demo/search --smoke (completed: skipped)", skip, 0),
    ]


def measure(args: list[str], expected: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh process running the command line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", START, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != expected:
        raise SystemExit(f"{args} exited {proc.returncode}, expected {expected}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as results:
        first = subprocess.run(
            [
                sys.executable,
                "-c",
                START,
                "run",
                "demo/search",
                "--smoke",
                "--seed",
                "1",
                "--results",
                results,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
        )
        if first.returncode != 0:
            raise SystemExit(f"the smoke run failed: {first.stderr.decode()[-2000:]}")
        for label, command, expected in commands(results):
            samples = [measure(command, expected) for _ in range(args.repeats)]
            rows.append(
                {
                    "command": label,
                    "median_s": statistics.median(s for s, _ in samples),
                    "median_peak_mb": statistics.median(m for _, m in samples),
                    "repeats": args.repeats,
                }
            )
    print("| command | median wall time (s) | median peak memory (MB) |\n|---|---|---|")
    for row in rows:
        print(f"| `{row['command']}` | {row['median_s']:.2f} | {row['median_peak_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
