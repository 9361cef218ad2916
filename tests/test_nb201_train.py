"""NAS-Bench-201's training protocol: its datasets read from files written here in their real
formats, its splits, and the nb201/train_* experiments (docs/nb201_train.md).

The authors' figures pinned here come from D-X-Y/AutoDL-Projects at commit
f46486e21b71ae6459a700be720d7648b5429569: the split files of configs/nas-benchmark/ (hashes
of their index lists, and the first indices their own code asserts), and the learning rates
of their xautodl/procedures/optimizers.py (get_optim_scheduler with configs/nas-benchmark/
CIFAR.config, float64). Their ImageNet16 reader (xautodl/datasets/DownsampledImageNet.py) read
the same random files as ours, image for image, when this was written.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import gin
import numpy as np
import pytest
from test_data import _py2_pickle, _Py2Str, write_cifar10
from torchvision import transforms as T

from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import datasets, imagenet16, nb201_splits, specs, transforms
from sharpdarts.errors import UserError
from sharpdarts.face import cli, experiments, runner

NB201_EXPERIMENTS = ["nb201/train_cifar10", "nb201/train_cifar100", "nb201/train_imagenet16"]


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _digest(indices) -> str:
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()


# ---- Writers of the real formats -----------------------------------------------------------
def _index_images(n: int, size: int) -> np.ndarray:
    """n images of ``size`` bytes whose first two bytes spell their index (to find them)."""
    data = np.zeros((n, size), np.uint8)
    data[:, 0], data[:, 1] = np.arange(n) % 256, np.arange(n) // 256
    return data


def _index_of(image) -> int:
    pixels = np.asarray(image)  # H x W x C: byte 0 and 1 are the red plane's first two pixels
    return int(pixels[0, 0, 0]) + 256 * int(pixels[0, 1, 0])


def write_cifar100(root, n_train: int = 6, n_test: int = 4) -> dict:
    """torchvision's CIFAR-100 python version (cifar-100-python/{train, test, meta})."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    written = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = _index_images(n, 3072) if n > 256 else rng.integers(0, 256, (n, 3072), np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        entry = {
            _Py2Str("filenames"): [_Py2Str(f"img_{i}.png") for i in range(min(n, 3))],
            _Py2Str("batch_label"): _Py2Str(f"{name}ing batch 1 of 1"),
            _Py2Str("fine_labels"): fine,
            _Py2Str("coarse_labels"): [v // 5 for v in fine],
            _Py2Str("data"): data,
        }
        _py2_pickle(entry, folder / name)
        written[name] = (data, fine)
    meta = {
        _Py2Str("fine_label_names"): [_Py2Str(f"class{i}") for i in range(100)],
        _Py2Str("coarse_label_names"): [_Py2Str(f"super{i}") for i in range(20)],
    }
    _py2_pickle(meta, folder / "meta")
    return written


def write_imagenet16(root, per_batch: int = 3, n_valid: int = 8) -> dict:
    """The downsampled ImageNet 16x16 pickles (ImageNet16/train_data_batch_1..10, val_data):
    labels 1..1000, so that some fall outside ImageNet16-120's 120 classes."""
    folder = Path(root) / imagenet16.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(6)
    written = {}
    for name in imagenet16.TRAIN_FILES + imagenet16.VALID_FILES:
        n = n_valid if name == "val_data" else per_batch
        data = _index_images(n, 768) if n > 256 else rng.integers(0, 256, (n, 768), np.uint8)
        labels = [int(v) for v in rng.integers(1, 240, n)]
        if n > 256:  # every image kept, its index in the pixels
            labels = [1 + i % 120 for i in range(n)]
        if name == "train_data_batch_1":  # the edges of the 120 classes
            labels[:3] = [120, 121, 1]
        entry = {_Py2Str("data"): data, _Py2Str("labels"): labels}
        if name != "val_data":
            entry[_Py2Str("mean")] = rng.random(768)
        _py2_pickle(entry, folder / name)
        written[name] = (data, labels)
    return written


# ---- The datasets --------------------------------------------------------------------------
def test_cifar100_is_read_from_its_files(tmp_path):
    written = write_cifar100(tmp_path)
    for train, name in ((True, "train"), (False, "test")):
        data, fine = written[name]
        read = datasets.cifar100(tmp_path, train)
        assert len(read) == len(fine) and read.targets == fine
        image, label = read[2]
        assert label == fine[2]
        expected = data[2].reshape(3, 32, 32).transpose(1, 2, 0)
        assert np.array_equal(np.asarray(image), expected)


