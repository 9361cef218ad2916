"""The benchmark scripts run, and count what they claim to count.

benchmarks/ is not timed here (timings belong in benchmarks/README.md, measured as ratios);
these tests keep the scripts working on tiny networks and pin the FLOP formula that the
effective-throughput figures rest on.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sharpdarts.nn.cells import MixedOp
from sharpdarts.nn.relaxation import get_relaxation

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import collapse_cost  # noqa: E402
import common  # noqa: E402
import lm_search_step  # noqa: E402
import nb201_step  # noqa: E402
import peer_darts_step  # noqa: E402
import search_step  # noqa: E402
import train_step  # noqa: E402


@pytest.mark.parametrize(
    "channels,groups,kernel,dilation",
    [
        (16, 16, 3, 1),  # depthwise: torch 2.14's own formula counts its backward 16x too high
        (16, 16, 5, 2),
        (16, 1, 1, 1),  # pointwise
        (32, 4, 3, 1),  # grouped
    ],
)
@pytest.mark.parametrize("weight_grad", [True, False])
def test_conv_flops_are_forward_times_gradients(channels, groups, kernel, dilation, weight_grad):
    x = torch.randn(2, channels, 6, 7, requires_grad=True)
    w = torch.randn(channels, channels // groups, kernel, kernel, requires_grad=weight_grad)
    padding = dilation * (kernel - 1) // 2

    def step():
        F.conv2d(x, w, padding=padding, dilation=dilation, groups=groups).sum().backward()

    # 2 FLOPs per multiply-add: each output element takes (C / groups) * k * k of them.
    forward = 2 * (2 * channels * 6 * 7) * (channels // groups) * kernel * kernel
    gradients = 2 if weight_grad else 1
    assert common.count_flops(step) == forward * (1 + gradients)


@pytest.mark.slow(2)
def test_search_step_compares_both_paths_and_writes_json(tmp_path, monkeypatch):
    # --flops measures the machine's matmul rate on 2048 x 2048 products (six of them, about
    # 100 GFLOP on one thread); a 256 x 256 product runs the same function at 1/500 the cost.
    matmul = common.matmul_flops_per_s
    monkeypatch.setattr(common, "matmul_flops_per_s", lambda device: matmul(device, n=256))
    out = tmp_path / "r.jsonl"
    result = search_step.main(
        [
            "--batch",
            "2",
            "--C",
            "4",
            "--layers",
            "3",
            "--nodes",
            "1",  # one node a cell (2 edges, not 5): a third of the steps' cost
            "--steps",
            "2",
            "--order",
            "1",
            "--compare",
            "--flops",
            "--threads",
            "1",
            "--no-memory",
            "--json",
            str(out),
        ]
    )
    assert set(result["paths"]) == {"reference", "fast"}
    assert len(result["ratios"]) == 2 and result["ratio_median"] > 0
    assert result["flops"]["step_flops"] > 0 and result["flops"]["matmul_flops_per_s"] > 0
    config = json.loads(out.read_text().splitlines()[-1])["config"]
    assert config["order"] == 1 and config["nodes"] == 1


@pytest.mark.slow(8)
def test_train_step_measures_peak_memory_in_a_child_process():
    """The one memory child of these tests (a fresh process, ~5 s of CPU, most of it
    importing torch). Every step benchmark starts it through the same code
    (common.memory_in_child, then common.run's --memory-child branch in the child): the other
    scripts' children run their own build there, as test_lm_search_step_memory_child does
    in this process."""
    result = train_step.main(
        ["--batch", "2", "--C", "8", "--layers", "3", "--steps", "1", "--threads", "1"]
    )
    memory = result["paths"]["fast"]["memory"]
    assert result["paths"]["fast"]["peak_memory_mib"] > 0
    assert memory["hwm_mib"] >= memory["rss_before_mib"]


LM_TINY = ["--batch", "3", "--nhid", "6", "--vocab", "20", "--bptt", "4", "--threads", "1"]


@pytest.mark.parametrize("order", [1, 2])
def test_lm_search_step_compares_both_paths_and_writes_json(tmp_path, order):
    """Both orders are timed, both paths compared; its memory child's part is the next test's."""
    out = tmp_path / "r.jsonl"
    argv = [*LM_TINY, "--steps", "2", "--order", str(order), "--compare", "--no-memory"]
    result = lm_search_step.main([*argv, "--json", str(out)])
    assert set(result["paths"]) == {"reference", "fast"}
    assert len(result["ratios"]) == 2 and result["ratio_median"] > 0
    assert all("peak_memory_mib" not in p for p in result["paths"].values())
    record = json.loads(out.read_text().splitlines()[-1])
    assert record["kind"] == "lm_search_step" and record["config"]["order"] == order


def test_lm_search_step_memory_child():
    """What lm_search_step.py's memory child runs (its build, a warm-up step, then the peak
    RSS of one step, printed as one JSON line), run in this process: starting the child and
    reading its line back is the code test_train_step_measures_peak_memory_in_a_child_process
    runs. This process's allocator keeps freed memory, so its peak may read 0 here; a fresh
    child, with the mmap threshold fixed, is what makes the figure a step's."""
    peak = lm_search_step.main([*LM_TINY, "--steps", "1", "--order", "1", "--memory-child", "fast"])
    assert set(peak) == {"peak_mib", "rss_before_mib", "hwm_mib", "warmup_steps"}
    assert peak["warmup_steps"] == 1 and peak["rss_before_mib"] > 0
    assert peak["hwm_mib"] >= peak["rss_before_mib"]
    assert peak["peak_mib"] == pytest.approx(peak["hwm_mib"] - peak["rss_before_mib"])


