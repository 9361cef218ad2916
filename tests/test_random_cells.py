"""`sharpdarts genotype random` (the demo's random-cell baseline) and demo/train_random."""

import json
import os
import subprocess
import sys
from pathlib import Path

from sharpdarts.core import genotypes

# One sampler serves the demo's baseline and the random-search baselines (its own tests are
# in test_random_search.py); here the command and the demo experiment.
from sharpdarts.core.random_genotypes import sample_cell_genotype as random_genotype
from sharpdarts.face import cli, experiments

ROOT = Path(__file__).resolve().parents[1]


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
    assert genotypes.lineage("BASELINE") == {
        "random": True,
        "seed": 5,
        "primitives": "DARTS_PRIMITIVES",
    }
    assert cli.main(["genotype", "random", "BASELINE", "--seed", "6", "--replace"]) == 0
    assert genotypes.get("BASELINE") == random_genotype(6)


def test_genotype_random_refuses_a_taken_name_or_an_unknown_set_and_writes_nothing(capsys):
    registry = genotypes.user_registry_path()
    assert cli.main(["genotype", "random", "BASELINE", "--seed", "5"]) == 0
    before = registry.read_bytes()
    for args in (
        ["BASELINE", "--seed", "7"],
        ["DARTS_V2"],
        ["OTHER", "--primitives", "NOPE"],
        ["9bad"],
    ):
        capsys.readouterr()
        assert cli.main(["genotype", "random", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sharpdarts: error: Cannot add a random cell"), err
    assert registry.read_bytes() == before


def test_genotype_random_imports_no_torch(tmp_path):
    probe = (
        "import sys\nfrom sharpdarts.face.cli import main\ncode = main(sys.argv[1:])\n"
        "print('HEAVY', code, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHARPDARTS_GENOTYPES": str(tmp_path / "g.json")}
    proc = subprocess.run(
        [sys.executable, "-c", probe, "genotype", "random", "R", "--seed", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "HEAVY 0 False" in proc.stdout, proc.stderr
    assert json.loads((tmp_path / "g.json").read_text())["genotypes"]["R"]["lineage"]["seed"] == 1


def test_the_demo_baseline_trains_exactly_as_the_demo_cell_but_for_its_genotype():
    def lines(name):
        text = experiments.experiment_path(name).read_text()
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    train, baseline = lines("demo/train"), lines("demo/train_random")
    assert len(train) == len(baseline)
    assert [(a, b) for a, b in zip(train, baseline) if a != b] == [
        ("GENOTYPE = 'DEMO'", "GENOTYPE = 'DEMO_RANDOM'")
    ]