def test_imagenet16_120_keeps_the_first_120_classes_in_order(tmp_path):
    written = write_imagenet16(tmp_path)
    train = imagenet16.imagenet16(tmp_path, True)
    data = np.concatenate([written[n][0] for n in imagenet16.TRAIN_FILES])
    labels = np.concatenate([written[n][1] for n in imagenet16.TRAIN_FILES])
    kept = np.flatnonzero(labels <= 120)
    assert list(kept[:2]) == [0, 2]  # 120 is kept, 121 is not
    assert len(train) == len(kept) and train.targets == (labels[kept] - 1).tolist()
    for position, index in ((0, kept[0]), (len(kept) - 1, kept[-1])):
        image, label = train[position]
        assert image.size == (16, 16) and label == labels[index] - 1
        assert np.array_equal(np.asarray(image), data[index].reshape(3, 16, 16).transpose(1, 2, 0))
    valid_labels = np.asarray(written["val_data"][1])
    assert (
        imagenet16.imagenet16(tmp_path, False).targets
        == (valid_labels[valid_labels <= 120] - 1).tolist()
    )


def test_the_registry_describes_them_with_the_authors_figures(tmp_path):
    write_cifar100(tmp_path)
    write_imagenet16(tmp_path)
    cifar100, in16 = specs.spec("cifar100"), specs.spec("imagenet16_120")
    # xautodl/datasets/get_dataset_with_transform.py: the figures over 255.
    assert cifar100.mean == tuple(v / 255 for v in (129.3, 124.1, 112.4))
    assert cifar100.std == tuple(v / 255 for v in (68.2, 65.4, 70.4))
    assert in16.mean == tuple(v / 255 for v in (122.68, 116.66, 104.01))
    assert in16.std == tuple(v / 255 for v in (63.22, 61.26, 65.09))
    assert (cifar100.num_classes, cifar100.image_size) == (100, (32, 32))
    assert (in16.num_classes, in16.image_size, in16.label) == (120, (16, 16), "ImageNet16-120")
    crops = {}
    for data_spec in (cifar100, in16):
        pipeline = transforms.train_transform(data_spec).transforms
        (crop,) = [t for t in pipeline if isinstance(t, T.RandomCrop)]
        crops[data_spec.name] = crop.padding
        assert any(isinstance(t, T.RandomHorizontalFlip) for t in pipeline)
    assert crops == {"cifar100": 4, "imagenet16_120": 2}
    bundle = bundle_lib.build_datasets(name="imagenet16_120", root=str(tmp_path))
    image, label = bundle.test[0]
    assert image.shape == (3, 16, 16) and 0 <= label < 120


def test_missing_or_foreign_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="ImageNet16-120 was not found.*train_data_batch_1"):
        imagenet16.imagenet16(tmp_path, True)
    with pytest.raises(UserError, match="CIFAR-100 was not found.*cifar-100-python"):
        bundle_lib.build_datasets(name="cifar100", root=str(tmp_path))
    write_imagenet16(tmp_path)
    _py2_pickle({_Py2Str("data"): np.zeros((2, 100), np.uint8)}, tmp_path / "ImageNet16/val_data")
    with pytest.raises(UserError, match="val_data is not a downsampled ImageNet pickle"):
        imagenet16.imagenet16(tmp_path, False)


# ---- The splits ----------------------------------------------------------------------------
def test_cifar10_halves_are_the_benchmarks():
    train, valid = nb201_splits.cifar10_halves()
    # What exps/NAS-Bench-201/main.py asserts of its draw, and the hashes of cifar-split.txt's.
    assert (train[0], train[10], train[111], valid[0], valid[10], valid[111]) == (
        0,
        26,
        203,
        1,
        18,
        242,
    )
    assert _digest(train) == "b32573c51d975768a11c0d1540e625040790e2287a603c857413bd78ca68eb94"
    assert _digest(valid) == "fe150dfa5a16fd2cab96300e44d12835a5427d45b6aa3dc7f039b0df1539f5ce"


