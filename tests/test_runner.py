"""The runner: a job is built once before its run folder exists, a binding that takes no
effect is refused with exit 2 and its name, and evaluation records name the checkpoint's
content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_data import write_cifar10

from sharpdarts.engine import checkpoint as checkpoint_lib
from sharpdarts.engine import evaluation, train_job
from sharpdarts.face import cli
from sharpdarts.nn import models


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr()


def run_folders(results: Path) -> list[Path]:
    return (
        sorted(p.parent for p in (results / "runs").rglob("run.json")) if results.exists() else []
    )


@pytest.mark.parametrize(
    "experiment,binding,name",
    [
        # Not configurable at all (the schedule factory passes every argument): gin refuses it.
        ("cifar10/sharpdarts", "CosinePowerAnnealingLR.min_lr=1", "CosinePowerAnnealingLR"),
        ("cifar10/sharpdarts", "cosine_power_annealing.epochs=3", "epochs"),
        # Configurable, but the engine always passes it.
        ("cifar10/sharpdarts", "make_loader.workers=2", "make_loader"),
        # Configurable, but nothing this experiment builds reads it.
        (
            "cifar10/sharpsepconv_darts_cosine_annealing",
            "cosine_power_annealing.min_lr=1e-3",
            "cosine_power_annealing.min_lr",
        ),
        ("cifar10/multi_channel_max_w_path", "NetworkCIFAR.C=8", "NetworkCIFAR.C"),
        ("search/multi_channel_scalar", "SearchNetwork.C=5", "SearchNetwork.C"),
        ("search/sharper_scalar", "train.epochs=3", "train.epochs"),
        ("cifar10/sharpdarts", "sgd.momentum=0.5 train.optimizer='adamw'", "sgd.momentum"),
    ],
)
def test_a_binding_that_takes_no_effect_is_refused(experiment, binding, name, tmp_path, capsys):
    results = tmp_path / "results"
    params = [a for b in binding.split(" ") for a in ("--gin_param", b)]
    code, out = run_cli(capsys, "run", experiment, "--smoke", "--results", results, *params)
    assert code == 2, out.err
    message = " ".join(out.err.split())
    assert name in message and "Traceback" not in out.err
    assert not run_folders(results)  # refused before anything is written


def test_the_job_is_built_once_and_fitted_with_the_objects_built(tmp_path, capsys, monkeypatch):
    builds = []
    real_init = train_job.TrainJob.__init__

    def counting_init(self, *args, **kwargs):
        builds.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(train_job.TrainJob, "__init__", counting_init)
    code, out = run_cli(
        capsys,
        "run",
        "cifar10/sharpdarts",
        "--smoke",
        "--results",
        tmp_path,
        "--gin_param",
        "EPOCHS=1",
    )
    assert code == 0, out.err
    assert len(builds) == 1
    (folder,) = run_folders(tmp_path)
    operative = (folder / "operative_config.gin").read_text()
    assert (
        "sgd.momentum = 0.9" in operative and "cosine_power_annealing.min_lr = 1e-08" in operative
    )


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = models.NetworkCIFAR(8, 10, 3, True, "SHARPSEPCONV_DARTS")
    torch.save({"model": model.state_dict()}, path)
    return path


def test_two_checkpoints_of_one_architecture_make_two_evaluation_records(tmp_path, capsys):
    data = tmp_path / "data"
    write_cifar10(data, per_batch=2)
    results = tmp_path / "results"
    first, second = (_checkpoint(tmp_path / f"weights{i}.pt", i) for i in (1, 2))
    small = ["--gin_param", "NetworkCIFAR.C=8", "--gin_param", "NetworkCIFAR.layers=3"]
    for checkpoint in (first, second, first):
        code, out = run_cli(
            capsys,
            "evaluate",
            checkpoint,
            "--arch",
            "SHARPSEPCONV_DARTS",
            "--data",
            data,
            "--results",
            results,
            *small,
        )
        assert code == 0, out.err
    folders = run_folders(results)
    assert len(folders) == 2  # the third evaluation (of the first file again) is skipped
    infos = [json.loads((f / "run.json").read_text()) for f in folders]
    assert {i["checkpoint_sha256"] for i in infos} == {
        checkpoint_lib.file_sha256(first),
        checkpoint_lib.file_sha256(second),
    }
    assert len({i["config_hash"] for i in infos}) == 2
    for info, folder in zip(infos, folders):
        assert info["checkpoint_sha256"] in (folder / "config.gin").read_text()


def test_a_checkpoint_that_changed_is_not_evaluated_under_its_old_hash(tmp_path):
    path = _checkpoint(tmp_path / "weights.pt", 1)
    with pytest.raises(ValueError, match="changed"):
        evaluation.evaluate_checkpoint(
            checkpoint=path,
            build_only=True,
            network=models.NetworkCIFAR,
            checkpoint_sha256="0" * 64,
        )


def test_allow_unused_excuses_exactly_the_bindings_it_names(tmp_path):
    from sharpdarts.errors import UserError
    from sharpdarts.face import runner

    bindings = ["train.epochs = 3", "train.grad_clip = 1.0"]
    configured = runner.configure(
        "search/sharper_scalar",
        bindings,
        smoke=True,
        results=str(tmp_path),
        allow_unused=("train.epochs",),
    )
    with pytest.raises(UserError, match="train.grad_clip") as refused:
        runner.build_checked(configured, seed=0, data_root=None)
    assert "train.epochs" not in str(refused.value)
    configured = runner.configure(
        "search/sharper_scalar",
        bindings,
        smoke=True,
        results=str(tmp_path),
        allow_unused=("train.epochs", "train.grad_clip"),
    )
    built = runner.build_checked(configured, seed=0, data_root=None)
    assert built.epochs == 2 and configured.extra["allow_unused"] == list(configured.allow_unused)


def test_a_missing_required_binding_is_a_user_error(tmp_path, capsys):
    """A .gin that forgets the network (a missing include) exits 2 with gin's reason."""
    from sharpdarts.face import cli

    gin_file = tmp_path / "no_network.gin"
    gin_file.write_text(
        "include 'gin/protocols/search.gin'\ninclude 'gin/datasets/digits.gin'\n"
        "EPOCHS = 1\nBATCH_SIZE = 8\n"
    )
    status = cli.main(["run", str(gin_file), "--results", str(tmp_path / "results")])
    assert status == 2
    assert "Required bindings for `search`" in capsys.readouterr().err
    assert not (tmp_path / "results" / "runs").exists()
