"""Datasets, their statistics, augmentation, the DARTS search split, and data loaders.

Read top to bottom:

1. ``DatasetSpec`` / ``SPECS`` / ``spec``: what the model needs to know about each dataset
   (image size, channels, classes) and the per-channel statistics used to normalise it.
2. Transforms: ``Cutout`` and the train and test pipelines of the original code
   (random crop with padding 4, horizontal flip, optional AutoAugment, normalise, cutout last).
3. Datasets: CIFAR-10, CIFAR-10.1, ImageNet, MNIST, Fashion-MNIST, SVHN through their real
   on-disk formats (downloading where the dataset allows it), plus two offline datasets that
   need no files: scikit-learn's 8x8 digits and a deterministic synthetic set for ``--smoke``.
4. ``build_datasets``: the one gin-configurable entry point the engine calls.
5. ``search_split`` and ``make_loader``: the DARTS weights/architecture split and loaders.

Files live under one data root (``--data``, ``$SHARPDARTS_DATA``, or ``data/``)::

    ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    ROOT/cifar10_1/cifar10.1_v6_data.npy, cifar10.1_v6_labels.npy
    ROOT/imagenet/train/<class>/*.JPEG, ROOT/imagenet/val/<class>/*.JPEG
    ROOT/MNIST/raw/..., ROOT/FashionMNIST/raw/..., ROOT/svhn/{train,test}_32x32.mat

A dataset that is missing (and not downloadable, or whose download fails) raises
``UserError`` naming the folder looked in and how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import random
from collections.abc import Callable, Sequence
from typing import Any

import gin
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, SubsetRandomSampler
from torchvision import transforms as T
from torchvision.datasets.utils import download_and_extract_archive, download_url

from sharpdarts.errors import UserError

logger = logging.getLogger(__name__)

Transform = Callable[[Any], Any]

DATA_ENV_VAR = "SHARPDARTS_DATA"
DEFAULT_ROOT = "data"


# --------------------------------------------------------------------------------------------
# 1. What each dataset looks like
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """The shape of a dataset's images, its class count and its normalisation statistics.

    Attributes:
        name: The dataset's name, a key of ``SPECS``.
        image_size: (height, width) of the images the network sees.
        channels: Number of image channels.
        num_classes: Number of classes.
        mean: Per-channel mean of the training images, in [0, 1] units.
        std: Per-channel standard deviation of the training images, in [0, 1] units.
    """

    name: str
    image_size: tuple[int, int]
    channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image tensor."""
        return (self.channels, *self.image_size)


_CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
_CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)

SPECS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("cifar10", (32, 32), 3, 10, _CIFAR10_MEAN, _CIFAR10_STD),
    # CIFAR-10.1 is a new test set for models trained on CIFAR-10: same statistics.
    "cifar10_1": DatasetSpec("cifar10_1", (32, 32), 3, 10, _CIFAR10_MEAN, _CIFAR10_STD),
    "imagenet": DatasetSpec(
        "imagenet", (224, 224), 3, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ),
    "mnist": DatasetSpec("mnist", (28, 28), 1, 10, (0.1307,), (0.3081,)),
    "fashion_mnist": DatasetSpec(
        "fashion_mnist", (28, 28), 1, 10, (0.2860405969887955,), (0.35302424825650003,)
    ),
    "svhn": DatasetSpec(
        "svhn",
        (32, 32),
        3,
        10,
        (0.4376821, 0.4437697, 0.47280442),
        (0.19803012, 0.20101562, 0.19703614),
    ),
    # scikit-learn's 8x8 digits scaled to [0, 1]; statistics over all 1797 images.
    "digits": DatasetSpec("digits", (8, 8), 1, 10, (0.3052603,), (0.3760492,)),
    # Synthetic images are already centred and scaled, so normalising leaves them as they are.
    # Shape and class count are set per call (see ``synthetic_spec``); this is the default.
    "synthetic": DatasetSpec("synthetic", (32, 32), 3, 10, (0.0,) * 3, (1.0,) * 3),
}

