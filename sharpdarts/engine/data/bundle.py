"""``build_datasets``: the one gin-configurable entry point the engine calls for data."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import gin
from torch.utils.data import Dataset

from sharpdarts.core import validate
from sharpdarts.engine.data import nb201_splits
from sharpdarts.engine.data.datasets import DEFAULT_ROOT, resolve_root
from sharpdarts.engine.data.specs import DatasetSpec, spec, synthetic_spec
from sharpdarts.engine.data.transforms import test_transform, train_transform
from sharpdarts.errors import UserError

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DataBundle:
    """Everything one experiment reads.

    Attributes:
        spec: The dataset's spec (shape, classes, statistics).
        train: The training set with training augmentation (the search splits it in two).
        test: The test set (ImageNet: the validation set) with the test transform.
        extra_tests: Further test sets by name, e.g. ``{'cifar10_1': ...}`` for CIFAR-10.
        valid: A validation set that a split holds out (with the test transform), or None.
        valid_augmented: The same images with the training transform (a search trains its
            architecture on them), or None.
    """

    spec: DatasetSpec
    train: Dataset
    test: Dataset
    extra_tests: dict[str, Dataset] = dataclasses.field(default_factory=dict)
    valid: Dataset | None = None
    valid_augmented: Dataset | None = None


SPLITS = ("nb201",)


@gin.configurable
@validate.params(
    root=validate.FOLDER.or_none(),
    cutout_length=validate.Int("an integer >= 0", low=0),
    cutout_count=validate.COUNT,
    seed=validate.SEED,
    split=validate.Choice("one of " + ", ".join(SPLITS), choices=SPLITS).or_none(),
)
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
    split: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DataBundle:
    """Builds the train and test sets (and extra test sets) of one dataset.

    Args:
        name: A key of ``specs.DATASETS`` (``cifar10_1`` is only a test set: use ``cifar10``).
        root: The data root; None means ``$SHARPDARTS_DATA``, else ``data``.
        download: Fetch missing files where the dataset allows it.
        cutout_length: Cutout hole side for training images; 0 for none.
        cutout_count: Number of cutout holes.
        autoaugment: Use AutoAugment on training images.
        synthetic_size: (train, test) image counts of the synthetic dataset.
        synthetic_shape: (C, H, W) of the synthetic images.
        synthetic_classes: Class count of the synthetic dataset.
        seed: Fixes the synthetic data and the digits split.
        split: ``'nb201'``: NAS-Bench-201's split of this dataset into train, valid and test
            (:mod:`~sharpdarts.engine.data.nb201_splits`); None: the train and test sets as
            published, no validation set.
        mean: Per-channel mean to normalise with instead of the description's (a protocol
            whose authors used other figures, e.g. NAS-Bench-201's CIFAR-10).
        std: Per-channel standard deviation, likewise.

    Returns:
        A ``DataBundle``. Its ``extra_tests`` hold the description's extra test sets (for
        CIFAR-10, ``'cifar10_1'``: CIFAR-10.1) when their files are there (or downloaded);
        a missing one is logged as a warning and left out. With a split, ``valid`` holds
        its validation set, and ``valid_augmented`` the same images with the training
        transform.

    Raises:
        UserError: An unknown name, a dataset whose files are missing, or a split the
            dataset does not have.
    """
    if name == "synthetic":
        data_spec = synthetic_spec(synthetic_shape, synthetic_classes, synthetic_size)
    else:
        data_spec = spec(name)
    if data_spec.test_set_of is not None:
        raise UserError(
            f"{name} is a test set only, with no training images: use "
            f"name={data_spec.test_set_of!r}, whose bundle evaluates on {data_spec.label} as "
            "an extra test set."
        )
    if mean is not None or std is not None:
        data_spec = dataclasses.replace(
            data_spec,
            mean=tuple(data_spec.mean if mean is None else mean),
            std=tuple(data_spec.std if std is None else std),
        )
    if split is not None and data_spec.name not in nb201_splits.NB201_SPLITS:
        raise UserError(
            f"NAS-Bench-201 has no split of {data_spec.label or name}: it splits "
            f"{', '.join(sorted(set(nb201_splits.NB201_SPLITS) - {'synthetic'}))}. Bind "
            "build_datasets.split = None to train on the published train and test sets."
        )
    root = resolve_root(root)
    train_tf = train_transform(data_spec, cutout_length, cutout_count, autoaugment)
    test_tf = test_transform(data_spec)
    train = data_spec.build(root, True, train_tf, download, seed)
    test = data_spec.build(root, False, test_tf, download, seed)
    extra: dict[str, Dataset] = {}
    for extra_name in data_spec.extra_tests:
        extra_spec = spec(extra_name)
        try:
            extra[extra_name] = extra_spec.build(root, False, test_tf, download, seed)
        except UserError as e:
            logger.warning("Evaluating without %s: %s", extra_spec.label, e)
    valid = valid_augmented = None
    if split is not None:
        # The validation images of a training set are seen as test images (and those of a
        # test set, by a search, as training images): built once more.
        train_as_test = lambda: data_spec.build(root, True, test_tf, download, seed)  # noqa: E731
        test_as_train = lambda: data_spec.build(root, False, train_tf, download, seed)  # noqa: E731
        split_of = nb201_splits.NB201_SPLITS[data_spec.name]
        train, valid, test, valid_augmented = split_of(
            data_spec.label, train, train_as_test, test, test_as_train
        )
    return DataBundle(data_spec, train, test, extra, valid, valid_augmented)


def given_or_built(data: DataBundle | None, seed: int) -> DataBundle:
    """The datasets a caller built already (the runner does), or gin's ``build_datasets``."""
    return data if data is not None else build_datasets(seed=seed)
