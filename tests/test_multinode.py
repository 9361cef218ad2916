"""Two "nodes" on localhost: two torchrun launchers meet at one rendezvous (as on a cluster).

This is the suite's one torchrun job (each launcher and each process imports torch, about 4 s
of CPU apiece). The run is a search (search/sharpsepconv_darts_scalar): the architect's and
the weights' gradients averaged across the processes, and rank 0 alone printing, recording
and checkpointing. A one-node ``--nproc_per_node=2`` job differs only in the launcher's own
rendezvous: its processes get the same variables (RANK, WORLD_SIZE, MASTER_ADDR/PORT;
LOCAL_RANK, which only picks a GPU), so they take the same path in sharpdarts. A training
(its network in DistributedDataParallel) run by two processes through the CLI is
tests/test_sweep.py's (two tasks of one job); DDP's gradients against one process's are
tests/test_distributed.py's.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from spawning import free_port

from sharpdarts.engine import checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow(15)
def test_two_nodes_meet_at_a_c10d_rendezvous_and_search_one_run(tmp_path):
    results = tmp_path / "results"
    endpoint = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def node(rank: int) -> subprocess.Popen:
        # What each node of a two-node job runs (README "Running on a cluster").
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            "--nproc_per_node=1",
            f"--node_rank={rank}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={endpoint}",
            "--rdzv_id=sharpdarts-test",
            "-m",
            "sharpdarts",
            "run",
            "search/sharpsepconv_darts_scalar",
            "--smoke",
            "--seed",
            "3",
            "--results",
            str(results),
            # 32 images: each process's quarter (the weights' half, split in two) is one batch
            # of 8; smoke mode's 16 left each process none, and the weights never stepped.
            "--gin_param",
            "build_datasets.synthetic_size = (32, 8)",
        ]
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    nodes = [node(0), node(1)]
    outs, errs = zip(*(p.communicate(timeout=400) for p in nodes))
    assert [p.returncode for p in nodes] == [0, 0], "\n".join(e[-3000:] for e in errs)
    [run_json] = results.glob("runs/*/*/*/run.json")  # one run folder, rank 0's
    folder = run_json.parent
    info = json.loads(run_json.read_text())
    assert info["status"] == "completed" and info["world_size"] == 2
    assert info["rank_seeds"][0] == 3 and len(set(info["rank_seeds"])) == 2
    assert info["final"]["genotype"]["normal"]
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert checkpoint.load_checkpoint(folder / "checkpoint.pt")["epoch"] == 2
    # Rank 0 (node 0) prints and records; the other process does neither.
    assert outs[0].count("running search/sharpsepconv_darts_scalar") == 1, outs[0][-3000:]
    assert "running search/sharpsepconv_darts_scalar" not in outs[1] + errs[1]
    assert outs[0].strip().splitlines()[-1] == str(folder)  # the run folder, last