# Datasets whose items are float tensors already (no PIL image, no crop/flip/AutoAugment).
_TENSOR_DATASETS = frozenset({"digits", "synthetic"})


class UnknownDatasetError(KeyError, UserError):
    """An unknown dataset name: a ``KeyError`` for code, a ``UserError`` for the CLI."""

    def __str__(self) -> str:
        # KeyError would print the message quoted, like a key.
        return str(self.args[0]) if self.args else ""


def spec(name: str) -> DatasetSpec:
    """Returns the ``DatasetSpec`` of a dataset.

    Args:
        name: A key of ``SPECS``.

    Raises:
        UnknownDatasetError: (a ``KeyError`` and a ``UserError``) for an unknown name; the
            message lists close names and all known names.
    """
    if name in SPECS:
        return SPECS[name]
    close = difflib.get_close_matches(str(name), SPECS, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownDatasetError(
        f"Unknown dataset {name!r}.{hint} Known datasets: {', '.join(sorted(SPECS))}."
    )


def synthetic_spec(image_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10) -> DatasetSpec:
    """The spec of a synthetic dataset of the given image shape (C, H, W) and class count."""
    channels, height, width = (int(v) for v in image_shape)
    return DatasetSpec(
        "synthetic", (height, width), channels, int(num_classes), (0.0,) * channels,
        (1.0,) * channels,
    )


# --------------------------------------------------------------------------------------------
# 2. Transforms
# --------------------------------------------------------------------------------------------


class Cutout:
    """Zeroes square holes in a CHW image tensor (DeVries and Taylor 2017, as DARTS uses it).

    Each hole is centred on a pixel drawn uniformly from the image and clipped at the image
    borders, so a hole near an edge is smaller. All channels are zeroed; as in DARTS this runs
    after normalisation, so the holes hold the dataset mean. Randomness comes from torch's
    generator, which the loaders seed per worker.

    DARTS spans ``[c - length // 2, c + length // 2)``, which is ``length`` pixels for the even
    lengths used (16 for CIFAR, 112 for ImageNet); here a hole is always ``length`` pixels,
    ``[c - length // 2, c - length // 2 + length)``, also for odd lengths.

    Args:
        length: Side of each square hole in pixels; 0 disables cutout.
        count: Number of holes (they may overlap).
    """

    def __init__(self, length: int, count: int = 1) -> None:
        if length < 0 or count < 0:
            raise ValueError(f"Cutout length and count must be >= 0, got {length} and {count}")
        self.length = int(length)
        self.count = int(count)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Returns a copy of ``img`` (C x H x W) with the holes zeroed."""
        if self.length == 0 or self.count == 0:
            return img
        height, width = img.shape[-2:]
        mask = torch.ones((height, width), dtype=img.dtype, device=img.device)
        for _ in range(self.count):
            cy = int(torch.randint(height, ()).item())
            cx = int(torch.randint(width, ()).item())
            y0, x0 = cy - self.length // 2, cx - self.length // 2
            mask[max(y0, 0) : max(y0 + self.length, 0), max(x0, 0) : max(x0 + self.length, 0)] = 0
        return img * mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length={self.length}, count={self.count})"


def _autoaugment_policy(data_spec: DatasetSpec) -> T.AutoAugmentPolicy:
    """The learned AutoAugment policy that fits a dataset (CIFAR-10's unless one exists)."""
    if data_spec.name == "imagenet":
        return T.AutoAugmentPolicy.IMAGENET
    if data_spec.name == "svhn":
        return T.AutoAugmentPolicy.SVHN
    return T.AutoAugmentPolicy.CIFAR10


def train_transform(
    data_spec: DatasetSpec,
    cutout_length: int = 0,
    cutout_count: int = 1,
    autoaugment: bool = False,
    random_crop: bool = True,
    flip: bool = True,
) -> T.Compose:
    """The training augmentation pipeline of the original code.

    CIFAR-style datasets (PIL images): RandomCrop(size, padding 4), horizontal flip,
    AutoAugment, ToTensor, Normalize, Cutout. With AutoAugment the original pads with grey
    (fill 128) rather than black before cropping, as the AutoAugment authors did; without it
    the padding is black.

    ImageNet: RandomResizedCrop(224), horizontal flip, AutoAugment (ImageNet policy),
    ToTensor, Normalize, Cutout.

    Tensor datasets (digits, synthetic) are kept simple: Normalize and Cutout only; crop, flip
    and AutoAugment do not apply to them and are ignored.

    Args:
        data_spec: The dataset's spec.
        cutout_length: Cutout hole side in pixels; 0 for none (16 for CIFAR, 112 ImageNet).
        cutout_count: Number of cutout holes.
        autoaugment: Apply torchvision's AutoAugment with the dataset's learned policy.
        random_crop: Apply the random (resized) crop.
        flip: Apply the random horizontal flip.
    """
    steps: list[Transform] = []
    if data_spec.name in _TENSOR_DATASETS:
        if autoaugment:
            logger.info("AutoAugment does not apply to %s tensors; skipped.", data_spec.name)
    elif data_spec.name == "imagenet":
        if random_crop:
            steps.append(T.RandomResizedCrop(data_spec.image_size))
        else:
            steps += [T.Resize(_resize_size(data_spec)), T.CenterCrop(data_spec.image_size)]
    elif random_crop:
        steps.append(T.RandomCrop(data_spec.image_size, padding=4, fill=128 if autoaugment else 0))

    if data_spec.name not in _TENSOR_DATASETS:
        if flip:
            steps.append(T.RandomHorizontalFlip())
        if autoaugment:
            steps.append(T.AutoAugment(_autoaugment_policy(data_spec)))
        steps.append(T.ToTensor())
    steps.append(T.Normalize(data_spec.mean, data_spec.std))
    if cutout_length > 0 and cutout_count > 0:
        steps.append(Cutout(cutout_length, cutout_count))
    return T.Compose(steps)


def _resize_size(data_spec: DatasetSpec) -> int:
    """The shorter side an ImageNet image is resized to before the centre crop (256 for 224)."""
    return int(round(data_spec.image_size[0] * 256 / 224))


def test_transform(data_spec: DatasetSpec) -> T.Compose:
    """The evaluation pipeline: ToTensor and Normalize (ImageNet: Resize(256), CenterCrop(224)
    first; tensor datasets: Normalize only)."""
    steps: list[Transform] = []
    if data_spec.name == "imagenet":
        steps += [T.Resize(_resize_size(data_spec)), T.CenterCrop(data_spec.image_size)]
    if data_spec.name not in _TENSOR_DATASETS:
        steps.append(T.ToTensor())
    steps.append(T.Normalize(data_spec.mean, data_spec.std))
    return T.Compose(steps)


# Not a test for pytest to collect, despite the name.
test_transform.__test__ = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# 3. Datasets
# --------------------------------------------------------------------------------------------


def resolve_root(root: str | os.PathLike | None) -> str:
    """The data root: ``root`` if given, else ``$SHARPDARTS_DATA``, else ``data``."""
    if root is None:
        root = os.environ.get(DATA_ENV_VAR) or DEFAULT_ROOT
    return os.path.expanduser(os.fspath(root))


def _missing_error(dataset: str, folder: str, detail: str, hint: str) -> UserError:
    """A one-paragraph ``UserError`` for a dataset that is not where it was looked for."""
    return UserError(f"{dataset} was not found in {os.path.abspath(folder)} ({detail}). {hint}")


_DOWNLOAD_HINT = (
    "Pass download=True (e.g. --gin_param build_datasets.download=True) to fetch it, or set "
    f"--data (or ${DATA_ENV_VAR}) to the data root that holds it (default '{DEFAULT_ROOT}/')."
)


class ArrayImageDataset(Dataset):
    """Images held in memory as a uint8 array (N x H x W x C, or N x H x W), returned as PIL
    images through ``transform``, like torchvision's datasets.

    Attributes:
        data: The image array.
        targets: The integer labels, a list.
    """

    def __init__(self, images, labels: Sequence[int], transform: Transform | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.data = images
        self.targets = [int(v) for v in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def _image(self, index: int) -> Any:
        return Image.fromarray(self.data[index])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = self._image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]


class TensorImageDataset(ArrayImageDataset):
    """Float image tensors (N x C x H x W) with integer labels and an optional tensor transform."""

    def _image(self, index: int) -> torch.Tensor:
        return self.data[index]


class _CIFAR10Files(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader that checks its files are present but not their md5.

    Why: torchvision hashes all seven files (about 180 MB) every time a train or test set is
    built; the downloaded archive's md5 is still checked by ``download_and_extract_archive``,
    and ``cifar10`` itself checks that every file is there. It also lets the tests read small
    files written in the real format.
    """

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


def cifar10(
    root: str | os.PathLike,
    train: bool = True,
    transform: Transform | None = None,
    download: bool = False,
) -> torchvision.datasets.CIFAR10:
    """CIFAR-10 (50,000 train or 10,000 test images) from ``root/cifar-10-batches-py/``.

    Args:
        root: The data root.
        train: The training set if True, else the test set.
        transform: Applied to each PIL image.
        download: Fetch and extract the official archive when files are missing.

    Raises:
        UserError: Files missing (and not downloaded), or the download failed.
    """
    root = os.fspath(root)
    folder = os.path.join(root, _CIFAR10Files.base_folder)
    names = [n for n, _ in _CIFAR10Files.train_list + _CIFAR10Files.test_list]
    names.append(_CIFAR10Files.meta["filename"])
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing and download:
        try:
            download_and_extract_archive(
                _CIFAR10Files.url, root, filename=_CIFAR10Files.filename, md5=_CIFAR10Files.tgz_md5
            )
        except Exception as e:  # noqa: BLE001 - network, md5 or disk: the user's to fix
            raise UserError(
                f"Downloading CIFAR-10 from {_CIFAR10Files.url} into {os.path.abspath(root)} "
                f"failed ({type(e).__name__}: {e}). Check the network, or download and extract "
                f"the archive there yourself so that {os.path.abspath(folder)} exists, then "
                f"point --data / ${DATA_ENV_VAR} at {os.path.abspath(root)}."
            ) from e
        missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise _missing_error("CIFAR-10", folder, "missing " + ", ".join(missing), _DOWNLOAD_HINT)
    return _CIFAR10Files(root, train=train, transform=transform, download=False)


# CIFAR-10.1 --------------------------------------------------------------------------------

CIFAR10_1_FOLDER = "cifar10_1"
CIFAR10_1_FILES = ("cifar10.1_v6_data.npy", "cifar10.1_v6_labels.npy")
CIFAR10_1_URL = "https://raw.githubusercontent.com/modestyachts/CIFAR-10.1/master/datasets/"


def cifar10_1(
    root: str | os.PathLike, transform: Transform | None = None, download: bool = False
) -> ArrayImageDataset:
    """The CIFAR-10.1 v6 test set (Recht et al. 2018; 2,000 images, CIFAR-10's classes).

    Read from two NumPy files in ``root/cifar10_1/``: ``cifar10.1_v6_data.npy`` (uint8,
    N x 32 x 32 x 3) and ``cifar10.1_v6_labels.npy`` (integer labels).

    Args:
        root: The data root.
        transform: Applied to each PIL image.
        download: Fetch the missing files from the CIFAR-10.1 GitHub repository.

    Raises:
        UserError: Files missing (and not downloaded), the download failed, or the files do
            not hold the expected arrays.
    """
    folder = os.path.join(os.fspath(root), CIFAR10_1_FOLDER)
    paths = [os.path.join(folder, name) for name in CIFAR10_1_FILES]
    if download:
        for name, path in zip(CIFAR10_1_FILES, paths):
            if os.path.isfile(path):
                continue
            try:
                download_url(CIFAR10_1_URL + name, folder, filename=name)
            except Exception as e:  # noqa: BLE001 - any failure is the user's to fix
                raise UserError(
                    f"Downloading CIFAR-10.1 ({CIFAR10_1_URL + name}) into "
                    f"{os.path.abspath(folder)} failed ({type(e).__name__}: {e}). Check the "
                    f"network, or put {' and '.join(CIFAR10_1_FILES)} from "
                    f"https://github.com/modestyachts/CIFAR-10.1 there yourself."
                ) from e
    missing = [name for name, path in zip(CIFAR10_1_FILES, paths) if not os.path.isfile(path)]
    if missing:
        raise _missing_error(
            "CIFAR-10.1", folder, "missing " + ", ".join(missing),
            _DOWNLOAD_HINT + " The files are in https://github.com/modestyachts/CIFAR-10.1.",
        )
    images, labels = np.load(paths[0]), np.load(paths[1])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3) \
            or labels.ndim != 1 or len(labels) != len(images):
        raise UserError(
            f"The CIFAR-10.1 files in {os.path.abspath(folder)} do not hold uint8 images of "
            f"N x 32 x 32 x 3 with N labels (found images {images.dtype} {images.shape}, "
            f"labels {labels.shape}). Delete them and download them again."
        )
    return ArrayImageDataset(images, labels.astype(np.int64), transform)


# ImageNet ----------------------------------------------------------------------------------


def imagenet(
    root: str | os.PathLike, train: bool = True, transform: Transform | None = None
) -> torchvision.datasets.ImageFolder:
    """ImageNet (ILSVRC 2012) as class folders: ``root/imagenet/train`` or ``root/imagenet/val``.

    ImageNet cannot be downloaded automatically (it needs an account and accepting its terms).

    Args:
        root: The data root.
        train: The training set if True, else the validation set (the usual test set).
        transform: Applied to each PIL image.

    Raises:
        UserError: The folder is missing or holds no class folders with images.
    """
    folder = os.path.join(os.fspath(root), "imagenet", "train" if train else "val")
    hint = (
        "ImageNet cannot be downloaded automatically: get ILSVRC 2012 from "
        "https://image-net.org/download (an account is needed), extract the training and "
        "validation images into one sub-folder per class (e.g. n01440764/) under "
        "imagenet/train and imagenet/val of the data root, and set --data (or "
        f"${DATA_ENV_VAR}) to that root (default '{DEFAULT_ROOT}/')."
    )
    if not os.path.isdir(folder):
        raise _missing_error("ImageNet", folder, "no such folder", hint)
    try:
        return torchvision.datasets.ImageFolder(folder, transform=transform)
    except FileNotFoundError as e:  # ImageFolder's "no class folders" / "no valid files"
        raise _missing_error("ImageNet", folder, str(e).rstrip("."), hint) from e


# MNIST, Fashion-MNIST, SVHN ----------------------------------------------------------------


def _torchvision_dataset(
    label: str, folder: str, build: Callable[[bool], Dataset], download: bool
) -> Dataset:
    """Builds a downloadable torchvision dataset, turning its errors into ``UserError``."""
    try:
        return build(download)
    except (RuntimeError, OSError) as e:
        if download:
            raise UserError(
                f"Getting {label} into {os.path.abspath(folder)} failed ({type(e).__name__}: "
                f"{e}). Check the network, or put the files there yourself and point --data / "
                f"${DATA_ENV_VAR} at the data root."
            ) from e
        raise _missing_error(label, folder, "files missing or corrupted", _DOWNLOAD_HINT) from e


def mnist(
    root: str | os.PathLike,
    train: bool = True,
    transform: Transform | None = None,
    download: bool = False,
) -> Dataset:
    """MNIST from ``root/MNIST/raw`` via torchvision. Raises ``UserError`` when missing."""
    root = os.fspath(root)
    return _torchvision_dataset(
        "MNIST", os.path.join(root, "MNIST"),
        lambda dl: torchvision.datasets.MNIST(root, train=train, transform=transform, download=dl),
        download,
    )


def fashion_mnist(
    root: str | os.PathLike,
    train: bool = True,
    transform: Transform | None = None,
    download: bool = False,
) -> Dataset:
    """Fashion-MNIST from ``root/FashionMNIST/raw`` via torchvision. Raises ``UserError`` when
    missing."""
    root = os.fspath(root)
    return _torchvision_dataset(
        "Fashion-MNIST", os.path.join(root, "FashionMNIST"),
        lambda dl: torchvision.datasets.FashionMNIST(
            root, train=train, transform=transform, download=dl
        ),
        download,
    )


def svhn(
    root: str | os.PathLike,
    train: bool = True,
    transform: Transform | None = None,
    download: bool = False,
) -> Dataset:
    """SVHN (cropped digits, train or test split) from ``root/svhn`` via torchvision. Raises
    ``UserError`` when missing."""
    folder = os.path.join(os.fspath(root), "svhn")
    return _torchvision_dataset(
        "SVHN", folder,
        lambda dl: torchvision.datasets.SVHN(
            folder, split="train" if train else "test", transform=transform, download=dl
        ),
        download,
    )


# Offline datasets --------------------------------------------------------------------------


def digits(
    train: bool = True,
    transform: Transform | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> TensorImageDataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn).

    Images are float 1 x 8 x 8 tensors in [0, 1] (the 0-16 pixel counts divided by 16). The
    train/test split is stratified and fixed by ``seed``.

    Args:
        train: The training part if True, else the test part.
        transform: Applied to each image tensor.
        test_fraction: Fraction of the images held out for the test part.
        seed: Fixes the split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    train_idx, test_idx = train_test_split(
        np.arange(len(images)), test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    idx = np.sort(train_idx if train else test_idx)
    return TensorImageDataset(images[idx], bunch.target[idx].tolist(), transform)


class SyntheticDataset(Dataset):
    """A deterministic, learnable image classification set that needs no files.

    Each class has a smooth random pattern (a 4 x 4 Gaussian grid per channel, upsampled
    bilinearly to the image size, so it survives pooling); an image is its class pattern plus
    Gaussian noise. Images are generated on demand from ``seed`` and their index, so a large
    image shape costs no memory, and the same seed gives the same images in any process.

    Args:
        num_samples: Number of images.
        image_shape: (channels, height, width).
        num_classes: Number of classes; labels are balanced.
        seed: Fixes the class patterns, the labels and the noise.
        sample_offset: Index of the first image in the stream of images this seed defines: a
            test set with the same seed and an offset past the training images shares the
            class patterns but not the images.
        noise_std: Standard deviation of the noise (the patterns have unit variance).
        transform: Applied to each image tensor.
    """

    def __init__(
        self,
        num_samples: int,
        image_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        seed: int = 0,
        sample_offset: int = 0,
        noise_std: float = 1.0,
        transform: Transform | None = None,
    ) -> None:
        self.num_samples = int(num_samples)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.sample_offset = int(sample_offset)
        self.noise_std = float(noise_std)
        self.transform = transform
        channels = self.image_shape[0]
        generator = torch.Generator().manual_seed(self.seed)
        self.patterns = torch.randn(self.num_classes, channels, 4, 4, generator=generator)
        # Labels of the whole stream up to the last image, so that offsets agree.
        stream = self.sample_offset + self.num_samples
        labels = torch.arange(stream) % self.num_classes
        labels = labels[torch.randperm(stream, generator=generator)]
        self.targets = labels[self.sample_offset :].tolist()

    def __len__(self) -> int:
        return self.num_samples

    def class_pattern(self, label: int) -> torch.Tensor:
        """The noise-free C x H x W image of a class."""
        pattern = self.patterns[label : label + 1]
        size = self.image_shape[1:]
        return F.interpolate(pattern, size=size, mode="bilinear", align_corners=False)[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        label = self.targets[index]
        # One generator per image, keyed by (seed, position in the stream).
        generator = torch.Generator().manual_seed(
            self.seed * 1_000_003 + self.sample_offset + index + 1
        )
        noise = torch.randn(self.image_shape, generator=generator)
        img = self.class_pattern(label) + self.noise_std * noise
        if self.transform is not None:
            img = self.transform(img)
        return img, label


# --------------------------------------------------------------------------------------------
# 4. The entry point the engine calls
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DataBundle:
    """Everything one experiment reads.

    Attributes:
        spec: The dataset's spec (shape, classes, statistics).
        train: The training set with training augmentation (the search splits it in two).
        test: The test set (ImageNet: the validation set) with the test transform.
        extra_tests: Further test sets by name, e.g. ``{'cifar10_1': ...}`` for CIFAR-10.
    """

    spec: DatasetSpec
    train: Dataset
    test: Dataset
    extra_tests: dict[str, Dataset] = dataclasses.field(default_factory=dict)


@gin.configurable
def build_datasets(
    name: str = gin.REQUIRED,
    root: str | os.PathLike | None = DEFAULT_ROOT,
    download: bool = False,
    cutout_length: int = 0,
    cutout_count: int = 1,
    autoaugment: bool = False,
    synthetic_size: Sequence[int] = (256, 64),
    synthetic_shape: Sequence[int] = (3, 32, 32),
    synthetic_classes: int = 10,
    seed: int = 0,
) -> DataBundle:
    """Builds the train and test sets (and extra test sets) of one dataset.

    Args:
        name: A key of ``SPECS`` (``cifar10_1`` is only a test set: use ``cifar10``).
        root: The data root; None means ``$SHARPDARTS_DATA``, else ``data``.
        download: Fetch missing files where the dataset allows it.
        cutout_length: Cutout hole side for training images; 0 for none.
        cutout_count: Number of cutout holes.
        autoaugment: Use AutoAugment on training images.
        synthetic_size: (train, test) image counts of the synthetic dataset.
        synthetic_shape: (C, H, W) of the synthetic images.
        synthetic_classes: Class count of the synthetic dataset.
        seed: Fixes the synthetic data and the digits split.

    Returns:
        A ``DataBundle``. For CIFAR-10, ``extra_tests['cifar10_1']`` holds CIFAR-10.1 when its
        files are there (or downloaded); otherwise a warning is logged and it is left out.

    Raises:
        UserError: An unknown name, or a dataset whose files are missing.
    """
    if name == "synthetic":
        data_spec = synthetic_spec(synthetic_shape, synthetic_classes)
    else:
        data_spec = spec(name)
    if name == "cifar10_1":
        raise UserError(
            "cifar10_1 is a test set only, with no training images: use name='cifar10', whose "
            "bundle evaluates on CIFAR-10.1 as an extra test set."
        )
    root = resolve_root(root)
    train_tf = train_transform(data_spec, cutout_length, cutout_count, autoaugment)
    test_tf = test_transform(data_spec)
    extra: dict[str, Dataset] = {}

    if name == "synthetic":
        n_train, n_test = (int(v) for v in synthetic_size)
        common = dict(image_shape=synthetic_shape, num_classes=synthetic_classes, seed=seed)
        train = SyntheticDataset(n_train, transform=train_tf, **common)
        test = SyntheticDataset(n_test, sample_offset=n_train, transform=test_tf, **common)
    elif name == "digits":
        train = digits(True, train_tf, seed=seed)
        test = digits(False, test_tf, seed=seed)
    elif name == "imagenet":
        train = imagenet(root, True, train_tf)
        test = imagenet(root, False, test_tf)
    else:
        readers: dict[str, Callable[..., Dataset]] = {
            "cifar10": cifar10, "mnist": mnist, "fashion_mnist": fashion_mnist, "svhn": svhn,
        }
        reader = readers[name]
        train = reader(root, True, train_tf, download=download)
        test = reader(root, False, test_tf, download=download)
        if name == "cifar10":
            try:
                extra["cifar10_1"] = cifar10_1(root, test_tf, download=download)
            except UserError as e:
                logger.warning("Evaluating without CIFAR-10.1: %s", e)
    return DataBundle(data_spec, train, test, extra)


# --------------------------------------------------------------------------------------------
# 5. The search split and loaders
# --------------------------------------------------------------------------------------------


def search_split(
    dataset: Sequence | Dataset, train_portion: float = 0.5
) -> tuple[list[int], list[int]]:
    """Splits a training set for architecture search, as DARTS does.

    The first ``floor(train_portion * N)`` images train the network weights and the rest train
    the architecture parameters; each loader then samples its part randomly every epoch
    (``make_loader(..., indices=...)``).

    Args:
        dataset: The training set (anything with a length).
        train_portion: Fraction for the weights, in (0, 1].

    Returns:
        (weights_indices, arch_indices).

    Raises:
        UserError: ``train_portion`` outside (0, 1].
    """
    if not 0.0 < train_portion <= 1.0:
        raise UserError(f"train_portion must be in (0, 1], got {train_portion}.")
    num = len(dataset)
    split = int(np.floor(train_portion * num))
    return list(range(split)), list(range(split, num))


def seed_worker(worker_id: int) -> None:
    """Seeds Python's and NumPy's generators in a loader worker from its torch seed.

    torch seeds each worker differently (from the loader's base seed), but not ``random`` or
    ``numpy``; transforms that use them would otherwise repeat across workers.
    """
    del worker_id  # torch.initial_seed() already differs per worker
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


@gin.configurable(allowlist=["workers", "pin_memory"])
def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    indices: Sequence[int] | None = None,
    workers: int = 0,
    drop_last: bool = False,
    seed: int | None = None,
    pin_memory: bool | None = None,
    distributed: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over a dataset, or over a subset of it sampled randomly each epoch.

    Args:
        dataset: The dataset.
        batch_size: Images per batch (per process when distributed).
        shuffle: Reshuffle every epoch (ignored with ``indices``, which are always sampled
            randomly).
        indices: Read only these items, in a new random order every epoch
            (``SubsetRandomSampler``), as the DARTS search does with its two halves.
        workers: Loader worker processes (gin-configurable); 0 loads in this process.
        drop_last: Drop the last incomplete batch.
        seed: Seeds the sampling order and the workers' seeds, for repeatable runs; None uses
            torch's global generator.
        pin_memory: Pin host memory; None means "when CUDA is available" (never without it).
        distributed: Shard the data over the processes of the default process group with a
            ``DistributedSampler`` (the caller must call ``loader.sampler.set_epoch(epoch)``
            every epoch).
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    sampler: Any = None
    if distributed:
        # Shard the subset, not the whole set, when only some items are to be read.
        source = Subset(dataset, list(indices)) if indices is not None else dataset
        sampler = DistributedSampler(
            source, shuffle=shuffle or indices is not None, seed=seed or 0, drop_last=drop_last
        )
        dataset, shuffle = source, False
    elif indices is not None:
        sampler = SubsetRandomSampler(list(indices), generator=generator)
        shuffle = False
    cuda = torch.cuda.is_available()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cuda if pin_memory is None else (bool(pin_memory) and cuda),
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker if workers > 0 else None,
        persistent_workers=workers > 0,
    )
