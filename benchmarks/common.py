"""Shared machinery of the step benchmarks: interleaved timing, peak memory, FLOPs.

Timing: the reference and the fast path run in ONE process, in interleaved pairs (the order
alternates from pair to pair), after a warm-up step each; a pair's ratio is fast / reference
and the reported ratio is the median over pairs. Other work on a shared machine slows both
members of a pair alike, so the ratio is far steadier than either time.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` during one step, above what was
allocated before it. On CPU torch's allocations are invisible to tracemalloc, so each path is
measured in a fresh child process, started with glibc's mmap threshold fixed at 64 KiB
(``MALLOC_MMAP_THRESHOLD_``) so that every tensor is its own mapping, handed back to the
kernel when freed, and RSS follows the live tensors: after ``--memory-warmup`` steps (1), the
kernel's peak-RSS counter is reset (``/proc/self/clear_refs``) and one step is run; the peak
is the RSS high-water mark (VmHWM) minus the RSS before the step: the step's activations,
gradients and temporaries at their peak, without the weights, optimizer state and inputs
held before it. (Measuring in the timing process instead, even after ``mallopt`` and
``malloc_trim``, overstated the reference path's peak by 15%.) Steps in the child are 2-3x
slower (a page fault per fresh page), which is why timing never happens there.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/<script>.py` from anywhere
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

MEMORY_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def add_common_arguments(parser) -> None:
    """The options every step benchmark shares."""
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--steps",
        type=int,
        default=3,
        help="timed steps per path (pairs with --compare), after 1 warm-up",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)"
    )
    parser.add_argument("--reference", action="store_true", help="time the reference path only")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="time reference and fast interleaved in one process; print the ratio",
    )
    parser.add_argument(
        "--baseline",
        default="reference",
        choices=["reference", "nchw", "darts"],
        help="what --compare times the fast path against: the reference path (default); "
        "'nchw': the same fast configuration in the NCHW memory format; 'darts' "
        "(search_step.py): the fast DARTS supernet (softmax, all channels, no edge "
        "normalization) in the fast path's memory format",
    )
    parser.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="fast path in the default (NCHW) memory format",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the fast path's network (slow to start)",
    )
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the peak memory measurement"
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="count the reference step's FLOPs (FlopCounterMode) and measure the "
        "float32 matmul throughput, to report effective throughput",
    )
    parser.add_argument("--json", type=Path, default=None, help="append the result as a JSON line")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--memory-warmup",
        type=int,
        default=1,
        help="steps before the measured one in the memory child (0 counts "
        "first-step allocations too: about +2%%)",
    )
    parser.add_argument(
        "--memory-child", choices=["fast", "reference"], default=None, help=argparse.SUPPRESS
    )


def setup(args) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one step; the only host-device synchronisation is at its two ends."""
    sync(device)
    tic = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - tic


def interleaved(
    steps: dict[str, Callable[[], None]],
    rounds: int,
    device: torch.device,
    warmup: int = 1,
    log=print,
) -> dict[str, list[float]]:
    """Times each step ``rounds`` times, interleaved; the order alternates every round."""
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            time_step(steps[name], device)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(time_step(steps[name], device))
        log("  round %d: %s" % (r + 1, "  ".join(f"{n} {times[n][-1]:.3f}s" for n in names)))
    return times


def ratio_summary(
    times: dict[str, list[float]], fast: str = "fast", reference: str = "reference"
) -> dict:
    ratios = [f / r for f, r in zip(times[fast], times[reference])]
    return {"ratios": ratios, "ratio_median": statistics.median(ratios)}


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1))


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_step_peak(step: Callable[[], None], warmup: int = 1) -> dict:
    """Peak RSS of one step above the RSS before it, in MiB (run in a memory child)."""
    import gc

    for _ in range(warmup):
        step()
    gc.collect()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS counter (/proc/self/clear_refs)")
    before = _status_kb("VmRSS")
    step()
    peak = _status_kb("VmHWM")
    return {
        "peak_mib": (peak - before) / 1024,
        "rss_before_mib": before / 1024,
        "hwm_mib": peak / 1024,
        "warmup_steps": warmup,
    }


def memory_in_child(script: str, argv: list[str], path: str) -> dict:
    """Runs the benchmark ``script`` again as ``script argv --memory-child path`` in a fresh
    process with the mmap threshold fixed; returns the JSON line it prints."""
    env = {**os.environ, **MEMORY_CHILD_ENV}
    args = _drop_option(
        [a for a in argv if a not in ("--compare", "--reference", "--flops")], "--json"
    )
    cmd = [sys.executable, script, *args, "--memory-child", path]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"memory child failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _drop_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def cuda_step_peak(step: Callable[[], None], device: torch.device) -> dict:
    step()  # warm-up
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {
        "peak_mib": (peak - before) / 2**20,
        "allocated_before_mib": before / 2**20,
        "max_allocated_mib": peak / 2**20,
    }


def matmul_flops_per_s(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Float32 matmul throughput with this process's threads: the best of ``repeats`` (other
    work on a shared machine only ever slows a run down, so the best run is the machine's)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = min(time_step(lambda: torch.mm(a, b), device) for _ in range(repeats))
    return 2 * n**3 / best


def conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
) -> int:
    """FLOPs of ``aten.convolution_backward``: each gradient asked for (input, weight) costs
    what the forward convolution costs, 2 * (output elements) * (weight elements per output
    channel), groups included. torch 2.14's own formula leaves out the groups in the weight
    gradient and counts a depthwise conv's backward C times too high (pytorch#183405)."""
    from math import prod

    spatial_points = prod(x_shape) if transposed else prod(grad_out_shape)
    forward = 2 * spatial_points * prod(w_shape[1:])
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(step: Callable[[], None]) -> int:
    """Convolution and matrix-product FLOPs of one ``step()``, forward and backward, as
    executed (torch's FlopCounterMode with a corrected convolution backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        step()
    return counter.get_total_flops()


def emit(result: dict, json_path: Path | None) -> None:
    """Appends the record to ``json_path`` (if any)."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with open(json_path, "a") as f:
            f.write(json.dumps(result) + "\n")


