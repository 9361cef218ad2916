"""Tests for sharpdarts.data: real on-disk formats written here, no network."""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
import urllib.error

import gin
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import datasets, loaders, specs, transforms
from sharpdarts.errors import UserError

# ---------------------------------------------------------------------------------------------
# Writers of the real on-disk formats
# ---------------------------------------------------------------------------------------------


class _Py2Str(str):
    """A string to pickle as a Python 2 ``str``, as in the official CIFAR-10 pickles."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table is open
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: _Py2Str) -> None:
        raw = obj.encode("latin1")
        assert len(raw) < 256
        self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2_str


def _py2_pickle(obj: object, path: os.PathLike) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar10(root: os.PathLike, per_batch: int = 3, seed: int = 0) -> dict[str, tuple]:
    """Writes CIFAR-10's python version (cifar-10-batches-py/) with a few images per batch.

    Returns {batch name: (data N x 3072 uint8, labels)}.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    written = {}
    for name in CIFAR_BATCHES:
        pixels = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        _py2_pickle(
            {
                _Py2Str("batch_label"): _Py2Str(f"{name} of 5"),
                _Py2Str("labels"): labels,
                _Py2Str("data"): pixels,
                _Py2Str("filenames"): [_Py2Str(f"img_{i}.png") for i in range(per_batch)],
            },
            os.path.join(folder, name),
        )
        written[name] = (pixels, labels)
    _py2_pickle(
        {
            _Py2Str("num_cases_per_batch"): 10000,
            _Py2Str("label_names"): [_Py2Str(c) for c in CIFAR_CLASSES],
            _Py2Str("num_vis"): 3072,
        },
        os.path.join(folder, "batches.meta"),
    )
    return written


def write_cifar10_1(root: os.PathLike, n: int = 5, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    folder = os.path.join(root, "cifar10_1")
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "cifar10.1_v6_data.npy"), images)
    np.save(os.path.join(folder, "cifar10.1_v6_labels.npy"), labels)
    return images, labels


def write_imagenet(root: os.PathLike) -> None:
    """Two classes, one PNG each in train/ and val/, of sizes other than 224."""
    rng = np.random.default_rng(2)
    for split, size in (("train", (300, 260)), ("val", (280, 320))):
        for cls in ("n01440764", "n01443537"):
            folder = os.path.join(root, "imagenet", split, cls)
            os.makedirs(folder)
            pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{cls}_0.png"))


def write_mnist(root: os.PathLike, n: int = 4) -> dict[str, tuple]:
    """MNIST's idx files (uncompressed) in MNIST/raw/."""
    rng = np.random.default_rng(3)
    folder = os.path.join(root, "MNIST", "raw")
    os.makedirs(folder)
    written = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.tobytes())
        written[prefix] = (images, labels)
    return written


# ---------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------


def test_specs_and_unknown_name():
    assert specs.spec("cifar10").image_size == (32, 32)
    assert specs.spec("cifar10_1").mean == specs.spec("cifar10").mean
    imagenet = specs.spec("imagenet")
    assert (imagenet.image_size, imagenet.num_classes, imagenet.channels) == ((224, 224), 1000, 3)
    assert specs.spec("digits").image_shape == (1, 8, 8)
    with pytest.raises(KeyError) as info:
        specs.spec("cifar")
    assert isinstance(info.value, UserError)
    assert "'cifar10'" in str(info.value) and not str(info.value).startswith('"')


# ---------------------------------------------------------------------------------------------
# Real formats
# ---------------------------------------------------------------------------------------------


def test_written_cifar_pickles_have_the_official_bytes_keys(tmp_path):
    write_cifar10(tmp_path, per_batch=1)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")  # as the CIFAR-10 web page reads them
    assert {b"data", b"labels"} <= set(entry)
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (1, 3072)


