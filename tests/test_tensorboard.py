"""Every run writes TensorBoard events beside run.json; `export tensorboard` writes them for
older folders. The events are read back with TensorBoard's own reader."""

import json
import math

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_results import write_run

from sharpdarts.face import cli


def _events(folder):
    acc = EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def _records(folder):
    return [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    assert (
        cli.main(
            [
                "run",
                "demo/search",
                "--smoke",
                "--seed",
                "2",
                "--gin_param",
                "EPOCHS=2",
                "--results",
                str(results),
            ]
        )
        == 0
    )
    (folder,) = [p.parent for p in (results / "runs").rglob("run.json")]
    return results, folder


def test_a_search_run_writes_scalars_alphas_and_genotype(search_run):
    _, folder = search_run
    records = _records(folder)
    acc = _events(folder)
    tags = acc.Tags()
    for key in (
        "lr",
        "train_loss",
        "train_acc",
        "valid_loss",
        "valid_acc",
        "seconds",
        "train_perplexity",
        "valid_perplexity",
    ):
        assert key in tags["scalars"], key
    for key in ("train_loss", "valid_acc", "lr"):
        events = acc.Scalars(key)
        assert [e.step for e in events] == [r["epoch"] for r in records]
        assert [e.value for e in events] == pytest.approx([r[key] for r in records], rel=1e-6)
    perplexity = acc.Scalars("valid_perplexity")[-1].value
    assert perplexity == pytest.approx(math.exp(records[-1]["valid_loss"]), rel=1e-5)

    for key in ("alphas_normal", "alphas_reduce"):
        last = acc.Histograms(key)[-1]
        weights = np.asarray(records[-1][key])
        assert last.step == records[-1]["epoch"]
        assert last.histogram_value.num == weights.size
        assert last.histogram_value.sum == pytest.approx(weights.sum(), rel=1e-6)
        image = acc.Images(key)[-1]
        assert (image.width, image.height) == (weights.shape[1], weights.shape[0])
    texts = acc.Tensors("genotype/text_summary")
    assert [t.step for t in texts] == [r["epoch"] for r in records]
    written = texts[-1].tensor_proto.string_val[0].decode()
    assert json.loads(written) == records[-1]["genotype"]


def test_export_writes_events_for_older_folders(tmp_path, search_run, capsys):
    _, folder = search_run
    # An older run folder: the same records, no events.
    old = write_run(
        tmp_path, "demo/search", 1, {"genotype": None}, kind="search", metrics=_records(folder)
    )
    assert not list(old.glob("events.out.tfevents.*"))
    assert cli.main(["export", "tensorboard", "--results", str(tmp_path)]) == 0
    assert "2 epochs written" in capsys.readouterr().out
    acc = _events(old)
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]
    assert len(acc.Histograms("alphas_normal")) == 2
    # A second export leaves it alone; --replace rewrites it.
    assert cli.main(["export", "tensorboard", "--results", str(tmp_path)]) == 0
    assert "nothing to write" in capsys.readouterr().out
    assert len(list(old.glob("events.out.tfevents.*"))) == 1
    assert (
        cli.main(["export", "tensorboard", old.name, "--replace", "--results", str(tmp_path)]) == 0
    )
    assert len(list(old.glob("events.out.tfevents.*"))) == 1


def test_export_of_an_unknown_run_is_a_user_error(tmp_path, capsys):
    write_run(tmp_path, "demo/search", 1, {})
    assert cli.main(["export", "tensorboard", "no_such_run", "--results", str(tmp_path)]) == 2
    assert "sharpdarts: error:" in capsys.readouterr().err
    assert not list((tmp_path / "runs").rglob("events.out.tfevents.*"))