@pytest.mark.parametrize(
    "name,head,xvalid,xtest",
    [
        (
            "cifar100",
            [1, 3, 4, 5, 8, 10, 13, 14, 15, 16],
            "156797fd0d0b32af68c9a5e76c8b320c65c129ad5abeed3d03d87d7dfd124923",
            "6dad6139c248a3ed8346c479821e4e410fb1d83026e9dc3a62fbebf8ce9859e1",
        ),
        (
            "imagenet16_120",
            [1, 2, 3, 6, 7, 8, 9, 12, 16, 18],
            "7859ce235eea793f3e17ad52becef181179998a1977f88e1870ee83b6a8769e6",
            "effac827470ee17228cbd31a3d5008976446f6d8d5a19f571fddd60d8972c5a4",
        ),
    ],
)
def test_test_halves_are_the_benchmarks(name, head, xvalid, xtest):
    valid, test = nb201_splits.test_halves(name)
    assert valid[:10] == head  # as xautodl/procedures/funcs_nasbench.py asserts
    assert (_digest(valid), _digest(test)) == (xvalid, xtest)


def test_cifar100_split_through_the_loader(tmp_path):
    write_cifar100(tmp_path, n_test=10_000)
    bundle = bundle_lib.build_datasets(name="cifar100", root=str(tmp_path), split="nb201")
    xvalid, xtest = nb201_splits.test_halves("cifar100")
    assert len(bundle.train) == 6 and (len(bundle.valid), len(bundle.test)) == (5000, 5000)
    for part, indices in ((bundle.valid, xvalid), (bundle.test, xtest)):
        part.dataset.transform = None  # the PIL images, to read their index
        assert [_index_of(part[k][0]) for k in (0, 1, 4999)] == [indices[k] for k in (0, 1, 4999)]


def test_imagenet16_split_through_the_loader(tmp_path):
    write_imagenet16(tmp_path, n_valid=6000)
    bundle = bundle_lib.build_datasets(name="imagenet16_120", root=str(tmp_path), split="nb201")
    xvalid, xtest = nb201_splits.test_halves("imagenet16_120")
    assert (len(bundle.valid), len(bundle.test)) == (3000, 3000)
    for part, indices in ((bundle.valid, xvalid), (bundle.test, xtest)):
        part.dataset.transform = None
        assert [_index_of(part[k][0]) for k in (0, 2999)] == [indices[0], indices[2999]]


def test_the_cifar10_split_trains_on_one_half_and_validates_on_the_other_untransformed():
    train = list(range(50_000))
    as_test = ["test-transformed"]
    split = nb201_splits.NB201_SPLITS["cifar10"]
    train_part, valid_part, test, augmented = split(
        "CIFAR-10", train, lambda: as_test, "the test set", None
    )
    halves = nb201_splits.cifar10_halves()
    assert train_part.indices == halves[0] and train_part.dataset is train
    assert valid_part.indices == halves[1] and valid_part.dataset is as_test
    assert test == "the test set"
    # A search's architecture half: the same images, augmented as the training half.
    assert augmented.indices == halves[1] and augmented.dataset is train


def test_the_cifar10_split_through_the_loader(tmp_path, monkeypatch):
    """The real reader and transforms, on a 15-image CIFAR-10 drawn the benchmark's way."""
    written = write_cifar10(tmp_path)  # 3 images a batch: 15 training images
    monkeypatch.setattr(nb201_splits, "CIFAR10_TRAIN_IMAGES", 15)
    train_idx, valid_idx = nb201_splits.cifar10_halves()
    bundle = bundle_lib.build_datasets(name="cifar10", root=str(tmp_path), split="nb201")
    assert (bundle.train.indices, bundle.valid.indices) == (train_idx, valid_idx)
    assert len(bundle.test) == 3
    train_steps = [type(t) for t in bundle.train.dataset.transform.transforms]
    valid_steps = [type(t) for t in bundle.valid.dataset.transform.transforms]
    assert T.RandomCrop in train_steps and valid_steps == [T.ToTensor, T.Normalize]
    labels = [v for n in ("data_batch_1", "data_batch_2", "data_batch_3") for v in written[n][1]]
    labels += [v for n in ("data_batch_4", "data_batch_5") for v in written[n][1]]
    assert [bundle.valid[k][1] for k in range(len(valid_idx))] == [labels[i] for i in valid_idx]


def test_a_split_of_other_files_or_another_dataset_is_refused(tmp_path):
    write_cifar10(tmp_path)  # 15 training images, not 50,000
    with pytest.raises(UserError, match="50,000 images, but the one read has 15"):
        bundle_lib.build_datasets(name="cifar10", root=str(tmp_path), split="nb201")
    with pytest.raises(UserError, match="NAS-Bench-201 has no split of digits"):
        bundle_lib.build_datasets(name="digits", split="nb201")