def test_cifar10_reads_the_real_format(tmp_path):
    written = write_cifar10(tmp_path)
    train = datasets.cifar10(tmp_path, train=True)
    test = datasets.cifar10(str(tmp_path), train=False)
    assert len(train) == 15 and len(test) == 3
    expected = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    expected = expected.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(train.data, expected)
    assert train.targets == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert test.targets == written["test_batch"][1]
    img, label = test[1]
    np.testing.assert_array_equal(
        np.asarray(img), written["test_batch"][0][1].reshape(3, 32, 32).transpose(1, 2, 0)
    )
    assert label == written["test_batch"][1][1]
    assert train.classes == CIFAR_CLASSES


def test_cifar10_1_reads_npy_pair(tmp_path):
    images, labels = write_cifar10_1(tmp_path)
    ds = datasets.cifar10_1(tmp_path, transform=transforms.test_transform(specs.spec("cifar10")))
    assert len(ds) == 5
    x, y = ds[2]
    assert x.shape == (3, 32, 32) and y == labels[2]
    raw = datasets.cifar10_1(tmp_path)
    np.testing.assert_array_equal(np.asarray(raw[4][0]), images[4])


def test_cifar10_1_rejects_wrong_arrays(tmp_path):
    write_cifar10_1(tmp_path)
    np.save(tmp_path / "cifar10_1" / "cifar10.1_v6_data.npy", np.zeros((5, 32, 32), np.uint8))
    with pytest.raises(UserError, match="32 x 32 x 3"):
        datasets.cifar10_1(tmp_path)


def test_imagenet_folders_with_real_size_transforms(tmp_path):
    write_imagenet(tmp_path)
    spec = specs.spec("imagenet")
    train_tf = transforms.train_transform(spec, cutout_length=112, autoaugment=True)
    assert any(
        isinstance(t, T.AutoAugment) and t.policy == T.AutoAugmentPolicy.IMAGENET
        for t in train_tf.transforms
    )
    train = datasets.imagenet(tmp_path, train=True, transform=train_tf)
    test = datasets.imagenet(tmp_path, train=False, transform=transforms.test_transform(spec))
    assert train.classes == ["n01440764", "n01443537"] and len(train) == 2 and len(test) == 2
    x, y = train[1]
    assert x.shape == (3, 224, 224) and y == 1
    x, y = test[0]
    assert x.shape == (3, 224, 224) and y == 0


def test_mnist_reads_idx_files(tmp_path):
    written = write_mnist(tmp_path)
    ds = datasets.mnist(tmp_path, train=False)
    img, label = ds[3]
    np.testing.assert_array_equal(np.asarray(img), written["t10k"][0][3])
    assert label == written["t10k"][1][3]


# ---------------------------------------------------------------------------------------------
# Missing data and downloads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "imagenet", "mnist", "svhn"])
def test_missing_data_is_a_user_error_naming_folder_and_hint(tmp_path, name):
    with pytest.raises(UserError) as info:
        bundle_lib.build_datasets(name, root=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message
    assert "\n" not in message.split("  In call to configurable")[0].strip()
    if name == "imagenet":
        assert "image-net.org" in message
    else:
        assert "download=True" in message and "$SHARPDARTS_DATA" in message


def test_partial_cifar10_names_the_missing_files(tmp_path):
    write_cifar10(tmp_path, per_batch=1)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(UserError, match="data_batch_3"):
        datasets.cifar10(tmp_path)


def test_cifar10_download_failure_is_a_user_error(tmp_path, monkeypatch):
    calls = []

    def fail(url, root, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets, "download_and_extract_archive", fail)
    with pytest.raises(UserError, match="no network"):
        datasets.cifar10(tmp_path, download=True)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]


def test_cifar10_download_path_then_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(
        datasets,
        "download_and_extract_archive",
        lambda url, root, **kwargs: write_cifar10(root, per_batch=2),
    )
    assert len(datasets.cifar10(tmp_path, train=False, download=True)) == 2