def clocked(step: Callable[[], None], into: dict[str, list[float]]) -> None:
    """Runs ``step`` once and appends its process CPU and wall seconds to ``into['cpu']`` and
    ``into['wall']`` (the side-by-side benchmarks' per-round record)."""
    cpu, wall = time.process_time(), time.perf_counter()
    step()
    into["cpu"].append(time.process_time() - cpu)
    into["wall"].append(time.perf_counter() - wall)


def round_ratios(times: dict, fast: str, reference: str) -> dict:
    """Per-round ratios ``fast / reference`` of :func:`clocked` records, and their median, per
    clock."""
    out = {}
    for clock in ("cpu", "wall"):
        each = [f / r for f, r in zip(times[fast][clock], times[reference][clock])]
        out[clock] = {"median": statistics.median(each), "each": each}
    return out


def write_json(result: dict, path: Path | None) -> None:
    """Writes one benchmark's whole result as indented JSON to ``path`` (if any)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")


def describe_machine(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        try:
            cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
            info["cpu"] = cpu
        except (OSError, AttributeError):
            pass
        info["cores"] = os.cpu_count()
    return info


def run(args, argv: list[str], build_fn, config: dict, kind: str) -> dict:
    """The measurement shared by search_step.py and train_step.py: peak memory first (CPU:
    one child process per path, while this one holds no model), then the paths timed in
    interleaved rounds, optionally FLOPs; prints the summary, appends the JSON record."""
    device = setup(args)
    if args.memory_child:  # we are the child: one path's peak memory, as one JSON line
        _, step = build_fn(args, device, args.memory_child)
        peak = cpu_step_peak(step, args.memory_warmup)
        print(json.dumps(peak))
        return peak
    paths = ["reference"] if args.reference else ["reference", "fast"] if args.compare else ["fast"]
    print(f"{kind}: {json.dumps(config)}")
    print(f"machine: {json.dumps(describe_machine(device))}")
    memory = {}
    if args.memory and device.type != "cuda":
        script = inspect.getfile(build_fn)  # the benchmark's own file, however it was run
        memory = {p: memory_in_child(script, argv, p) for p in paths}
    steps = {p: build_fn(args, device, p)[1] for p in paths}
    times = interleaved(steps, args.steps, device)
    result = {
        "kind": kind,
        "config": config,
        "machine": describe_machine(device),
        "paths": {
            p: {"times_s": times[p], "median_step_s": statistics.median(times[p])} for p in paths
        },
    }
    if args.compare:
        result.update(ratio_summary(times))
    if args.flops:
        counted = "reference" if "reference" in steps else paths[0]
        flops = count_flops(steps[counted])
        matmul = matmul_flops_per_s(device)
        result["flops"] = {"counted_on": counted, "step_flops": flops, "matmul_flops_per_s": matmul}
        for p in paths:
            eff = flops / result["paths"][p]["median_step_s"]
            result["paths"][p]["effective_flops_per_s"] = eff
            result["paths"][p]["fraction_of_matmul"] = eff / matmul
    if args.memory and device.type == "cuda":
        memory = {p: cuda_step_peak(steps[p], device) for p in paths}
    for p, peak in memory.items():
        result["paths"][p]["peak_memory_mib"] = peak["peak_mib"]
        result["paths"][p]["memory"] = peak
    report(result)
    emit(result, args.json)
    return result


def main(argv, parse_args, build_fn, config_keys: list[str], kind: str) -> dict:
    """A benchmark script's entry point: parse ``argv`` (the command line when None), then
    :func:`run` with the record's ``config`` made of ``config_keys``."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    return run(args, argv, build_fn, {k: getattr(args, k) for k in config_keys}, kind)


def report(result: dict) -> None:
    for p, r in result["paths"].items():
        mem = r.get("peak_memory_mib")
        line = f"{p:9s}  median_step_s {r['median_step_s']:.3f}"
        if mem is not None:
            line += f"  peak_memory_mib {mem:.1f}"
        if "effective_flops_per_s" in r:
            line += (
                f"  effective_gflops {r['effective_flops_per_s'] / 1e9:.2f}"
                f" ({100 * r['fraction_of_matmul']:.1f}% of matmul)"
            )
        print(line)
    if "flops" in result:
        f = result["flops"]
        print(
            f"flops: {f['step_flops'] / 1e9:.2f} GFLOP per {f['counted_on']} step "
            f"(FlopCounterMode); float32 matmul {f['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s"
        )
    if "ratio_median" in result:
        ratios = " ".join(f"{r:.3f}" for r in result["ratios"])
        baseline = result["config"].get("baseline", "reference")
        line = f"ratio fast/{baseline}: time {result['ratio_median']:.3f} (pairs: {ratios})"
        ref, fast = result["paths"]["reference"], result["paths"]["fast"]
        # A tiny model's reference peak can round to 0 MiB: then there is no ratio to print.
        if ref.get("peak_memory_mib"):
            line += f"  peak memory {fast['peak_memory_mib'] / ref['peak_memory_mib']:.3f}"
        print(line)
