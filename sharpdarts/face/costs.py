"""Params and multiply-adds of every training experiment, computed from its architecture.

(Recurrent cells: params only, with the published corpus's vocabulary.)

A table shows these figures for a row before any run of it has completed, without importing
torch: they are computed here once, by building each experiment's network exactly as
``sharpdarts run`` builds it (its gin config, the dataset's image shape and classes, on a tiny
synthetic stand-in for the data) and measuring it as a training run does (the job's
``params_m`` and ``multiply_adds_b``), then kept in the package data file
``sharpdarts/reference/computed_costs.json``. ``tests/test_costs.py`` recomputes them and
compares, so the file cannot drift from the code.

Regenerate the file after changing a network or an experiment:
``python -m sharpdarts.face.costs`` (about a minute on a CPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sharpdarts.core import io
from sharpdarts.engine import train_job
from sharpdarts.errors import UserError
from sharpdarts.face import experiments

COSTS_FILE = Path(__file__).resolve().parents[1] / "reference" / "computed_costs.json"
# Rounded as the tables never print more digits: the file stays stable across BLAS builds.
DIGITS = 6


def train_experiments() -> list[str]:
    """The experiments whose rows carry params (and multiply-adds): cifar10/ and imagenet/,
    and the recurrent cells of ptb/ and wt2/."""
    return [
        name
        for name in experiments.experiment_names()
        if name.split("/")[0] in ("cifar10", "imagenet", "ptb", "wt2")
    ]


def _vocabulary_stand_in(spec):
    """A corpus with the published corpus's vocabulary (the model's size depends on nothing
    else of the data) and a few tokens, as a DataBundle; None when the size is unknown."""
    import torch

    from sharpdarts.engine.data import bundle
    from sharpdarts.engine.data import corpus as corpus_lib

    if not spec.num_classes:
        return None
    tokens = torch.arange(4096) % spec.num_classes
    stand_in = corpus_lib.Corpus([f"w{i}" for i in range(spec.num_classes)], tokens, tokens, tokens)
    return bundle.DataBundle(spec, stand_in, stand_in)


def compute(name: str) -> dict | None:
    """``{"params_m", "multiply_adds_b", "genotype"}`` of one experiment's network, or None
    when it is no training experiment that builds on its own (a search, a continuation, a
    random search: its cell is drawn when it runs, so no figure can stand for it)."""
    import gin

    from sharpdarts.engine import lm_jobs
    from sharpdarts.engine.data import bundle, specs
    from sharpdarts.face import runner

    with tempfile.TemporaryDirectory() as results:
        try:
            configured = runner.configure(name, [], False, results)
        except UserError:
            return None  # e.g. a continuation, which needs INIT_FROM
        if configured.job is lm_jobs.lm_train:  # a recurrent cell: params only
            spec = specs.spec(gin.query_parameter("build_datasets.name"))
            data = _vocabulary_stand_in(spec)
            if data is None:
                return None
            built = runner._build(configured.job, seed=0, data=data)
            figures = {"params_m": round(built.params_m, DIGITS)}
        elif configured.job is train_job.train:
            runner._apply_smoke()  # the dataset's shape and classes, on synthetic images
            gin.bind_parameter("build_datasets.synthetic_size", (4, 4))
            built = runner._build(configured.job, seed=0, data=bundle.build_datasets())
            figures = {
                "params_m": round(built.params_m, DIGITS),
                "multiply_adds_b": round(built.madds_b, DIGITS),
            }
        else:
            return None
    genotype = configured.extra.get("genotype") or {}
    return {**figures, "genotype": genotype.get("name")}


def compute_all(names: list[str] | None = None) -> dict[str, dict]:
    """The figures of ``names`` (default: every experiment of :func:`train_experiments`)."""
    out = {}
    for name in names if names is not None else train_experiments():
        figures = compute(name)
        if figures is not None:
            out[name] = figures
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recompute " + COSTS_FILE.name)
    parser.add_argument("--out", default=str(COSTS_FILE))
    args = parser.parse_args(argv)
    payload = {
        "_about": "Params (millions) and multiply-adds (billions) of each experiment's "
        "network, computed from its architecture by sharpdarts.face.costs.",
        "experiments": compute_all(),
    }
    io.atomic_write_json(Path(args.out), payload)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