def test_cifar10_1_download_is_attempted_and_failure_is_a_user_error(tmp_path, monkeypatch):
    calls = []

    def fail(url, root, filename=None, md5=None):
        calls.append((url, root, filename))
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(datasets, "download_url", fail)
    with pytest.raises(UserError, match="offline"):
        datasets.cifar10_1(tmp_path, download=True)
    assert calls == [
        (
            "https://raw.githubusercontent.com/modestyachts/CIFAR-10.1/master/datasets/"
            "cifar10.1_v6_data.npy",
            os.path.join(tmp_path, "cifar10_1"),
            "cifar10.1_v6_data.npy",
        )
    ]


def test_mnist_download_failure_is_a_user_error(tmp_path, monkeypatch):
    import torchvision

    def fail(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail)
    with pytest.raises(UserError, match="Error downloading"):
        datasets.mnist(tmp_path, download=True)


# ---------------------------------------------------------------------------------------------
# build_datasets
# ---------------------------------------------------------------------------------------------


def test_build_cifar10_with_and_without_cifar10_1(tmp_path, caplog, monkeypatch):
    write_cifar10(tmp_path, per_batch=2)
    monkeypatch.setenv("SHARPDARTS_DATA", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="sharpdarts.engine.data"):
        bundle = bundle_lib.build_datasets("cifar10", root=None, cutout_length=16, autoaugment=True)
    assert bundle.extra_tests == {}
    assert "CIFAR-10.1" in caplog.text
    x, _ = bundle.train[0]
    assert x.shape == (3, 32, 32) and bundle.spec.num_classes == 10
    assert len(bundle.train) == 10 and len(bundle.test) == 2

    write_cifar10_1(tmp_path)
    bundle = bundle_lib.build_datasets("cifar10", root=str(tmp_path))
    assert len(bundle.extra_tests["cifar10_1"]) == 5
    assert bundle.extra_tests["cifar10_1"][0][0].shape == (3, 32, 32)


def test_build_datasets_through_gin():
    gin.clear_config()
    try:
        gin.parse_config(
            [
                "build_datasets.name = 'synthetic'",
                "build_datasets.synthetic_size = (20, 8)",
                "build_datasets.synthetic_shape = (1, 12, 10)",
                "build_datasets.synthetic_classes = 3",
                "build_datasets.cutout_length = 4",
            ]
        )
        bundle = bundle_lib.build_datasets()
    finally:
        gin.clear_config()
    assert (len(bundle.train), len(bundle.test)) == (20, 8)
    assert bundle.spec.image_shape == (1, 12, 10) and bundle.spec.num_classes == 3
    assert bundle.train[0][0].shape == (1, 12, 10)


def test_build_datasets_rejects_unknown_and_test_only_names():
    with pytest.raises(UserError, match="cifar10"):
        bundle_lib.build_datasets("cifar11")
    with pytest.raises(UserError, match="test set only"):
        bundle_lib.build_datasets("cifar10_1")


def test_a_registered_dataset_description_is_all_build_datasets_needs(tmp_path):
    """Adding a dataset is one description: shape, statistics, reader and extra test sets."""
    made = []

    def build(root, train, transform, download, seed):
        made.append((root, train, download, seed))
        return datasets.SyntheticDataset(
            6 if train else 2,
            (1, 4, 4),
            2,
            seed=seed,
            sample_offset=0 if train else 6,
            transform=transform,
        )

    def build_extra(root, train, transform, download, seed):
        raise UserError("the extra test set is not there")

    tiny = specs.DatasetSpec(
        "tiny",
        (4, 4),
        1,
        2,
        (0.0,),
        (1.0,),
        build,
        "Tiny",
        tensor_images=True,
        extra_tests=("tiny_extra",),
    )
    extra = specs.DatasetSpec(
        "tiny_extra",
        (4, 4),
        1,
        2,
        (0.0,),
        (1.0,),
        build_extra,
        "Tiny-X",
        tensor_images=True,
        test_set_of="tiny",
    )
    specs.DATASETS.register("tiny")(tiny)
    specs.DATASETS.register("tiny_extra")(extra)
    try:
        bundle = bundle_lib.build_datasets("tiny", root=str(tmp_path), download=True, seed=4)
        assert made == [(str(tmp_path), True, True, 4), (str(tmp_path), False, True, 4)]
        assert (len(bundle.train), len(bundle.test), bundle.extra_tests) == (6, 2, {})
        assert bundle.spec is tiny and bundle.train[0][0].shape == (1, 4, 4)
        with pytest.raises(UserError, match="test set only.*'tiny'.*Tiny-X"):
            bundle_lib.build_datasets("tiny_extra")
    finally:
        del specs.DATASETS["tiny"], specs.DATASETS["tiny_extra"]


