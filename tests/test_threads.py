"""``--threads N`` caps torch's CPU threads for `run` and `evaluate`, and run.json records it."""

import json

import pytest
import torch
from test_data import write_cifar10
from test_runner import _checkpoint

from sharpdarts.face import cli


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _infos(results):
    return [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("run.json"))]


def test_run_and_evaluate_use_and_record_threads(tmp_path, restore_threads, capsys):
    torch.set_num_threads(1)
    results = tmp_path / "results"
    # demo/lm_train_darts_v2 binds make_context.threads = 1: the command line wins over it.
    # (Its smoke run is a fraction of demo/search's thousands of tiny ops, each of which pays
    # for waking a second thread on cores that other tests keep busy; 64 columns make its
    # training epoch 12 time steps, not the smoke batch's 100.)
    assert (
        cli.main(
            [
                "run",
                "demo/lm_train_darts_v2",
                "--smoke",
                "--seed",
                "7",
                "--gin_param",
                "EPOCHS=1",
                "--gin_param",
                "BATCH_SIZE=64",
                "--results",
                str(results),
                "--threads",
                "2",
            ]
        )
        == 0
    )
    assert torch.get_num_threads() == 2
    (trained,) = _infos(results)
    assert trained["threads"] == 2

    torch.set_num_threads(2)
    data = tmp_path / "data"
    write_cifar10(data, per_batch=2)
    weights = _checkpoint(tmp_path / "weights.pt", 1)
    assert (
        cli.main(
            [
                "evaluate",
                str(weights),
                "--arch",
                "SHARPSEPCONV_DARTS",
                "--data",
                str(data),
                "--results",
                str(results),
                "--gin_param",
                "NetworkCIFAR.C=8",
                "--gin_param",
                "NetworkCIFAR.layers=3",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    evaluation = [i for i in _infos(results) if i["kind"] == "evaluate"]
    assert evaluation[0]["threads"] == 1 and torch.get_num_threads() == 1


def test_without_threads_the_number_in_use_is_recorded(tmp_path, restore_threads):
    torch.set_num_threads(2)
    # Without --threads, demo/search's make_context.threads = 1 is the number in use.
    assert (
        cli.main(
            [
                "run",
                "demo/search",
                "--smoke",
                "--seed",
                "8",
                "--gin_param",
                "EPOCHS=1",
                "--results",
                str(tmp_path),
            ]
        )
        == 0
    )
    (info,) = _infos(tmp_path)
    assert info["threads"] == 1 == torch.get_num_threads()


def test_threads_below_one_is_a_user_error(tmp_path, capsys):
    assert (
        cli.main(["run", "demo/search", "--smoke", "--results", str(tmp_path), "--threads", "0"])
        == 2
    )
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