# ---- The experiments -----------------------------------------------------------------------
def test_the_protocol_is_the_authors(tmp_path):
    runner._parse_config([experiments.experiment_path("nb201/train_cifar10")], [])
    assert [gin.query_parameter(k) for k in ("%EPOCHS", "%BATCH_SIZE")] == [200, 256]
    assert [gin.query_parameter(f"NB201Network.{k}") for k in ("C", "N")] == [16, 5]
    configured = runner.configure(
        "nb201/train_cifar10", ["EPOCHS = 200", "BATCH_SIZE = 256"], True, str(tmp_path)
    )
    job = runner.build_checked(configured, seed=0, data_root=None)
    group = job.optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)
    assert job.params.grad_clip is None and job.params.drop_path_prob == 0.0
    assert job.train_loader.drop_last is False and job.train_loader.batch_size == 256
    lrs = []
    for _ in range(200):
        lrs.append(job.optimizer.param_groups[0]["lr"])
        job.optimizer.step()
        job.scheduler.step()
    # xautodl's CosineAnnealingLR (epochs 0, 1, 2, 50, 100, 150, 199); torch's recursive cosine
    # rounds differently in the last bits.
    theirs = [0.1, 0.09999383162408304, 0.09997532801828658, 0.08535533905932738, 0.05]
    theirs += [0.014644660940672627, 6.168375916970615e-06]
    ours = [lrs[e] for e in (0, 1, 2, 50, 100, 150, 199)]
    assert ours == pytest.approx(theirs, rel=1e-12, abs=0)
    # Their CIFAR-10 normalisation (the figures over 255), not the dataset's usual one.
    mean = [v / 255 for v in (125.3, 123.0, 113.9)]
    assert list(gin.query_parameter("build_datasets.mean")) == mean


@pytest.mark.parametrize(
    "name,shape,classes",
    [
        ("nb201/train_cifar10", (3, 32, 32), 10),
        ("nb201/train_cifar100", (3, 32, 32), 100),
        ("nb201/train_imagenet16", (3, 16, 16), 120),
    ],
)
def test_each_experiment_runs_with_smoke_and_records_its_figures(name, shape, classes, tmp_path):
    configured = runner.configure(name, [], True, str(tmp_path))
    job = runner.build_checked(configured, seed=0, data_root=None)
    assert job.bundle.spec.image_shape == shape and job.network.classifier.out_features == classes
    assert job.bundle.valid is not None
    results = tmp_path / "results"
    assert cli.main(["run", name, "--smoke", "--results", str(results)]) == 0
    (run_json,) = (results / "runs").rglob("run.json")
    info = json.loads(run_json.read_text())
    assert info["status"] == "completed"
    assert info["genotype"]["source"] == "nb201_arch"
    assert info["genotype"]["genotype"] == gin.query_parameter("%GENOTYPE")
    final = info["final"]
    for key in ("test_error_top1", "valid_acc", "best_valid_acc"):
        assert 0.0 <= final[key] <= 100.0
    assert final["best_epoch"] in (1, 2) and final["params_m"] > 0
    lines = (run_json.parent / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["valid_acc"] == final["valid_acc"]
    assert 100.0 - records[-1]["test_acc"] == final["test_error_top1"]
    assert "drop_path_prob" not in records[-1]  # the network has none


def test_a_network_without_drop_path_or_a_second_validation_set_is_refused(tmp_path):
    for binding, message in (
        ("train.drop_path_prob = 0.2", "NB201Network has no drop path"),
        ("train.valid_portion = 0.5", "bind only one"),
    ):
        configured = runner.configure("nb201/train_cifar100", [binding], True, str(tmp_path))
        with pytest.raises(UserError, match=message):
            runner.build_checked(configured, seed=0, data_root=None)


def test_a_malformed_cell_string_is_a_user_error(tmp_path, capsys):
    code = cli.main(
        [
            "run",
            "nb201/train_cifar10",
            "--smoke",
            "--results",
            str(tmp_path),
            "--gin_param",
            "GENOTYPE = '|nor_conv_3x3~0|+|conv~1|'",
        ]
    )
    assert code == 2 and "is not a NAS-Bench-201 arch string" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "runs")
