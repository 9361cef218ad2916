"""The on-disk formats: CIFAR-10, CIFAR-100, CIFAR-10.1, ImageNet folders, MNIST,
Fashion-MNIST, SVHN, and two offline sets that need no files (scikit-learn's digits, a
synthetic set). ImageNet16-120's reader is :mod:`sharpdarts.engine.data.imagenet16`.

Files live under one data root (``--data``, ``$SHARPDARTS_DATA``, or ``data/``)::

    ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    ROOT/cifar-100-python/{train, test, meta}
    ROOT/cifar10_1/cifar10.1_v6_data.npy, cifar10.1_v6_labels.npy
    ROOT/imagenet/train/<class>/*.JPEG, ROOT/imagenet/val/<class>/*.JPEG
    ROOT/MNIST/raw/..., ROOT/FashionMNIST/raw/..., ROOT/svhn/{train,test}_32x32.mat

A dataset that is missing (and not downloadable, or whose download fails) raises
``UserError`` naming the folder looked in and how to fix it. Which reader serves which
dataset name is said once, in ``specs.DATASETS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.utils import download_and_extract_archive, download_url

from sharpdarts.errors import UserError

Transform = Callable[[Any], Any]

DATA_ENV_VAR = "SHARPDARTS_DATA"
DEFAULT_ROOT = "data"


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


class _CIFAR100Files(torchvision.datasets.CIFAR100):
    """torchvision's CIFAR-100 reader, its files checked for presence only (as CIFAR-10's)."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR100.test_list]
    meta = {**torchvision.datasets.CIFAR100.meta, "md5": None}


def _cifar(cls, label: str, root, train, transform, download):
    """A CIFAR reader of torchvision's python version, its missing files a ``UserError``."""
    root = os.fspath(root)
    folder = os.path.join(root, cls.base_folder)
    names = [n for n, _ in cls.train_list + cls.test_list]
    names.append(cls.meta["filename"])
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing and download:
        try:
            download_and_extract_archive(cls.url, root, filename=cls.filename, md5=cls.tgz_md5)
        except Exception as e:  # noqa: BLE001 - network, md5 or disk: the user's to fix
            raise UserError(
                f"Downloading {label} from {cls.url} into {os.path.abspath(root)} "
                f"failed ({type(e).__name__}: {e}). Check the network, or download and extract "
                f"the archive there yourself so that {os.path.abspath(folder)} exists, then "
                f"point --data / ${DATA_ENV_VAR} at {os.path.abspath(root)}."
            ) from e
        missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise _missing_error(label, folder, "missing " + ", ".join(missing), _DOWNLOAD_HINT)
    return cls(root, train=train, transform=transform, download=False)


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
    return _cifar(_CIFAR10Files, "CIFAR-10", root, train, transform, download)


def cifar100(
    root: str | os.PathLike,
    train: bool = True,
    transform: Transform | None = None,
    download: bool = False,
) -> torchvision.datasets.CIFAR100:
    """CIFAR-100 (50,000 train or 10,000 test images, the 100 fine labels) from
    ``root/cifar-100-python/{train, test, meta}``. Arguments and errors as :func:`cifar10`."""
    return _cifar(_CIFAR100Files, "CIFAR-100", root, train, transform, download)


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
            "CIFAR-10.1",
            folder,
            "missing " + ", ".join(missing),
            _DOWNLOAD_HINT + " The files are in https://github.com/modestyachts/CIFAR-10.1.",
        )
    images, labels = np.load(paths[0]), np.load(paths[1])
    if (
        images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[1:] != (32, 32, 3)
        or labels.ndim != 1
        or len(labels) != len(images)
    ):
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
        "MNIST",
        os.path.join(root, "MNIST"),
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
        "Fashion-MNIST",
        os.path.join(root, "FashionMNIST"),
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
        "SVHN",
        folder,
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
