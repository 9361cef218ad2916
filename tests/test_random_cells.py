"""Random cells of the DARTS space (the demo's baseline) and `sharpdarts genotype random`."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sharpdarts.core import genotypes
from sharpdarts.core.random_cells import random_genotype
from sharpdarts.face import cli, experiments

ROOT = Path(__file__).resolve().parents[1]
OPS = [op for op in genotypes.DARTS_PRIMITIVES if op != "none"]


def check_cell(entries, steps=4):
    assert len(entries) == 2 * steps
    for node in range(steps):
        (op_a, in_a), (op_b, in_b) = entries[2 * node: 2 * node + 2]
        assert in_a != in_b and 0 <= in_a < node + 2 and 0 <= in_b < node + 2
        assert op_a in OPS and op_b in OPS


def test_a_random_genotype_is_a_valid_cell_of_the_space_and_fixed_by_its_seed():
    g = random_genotype(1)
    check_cell(g.normal)
    check_cell(g.reduce)
    assert g.normal_concat == g.reduce_concat == [2, 3, 4, 5] and g.layout == "cell"
    assert random_genotype(1) == g
    assert random_genotype(2) != g
    # The JSON form round-trips, as the registry stores it.
    assert genotypes.from_dict(genotypes.to_dict(g)) == g


def test_draws_cover_every_op_and_every_input_and_never_none():
    ops, inputs = Counter(), Counter()
    for seed in range(200):
        g = random_genotype(seed)
        for op, inp in g.normal + g.reduce:
            ops[op] += 1
            inputs[inp] += 1
    assert set(ops) == set(OPS)  # 'none' is never drawn
    assert set(inputs) == {0, 1, 2, 3, 4}
    # Each op is about equally likely (3200 draws over 7 ops: ~457 each).
    assert min(ops.values()) > 350 and max(ops.values()) < 570


def test_other_primitive_sets_steps_and_multiplier():
    g = random_genotype(3, ["none", "skip_connect", "max_pool_3x3"], steps=3, multiplier=2)
    assert {op for op, _ in g.normal + g.reduce} <= {"skip_connect", "max_pool_3x3"}
    assert len(g.normal) == 6 and g.normal_concat == [3, 4]
    with pytest.raises(ValueError):
        random_genotype(0, ["none"])
    with pytest.raises(ValueError):
        random_genotype(0, steps=2, multiplier=3)
    with pytest.raises(KeyError, match="DARTS_PRIMITIVES"):
        random_genotype(0, "DARTS_PRIMITIVS")


def test_the_random_cell_builds_and_runs_as_a_network():
    import torch

    from sharpdarts.nn.models import NetworkCIFAR

    net = NetworkCIFAR(8, 10, 3, False, random_genotype(1)).eval()
    logits, _ = net(torch.zeros(2, 3, 16, 16))
    assert logits.shape == (2, 10)


def test_genotype_random_command_adds_it_with_its_lineage(capsys):
    assert cli.main(["genotype", "random", "BASELINE", "--seed", "5"]) == 0
    assert "BASELINE" in capsys.readouterr().out
    assert genotypes.get("BASELINE") == random_genotype(5)
    assert genotypes.lineage("BASELINE") == {"random": True, "seed": 5,
                                             "primitives": "DARTS_PRIMITIVES"}
    assert cli.main(["genotype", "random", "BASELINE", "--seed", "6", "--replace"]) == 0
    assert genotypes.get("BASELINE") == random_genotype(6)


def test_genotype_random_refuses_a_taken_name_or_an_unknown_set_and_writes_nothing(capsys):
    registry = genotypes.user_registry_path()
    assert cli.main(["genotype", "random", "BASELINE", "--seed", "5"]) == 0
    before = registry.read_bytes()
    for args in (["BASELINE", "--seed", "7"], ["DARTS_V2"], ["OTHER", "--primitives", "NOPE"],
                 ["9bad"]):
        capsys.readouterr()
        assert cli.main(["genotype", "random", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sharpdarts: error: Cannot add a random cell"), err
    assert registry.read_bytes() == before


def test_genotype_random_imports_no_torch(tmp_path):
    probe = ("import sys\nfrom sharpdarts.face.cli import main\ncode = main(sys.argv[1:])\n"
             "print('HEAVY', code, 'torch' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "SHARPDARTS_GENOTYPES": str(tmp_path / "g.json")}
    proc = subprocess.run([sys.executable, "-c", probe, "genotype", "random", "R", "--seed", "1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert "HEAVY 0 False" in proc.stdout, proc.stderr
    assert json.loads((tmp_path / "g.json").read_text())["genotypes"]["R"]["lineage"]["seed"] == 1


def test_the_demo_baseline_trains_exactly_as_the_demo_cell_but_for_its_genotype():
    def lines(name):
        text = experiments.experiment_path(name).read_text()
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    train, baseline = lines("demo/train"), lines("demo/train_random")
    assert len(train) == len(baseline)
    assert [(a, b) for a, b in zip(train, baseline) if a != b] == [
        ("GENOTYPE = 'DEMO'", "GENOTYPE = 'DEMO_RANDOM'")]