def test_descriptions_choose_the_pipelines():
    assert transforms.autoaugment_policy(specs.spec("svhn")) == T.AutoAugmentPolicy.SVHN
    assert transforms.autoaugment_policy(specs.spec("imagenet")) == T.AutoAugmentPolicy.IMAGENET
    assert transforms.autoaugment_policy(specs.spec("mnist")) == T.AutoAugmentPolicy.CIFAR10
    assert specs.spec("cifar10").extra_tests == ("cifar10_1",)


def test_make_loader_is_a_plain_function():
    """Its arguments all come from the engine: a gin binding of it could never take effect."""
    assert not hasattr(loaders.make_loader, "__wrapped__")
    with pytest.raises(ValueError):
        gin.parse_config("make_loader.workers = 2")
    assert hasattr(bundle_lib.build_datasets, "__wrapped__")  # still gin-configurable


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [16, 5])
def test_cutout_zeroes_a_clipped_square(length):
    cutout = transforms.Cutout(length)
    size = 32
    seen_interior = seen_clipped = False
    for seed in range(60):
        img = torch.rand(3, size, size) + 1.0  # no zeros of its own
        torch.manual_seed(seed)  # the centre Cutout will draw
        cy, cx = int(torch.randint(size, ())), int(torch.randint(size, ()))
        torch.manual_seed(seed)
        out = cutout(img)
        y0, x0 = cy - length // 2, cx - length // 2
        expected = torch.ones(size, size, dtype=torch.bool)
        expected[max(y0, 0) : max(y0 + length, 0), max(x0, 0) : max(x0 + length, 0)] = False
        for c in range(3):
            assert torch.equal(out[c] != 0, expected)
        assert torch.equal(out[:, expected], img[:, expected])
        assert bool((img != 0).all())  # the input is left as it was
        zeros = int((~expected).sum())
        interior = 0 <= y0 and y0 + length <= size and 0 <= x0 and x0 + length <= size
        if interior:
            assert zeros == length * length
            seen_interior = True
        else:
            assert zeros < length * length
            seen_clipped = True
    assert seen_interior and seen_clipped


def test_cutout_count_and_zero_length():
    img = torch.ones(1, 64, 64)
    torch.manual_seed(0)
    assert (transforms.Cutout(4, count=3)(img) == 0).sum() > 16
    assert torch.equal(transforms.Cutout(0)(img), img)


def test_cifar_train_pipeline_order_and_autoaugment():
    spec = specs.spec("cifar10")
    tf = transforms.train_transform(spec, cutout_length=16, autoaugment=True)
    kinds = [type(t) for t in tf.transforms]
    assert kinds == [
        T.RandomCrop,
        T.RandomHorizontalFlip,
        T.AutoAugment,
        T.ToTensor,
        T.Normalize,
        transforms.Cutout,
    ]
    crop = tf.transforms[0]
    assert (crop.size, crop.padding, crop.fill) == ((32, 32), 4, 128)
    assert tf.transforms[2].policy == T.AutoAugmentPolicy.CIFAR10
    plain = transforms.train_transform(spec)
    assert plain.transforms[0].fill == 0
    assert [type(t) for t in plain.transforms] == [
        T.RandomCrop,
        T.RandomHorizontalFlip,
        T.ToTensor,
        T.Normalize,
    ]
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    torch.manual_seed(0)
    for _ in range(5):
        assert tf(img).shape == (3, 32, 32)
    assert transforms.test_transform(spec)(img).shape == (3, 32, 32)


