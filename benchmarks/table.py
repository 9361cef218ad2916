"""The README's sweep: fast-path search step time and peak memory vs batch size and primitives.

Runs ``search_step.py`` (fast path, first order, C=16, 8 cells) once per configuration, each
in its own process, and prints a markdown table. Defaults take about 10 minutes on a
2-core CPU with one thread (most of it in the batch-64 rows).

  python benchmarks/table.py --threads 1 [--batches 8 16 32 64] [--steps 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)

from sharpdarts.core import genotype_types

HERE = Path(__file__).resolve().parent
PRIMITIVE_SETS = ["DARTS_PRIMITIVES", "PRIMITIVES", "SHARPER_PRIMITIVES"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--primitives", nargs="+", default=PRIMITIVE_SETS)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per configuration")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--order", type=int, default=1)
    parser.add_argument(
        "--extra", nargs=argparse.REMAINDER, default=[], help="more search_step.py options"
    )
    args = parser.parse_args(argv)

    rows, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.jsonl"
        for primitives in args.primitives:
            for batch in args.batches:
                cmd = [
                    sys.executable,
                    str(HERE / "search_step.py"),
                    "--primitives",
                    primitives,
                    "--batch",
                    str(batch),
                    "--steps",
                    str(args.steps),
                    "--order",
                    str(args.order),
                    "--json",
                    str(out),
                    "--memory-warmup",
                    "0",
                    *args.extra,
                ]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                print("$", " ".join(cmd[1:]), flush=True)
                done = subprocess.run(cmd)
                if done.returncode:  # e.g. killed for memory: the row says so
                    failed.append((primitives, batch, done.returncode))
        if out.exists():
            rows = [json.loads(line) for line in out.read_text().splitlines()]
    print()
    print("| primitives | ops | batch | step (s) | peak memory (MiB) | s / image |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        c, fast = r["config"], r["paths"]["fast"]
        ops = len(genotype_types.primitives(c["primitives"]))
        print(
            f"| {c['primitives']} | {ops} | {c['batch']} | "
            f"{fast['median_step_s']:.2f} | {fast.get('peak_memory_mib', float('nan')):.0f} | "
            f"{fast['median_step_s'] / c['batch']:.3f} |"
        )
    for primitives, batch, code in failed:
        print(
            f"| {primitives} | {len(genotype_types.primitives(primitives))} | {batch} | "
            f"failed (exit {code}; -9: killed, out of memory) | | |"
        )


if __name__ == "__main__":
    main()
