"""Every dataset described once: the ``DATASETS`` registry of ``DatasetSpec`` descriptions.

A description says what the model needs to know (image size, channels, classes), how to
normalise and augment the images (mean and std, crop style, AutoAugment policy), how to read
them (``builder``) and which further test sets go with it (CIFAR-10 is also evaluated on
CIFAR-10.1). Adding a dataset is one ``DATASETS.register(name)(DatasetSpec(...))``: the
transforms, ``build_datasets`` and the command line read everything else from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from sharpdarts.engine.data import corpus, datasets, imagenet16, pydoc_corpus
from sharpdarts.errors import UserError
from sharpdarts.registry import Registry, unknown_name

# builder(root, train, transform, download, seed) -> the train (or test) set.
Builder = Callable[[str, bool, Any, bool, int], Dataset]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset's description.

    Attributes:
        name: The dataset's name, a key of ``DATASETS``.
        image_size: (height, width) of the images the network sees.
        channels: Number of image channels.
        num_classes: Number of classes.
        mean: Per-channel mean of the training images, in [0, 1] units.
        std: Per-channel standard deviation of the training images, in [0, 1] units.
        builder: Reads the training (``train=True``) or test set, see ``Builder``.
        label: The name people use, for messages ("CIFAR-10.1").
        crop: ``'padded'`` (random crop of the padded image, CIFAR-style), ``'resized'``
            (random resized crop for training, resize and centre crop for testing: ImageNet).
        crop_padding: Pixels of padding on each side before a ``'padded'`` crop.
        tensor_images: Items are float tensors already (no PIL image, crop, flip or
            AutoAugment).
        autoaugment_policy: The name of torchvision's learned AutoAugment policy.
        extra_tests: Names of further test sets evaluated with this dataset's models.
        test_set_of: For a test-only set, the dataset it belongs to (it has no training set).
        modality: ``'image'``, or ``'text'`` for a language-model corpus (its builder gives
            a :class:`~sharpdarts.engine.data.corpus.Corpus` for both splits).
    """

    name: str
    image_size: tuple[int, int]
    channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    builder: Builder | None = dataclasses.field(default=None, compare=False, repr=False)
    label: str = ""
    crop: str = "padded"
    crop_padding: int = 4
    tensor_images: bool = False
    autoaugment_policy: str = "CIFAR10"
    extra_tests: tuple[str, ...] = ()
    test_set_of: str | None = None
    modality: str = "image"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image tensor."""
        return (self.channels, *self.image_size)

    def build(
        self, root: str, train: bool, transform: Any = None, download: bool = False, seed: int = 0
    ) -> Dataset:
        """The training (``train=True``) or test set, read by ``builder``."""
        if self.builder is None:
            raise UserError(f"Dataset {self.name!r} has no builder to read it with.")
        return self.builder(root, train, transform, download, seed)


class UnknownDatasetError(KeyError, UserError):
    """An unknown dataset name: a ``KeyError`` for code, a ``UserError`` for the CLI."""

    def __str__(self) -> str:
        # KeyError would print the message quoted, like a key.
        return str(self.args[0]) if self.args else ""


class DatasetRegistry(Registry[DatasetSpec]):
    """The registry of dataset descriptions; an unknown name is an ``UnknownDatasetError``."""

    def error(self, name: object) -> UnknownDatasetError:
        known = ", ".join(repr(n) for n in sorted(self))
        message = unknown_name("dataset", name, self, cutoff=0.5, hint=f"Known datasets: {known}.")
        return UnknownDatasetError(str(message))


DATASETS = DatasetRegistry("dataset", "DATASETS")


def _files(reader: Callable[..., Dataset]) -> Builder:
    """A builder for a reader called as ``reader(root, train, transform, download=...)``."""

    def build(root, train, transform, download, seed):
        return reader(root, train, transform, download=download)

    return build


def _imagenet(root, train, transform, download, seed):
    return datasets.imagenet(root, train, transform)  # never downloadable


def _cifar10_1(root, train, transform, download, seed):
    return datasets.cifar10_1(root, transform, download=download)  # a test set only


def _imagenet16_120(root, train, transform, download, seed):
    return imagenet16.imagenet16(root, train, transform, num_classes=120)  # never downloadable


def _digits(root, train, transform, download, seed):
    return datasets.digits(train, transform, seed=seed)  # shipped with scikit-learn


_CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
_CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)

for _spec in (
    DatasetSpec(
        "cifar10",
        (32, 32),
        3,
        10,
        _CIFAR10_MEAN,
        _CIFAR10_STD,
        _files(datasets.cifar10),
        "CIFAR-10",
        extra_tests=("cifar10_1",),
    ),
    # CIFAR-10.1 is a new test set for models trained on CIFAR-10: same statistics.
    DatasetSpec(
        "cifar10_1",
        (32, 32),
        3,
        10,
        _CIFAR10_MEAN,
        _CIFAR10_STD,
        _cifar10_1,
        "CIFAR-10.1",
        test_set_of="cifar10",
    ),
    DatasetSpec(
        "imagenet",
        (224, 224),
        3,
        1000,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        _imagenet,
        "ImageNet",
        crop="resized",
        autoaugment_policy="IMAGENET",
    ),
    # NAS-Bench-201's datasets, with its authors' statistics (xautodl/datasets/
    # get_dataset_with_transform.py: the figures / 255) and crops (padding 2 for 16 x 16).
    DatasetSpec(
        "cifar100",
        (32, 32),
        3,
        100,
        tuple(v / 255 for v in (129.3, 124.1, 112.4)),
        tuple(v / 255 for v in (68.2, 65.4, 70.4)),
        _files(datasets.cifar100),
        "CIFAR-100",
    ),
    DatasetSpec(
        "imagenet16_120",
        (16, 16),
        3,
        120,
        tuple(v / 255 for v in (122.68, 116.66, 104.01)),
        tuple(v / 255 for v in (63.22, 61.26, 65.09)),
        _imagenet16_120,
        "ImageNet16-120",
        crop_padding=2,
    ),
    DatasetSpec("mnist", (28, 28), 1, 10, (0.1307,), (0.3081,), _files(datasets.mnist), "MNIST"),
    DatasetSpec(
        "fashion_mnist",
        (28, 28),
        1,
        10,
        (0.2860405969887955,),
        (0.35302424825650003,),
        _files(datasets.fashion_mnist),
        "Fashion-MNIST",
    ),
    DatasetSpec(
        "svhn",
        (32, 32),
        3,
        10,
        (0.4376821, 0.4437697, 0.47280442),
        (0.19803012, 0.20101562, 0.19703614),
        _files(datasets.svhn),
        "SVHN",
        autoaugment_policy="SVHN",
    ),
    # scikit-learn's 8x8 digits scaled to [0, 1]; statistics over all 1797 images.
    DatasetSpec(
        "digits", (8, 8), 1, 10, (0.3052603,), (0.3760492,), _digits, "digits", tensor_images=True
    ),
):
    DATASETS.register(_spec.name)(_spec)


def synthetic_spec(
    image_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    sizes: Sequence[int] = (256, 64),
) -> DatasetSpec:
    """The description of a synthetic dataset of the given image shape (C, H, W), class count
    and (train, test) image counts.

    Synthetic images are already centred and scaled, so normalising leaves them as they are.
    The test images continue the training images' stream (same class patterns, new images).
    """
    channels, height, width = (int(v) for v in image_shape)
    shape = (channels, height, width)
    n_train, n_test = (int(v) for v in sizes)

    def build(root, train, transform, download, seed):
        return datasets.SyntheticDataset(
            n_train if train else n_test,
            image_shape=shape,
            num_classes=int(num_classes),
            seed=seed,
            sample_offset=0 if train else n_train,
            transform=transform,
        )

    return DatasetSpec(
        "synthetic",
        (height, width),
        channels,
        int(num_classes),
        (0.0,) * channels,
        (1.0,) * channels,
        build,
        "synthetic",
        tensor_images=True,
    )


DATASETS.register("synthetic")(synthetic_spec())


def _text(name: str, builder: Builder, label: str, vocabulary: int = 0) -> DatasetSpec:
    # A language model's classes are its vocabulary: the published corpora's sizes are known
    # (docs/facts/darts_rnn.md, section 1), so a model's size is known before any data is read.
    return DatasetSpec(
        name,
        (1, 1),
        1,
        vocabulary,
        (0.0,),
        (1.0,),
        builder,
        label,
        tensor_images=True,
        modality="text",
    )


for _spec in (
    _text("ptb", corpus.folder_builder("penn", "ptb"), "Penn Treebank", 10000),
    _text("wikitext2", corpus.folder_builder("wikitext-2", "wikitext2"), "WikiText-2", 33278),
    _text("synthetic_text", corpus.synthetic_builder, "synthetic text", 50),
    _text("pydoc", pydoc_corpus.builder, "Python documentation topics"),
):
    DATASETS.register(_spec.name)(_spec)


def spec(name: str) -> DatasetSpec:
    """Returns the description of a dataset.

    Args:
        name: A key of ``DATASETS``.

    Raises:
        UnknownDatasetError: (a ``KeyError`` and a ``UserError``) for an unknown name; the
            message lists close names and all known names.
    """
    return DATASETS[name]