def test_tensor_datasets_only_normalize_and_cutout():
    tf = transforms.train_transform(specs.spec("digits"), cutout_length=2, autoaugment=True)
    assert [type(t) for t in tf.transforms] == [T.Normalize, transforms.Cutout]
    assert [type(t) for t in transforms.test_transform(specs.spec("digits")).transforms] == [
        T.Normalize
    ]


# ---------------------------------------------------------------------------------------------
# Offline datasets
# ---------------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_learnable():
    a = datasets.SyntheticDataset(60, (3, 16, 16), 3, seed=7)
    b = datasets.SyntheticDataset(60, (3, 16, 16), 3, seed=7)
    c = datasets.SyntheticDataset(60, (3, 16, 16), 3, seed=8)
    assert a.targets == b.targets
    assert torch.equal(a[5][0], b[5][0]) and not torch.equal(a[5][0], c[5][0])
    assert sorted(a.targets.count(k) for k in range(3)) == [20, 20, 20]

    # Class means differ, and a nearest-class-mean rule learnt on the training images
    # classifies a test set (same seed, later images) well.
    xs = torch.stack([a[i][0] for i in range(len(a))])
    ys = torch.tensor(a.targets)
    means = torch.stack([xs[ys == k].mean(0) for k in range(3)])
    assert min((means[i] - means[j]).norm() for i in range(3) for j in range(i)) > 1.0
    test = datasets.SyntheticDataset(30, (3, 16, 16), 3, seed=7, sample_offset=60)
    assert not torch.equal(test[0][0], a[0][0])
    tx = torch.stack([test[i][0] for i in range(len(test))])
    predicted = torch.cdist(tx.flatten(1), means.flatten(1)).argmin(1)
    assert (predicted == torch.tensor(test.targets)).float().mean() > 0.9


def test_digits_split_and_range():
    train = datasets.digits(train=True)
    test = datasets.digits(train=False)
    assert (len(train), len(test)) == (1437, 360)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    assert float(train.data.min()) == 0.0 and float(train.data.max()) == 1.0
    assert torch.equal(datasets.digits(train=False).data, test.data)  # deterministic
    assert not torch.equal(datasets.digits(train=False, seed=1).data, test.data)


# ---------------------------------------------------------------------------------------------
# Search split and loaders
# ---------------------------------------------------------------------------------------------


def test_search_split_portions():
    assert loaders.search_split(range(10)) == (list(range(5)), list(range(5, 10)))
    weights, arch = loaders.search_split(range(7), 0.5)
    assert (len(weights), len(arch)) == (3, 4)
    assert loaders.search_split(range(10), 1.0) == (list(range(10)), [])
    with pytest.raises(UserError):
        loaders.search_split(range(10), 0.0)


class _IndexDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> int:
        return index


@pytest.mark.parametrize("workers", [0, 1])
def test_make_loader_with_indices_yields_only_those(workers):
    indices = [1, 3, 5, 7, 11]

    def epoch(loader):
        return [int(i) for batch in loader for i in batch]

    loader = loaders.make_loader(_IndexDataset(), 2, indices=indices, seed=3, workers=workers)
    first, second = epoch(loader), epoch(loader)
    assert sorted(first) == indices and sorted(second) == indices
    assert first != second or first != sorted(first)  # sampled randomly, not in order
    again = loaders.make_loader(_IndexDataset(), 2, indices=indices, seed=3, workers=workers)
    assert epoch(again) == first  # same seed, same order
    assert not loader.pin_memory or torch.cuda.is_available()


def test_make_loader_plain_and_distributed(tmp_path):
    loader = loaders.make_loader(_IndexDataset(), 8, drop_last=True)
    assert [len(b) for b in loader] == [8, 8]
    assert [int(i) for b in loader for i in b] == list(range(16))  # in order unless shuffled

    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        loader = loaders.make_loader(
            _IndexDataset(), 3, indices=[2, 4, 6, 8], distributed=True, seed=0
        )
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        # The sampler shards the subset: its positions map back to the chosen items only.
        assert sorted(int(i) for b in loader for i in b) == [2, 4, 6, 8]
    finally:
        dist.destroy_process_group()
