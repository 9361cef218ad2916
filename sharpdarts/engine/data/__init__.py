"""Data: datasets described once, their transforms and on-disk formats, and the loaders.

- ``specs``: the ``DATASETS`` registry of dataset descriptions (``DatasetSpec``: image
  shape, classes, statistics, crop, AutoAugment policy, reader, extra test sets);
- ``transforms``: ``Cutout`` and the train and test pipelines (AutoAugment via torchvision);
- ``datasets``: the readers of the real on-disk formats (CIFAR-10, CIFAR-10.1, ImageNet
  folders, MNIST, Fashion-MNIST, SVHN) and two offline sets (digits, synthetic);
- ``bundle``: ``build_datasets``, the one gin-configurable entry point the engine calls;
- ``loaders``: the DARTS search split and ``make_loader``;
- ``corpus``: word-level language-model corpora (PTB, WikiText-2), batchify and BPTT windows;
- ``pydoc_corpus``: an offline corpus made from the Python documentation CPython ships.

Every public name of these modules is importable from here, as from the single module this
package started as (``sharpdarts.data``).
"""

from sharpdarts.engine.data import corpus  # noqa: F401  (registers the text corpora)
from sharpdarts.engine.data import pydoc_corpus  # noqa: F401  (registers 'pydoc')
from sharpdarts.engine.data.bundle import DataBundle, build_datasets
from sharpdarts.engine.data.datasets import (
    CIFAR10_1_FILES, CIFAR10_1_FOLDER, CIFAR10_1_URL, DATA_ENV_VAR, DEFAULT_ROOT,
    ArrayImageDataset, SyntheticDataset, TensorImageDataset, Transform, cifar10, cifar10_1,
    digits, fashion_mnist, imagenet, mnist, resolve_root, svhn)
from sharpdarts.engine.data.loaders import make_loader, search_split, seed_worker
from sharpdarts.engine.data.specs import (
    DATASETS, SPECS, DatasetSpec, UnknownDatasetError, spec, synthetic_spec)
from sharpdarts.engine.data.transforms import (
    Cutout, autoaugment_policy, test_transform, train_transform)

__all__ = [
    "DataBundle", "build_datasets", "CIFAR10_1_FILES", "CIFAR10_1_FOLDER", "CIFAR10_1_URL",
    "DATA_ENV_VAR", "DEFAULT_ROOT", "ArrayImageDataset", "SyntheticDataset",
    "TensorImageDataset", "Transform", "cifar10", "cifar10_1", "digits", "fashion_mnist",
    "imagenet", "mnist", "resolve_root", "svhn", "make_loader", "search_split", "seed_worker",
    "DATASETS", "SPECS", "DatasetSpec", "UnknownDatasetError", "spec", "synthetic_spec",
    "Cutout", "autoaugment_policy", "test_transform", "train_transform",
]
