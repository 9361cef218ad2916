"""NAS-Bench-201's data splits (docs/nb201_train.md, "The splits").

The benchmark (Dong & Yang, ICLR 2020; code: github.com/D-X-Y/AutoDL-Projects) measures every
cell on three datasets, each split its own way:

- CIFAR-10 (its ``cifar10-valid`` entry): the 50,000 training images in two halves of 25,000,
  one to train on and one to validate on (seen with the test transform, no augmentation); the
  test set is the test set. The halves are the authors' ``configs/nas-benchmark/
  cifar-split.txt``, which their ``exps/NAS-Bench-201/main.py`` (``generate_meta_info``) drew
  as ``random.seed(1021); random.shuffle(list(range(50000)))``, the first half training: we
  draw them the same way (Python's generator gives the same numbers; the tests pin the file's).
- CIFAR-100 and ImageNet16-120: all training images train; the test set is cut in two halves,
  ``xvalid`` (validation) and ``xtest`` (test). The halves are the authors'
  ``cifar100-test-split.txt`` and ``imagenet-16-120-test-split.txt``, kept in the package data
  ``sharpdarts/reference/nb201_splits.json`` (a bit per test image).

A synthetic set (``--smoke``) has no benchmark split: its stand-in cuts its training set in
two as CIFAR-10's is cut, alternating images, so a smoke run has a validation set (and a
search its two halves) as a benchmark run has.

A split also gives the validation images once more with the training transform: the authors'
searches (xautodl's ``get_nas_search_loaders``, used by ``exps/NAS-Bench-201-algos/*.py``)
train the weights on the split's training images and the architecture on its validation images,
both augmented (``SearchDataset``), and measure the search on the validation images with the
test transform. For CIFAR-10 these are the two halves of the training set (``cifar-split.txt``);
for CIFAR-100 and ImageNet16-120, all the training images and the ``xvalid`` half of the test set.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from sharpdarts.errors import UserError

SPLITS_FILE = Path(__file__).resolve().parents[2] / "reference" / "nb201_splits.json"
CIFAR10_SPLIT_SEED = 1021  # exps/NAS-Bench-201/main.py, generate_meta_info
CIFAR10_TRAIN_IMAGES = 50_000


def cifar10_halves() -> tuple[list[int], list[int]]:
    """The benchmark's (train, valid) halves of CIFAR-10's training images, sorted indices."""
    order = list(range(CIFAR10_TRAIN_IMAGES))
    rng = random.Random(CIFAR10_SPLIT_SEED)  # the authors seed the global generator: same draw
    rng.shuffle(order)
    half = CIFAR10_TRAIN_IMAGES // 2
    return sorted(order[:half]), sorted(order[half:])


@functools.cache
def test_halves(dataset: str) -> tuple[list[int], list[int]]:
    """The benchmark's (xvalid, xtest) halves of a test set (``'cifar100'``,
    ``'imagenet16_120'``), sorted indices."""
    entry = json.loads(SPLITS_FILE.read_text())[dataset]
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(entry["xvalid_bits"]), np.uint8))
    bits = bits[: entry["images"]].astype(bool)
    return np.flatnonzero(bits).tolist(), np.flatnonzero(~bits).tolist()


# Not a test for pytest to collect, despite the name.
test_halves.__test__ = False  # type: ignore[attr-defined]


def _check_size(label: str, part: str, dataset: Dataset, expected: int) -> None:
    if len(dataset) != expected:
        raise UserError(
            f"NAS-Bench-201 splits {label}'s {part} set of {expected:,} images, but the one "
            f"read has {len(dataset):,}: the split's indices would not name the same images. "
            f"Use the complete, published {label} files (docs/nb201_train.md says where to get "
            f"them), or bind build_datasets.split = None to train without the split."
        )


# A split takes (label, train set, the train set with the test transform, test set, the test
# set with the training transform) and gives (train, valid, test, valid with the training
# transform); the two builders read the files again, so a split calls only the one it needs.
Split = Callable[
    [str, Dataset, Callable[[], Dataset], Dataset, Callable[[], Dataset]],
    tuple[Dataset, Dataset, Dataset, Dataset],
]


def _train_halves(label, train, train_as_test, test, test_as_train):
    _check_size(label, "training", train, CIFAR10_TRAIN_IMAGES)
    train_idx, valid_idx = cifar10_halves()
    valid = Subset(train_as_test(), valid_idx)
    return Subset(train, train_idx), valid, test, Subset(train, valid_idx)


def _test_halves(name: str) -> Split:
    def split(label, train, train_as_test, test, test_as_train):
        xvalid, xtest = test_halves(name)
        _check_size(label, "test", test, len(xvalid) + len(xtest))
        return train, Subset(test, xvalid), Subset(test, xtest), Subset(test_as_train(), xvalid)

    return split


def _alternate_train_images(label, train, train_as_test, test, test_as_train):
    train_idx, valid_idx = range(0, len(train), 2), range(1, len(train), 2)
    valid = Subset(train_as_test(), valid_idx)
    return Subset(train, train_idx), valid, test, Subset(train, valid_idx)


NB201_SPLITS: dict[str, Split] = {
    "cifar10": _train_halves,
    "cifar100": _test_halves("cifar100"),
    "imagenet16_120": _test_halves("imagenet16_120"),
    "synthetic": _alternate_train_images,
}