def test_collapse_cost_times_the_eigenvalue_against_an_epoch(tmp_path):
    out = tmp_path / "c.jsonl"
    result = collapse_cost.main(
        ["--batch", "2", "--C", "2", "--layers", "3", "--nodes", "1", "--steps", "1"]
        + ["--repeats", "1", "--iterations", "2", "--threads", "1", "--json", str(out)]
    )
    assert result["iterations"] == 2 and 1 <= result["products"][0] <= 4
    # An epoch at batch 2 is 12500 search steps and 12500 evaluation batches.
    expected = 12500 * (result["search_step_s"] + result["eval_batch_s"])
    assert result["epoch_s"] == pytest.approx(expected)
    assert result["ratio_default_every"] == pytest.approx(
        result["eigenvalue_s"] / (2 * result["epoch_s"])
    )
    assert json.loads(out.read_text())["kind"] == "collapse_cost"


def test_nb201_step_times_ours_without_the_authors_package(tmp_path):
    """The NAS-Bench-201 step benchmark runs without xautodl (--no-authors): ours only."""
    out = tmp_path / "nb201.json"
    tiny = ["--batch", "2", "--C", "4", "--N", "1", "--image", "8", "--rounds", "2"]
    result = nb201_step.main([*tiny, "--no-authors", "--json", str(out)])
    assert set(result["median_step_s"]) == {"darts", "gdas"}
    assert list(result["ratios"]) == ["gdas / darts"]
    assert len(result["ratios"]["gdas / darts"]["cpu"]["each"]) == 2
    assert json.loads(out.read_text())["config"]["C"] == 4


@pytest.mark.slow(4)
def test_peer_darts_step_times_both_steps_and_ours_as_the_experiment_builds_it(tmp_path):
    """The peer comparison times the arch and weight steps of every model; ours is the
    supernet of experiments/search/darts_first_order.gin (DARTS ops, channels-last)."""
    out = tmp_path / "peer.json"
    tiny = ["--batch", "2", "--C", "4", "--layers", "5", "--image", "8", "--rounds", "1"]
    result = peer_darts_step.main([*tiny, "--no-authors", "--nchw", "--json", str(out)])
    assert set(result["median_step_s"]) == {"ours", "ours_nchw"}
    assert set(result["median_step_s"]["ours"]) == {"weight", "arch", "total"}
    assert list(result["ratios"]) == ["ours_nchw / ours"]
    assert json.loads(out.read_text())["config"]["layers"] == 5
    with pytest.raises(SystemExit):  # not 3N + 2 cells: the peer cannot build it
        peer_darts_step.parse_args(["--layers", "6"])


@pytest.mark.parametrize(
    "argv, baseline, fast",
    [
        # GDAS against the fast DARTS supernet, both channels-last
        (
            ["--relaxation", "gumbel_hard", "--tau", "10", "--baseline", "darts"],
            ("softmax", 1, False, True, 1.0),
            ("gumbel_hard", 1, False, True, 10.0),
        ),
        # PC-DARTS against the fast DARTS supernet
        (
            ["--partial_channels", "4", "--edge_normalization", "--baseline", "darts"],
            ("softmax", 1, False, True, 1.0),
            ("softmax", 4, True, True, 1.0),
        ),
        # the memory format's share: the same fast configuration in NCHW
        (
            ["--partial_channels", "4", "--edge_normalization", "--baseline", "nchw"],
            ("softmax", 4, True, False, 1.0),
            ("softmax", 4, True, True, 1.0),
        ),
    ],
)
def test_search_step_baselines_build_the_configuration_compared(argv, baseline, fast):
    args = search_step.parse_args(["--C", "4", "--layers", "3", "--nodes", "2", *argv])

    def described(path):
        model, _ = search_step.build(args, torch.device("cpu"), path)
        relaxation = next(
            n for n in ("softmax", "gumbel_hard") if model.relaxation is get_relaxation(n)
        )
        partial = next(m._partial for m in model.modules() if isinstance(m, MixedOp))
        return relaxation, partial, model.edge_normalization, model.channels_last, model.tau

    assert described("reference") == baseline and described("fast") == fast
