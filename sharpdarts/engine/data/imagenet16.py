"""ImageNet at 16 x 16 pixels (Chrabaszcz, Loshchilov & Hutter 2017, "A Downsampled Variant of
ImageNet as an Alternative to the CIFAR datasets"), and NAS-Bench-201's ImageNet16-120: the
images of its first 120 classes (docs/nb201_train.md, "The datasets").

The published files are Python pickles in one folder of the data root::

    ROOT/ImageNet16/train_data_batch_1 .. train_data_batch_10, val_data

each a dict with ``'data'`` (N x 768 uint8: the red, green and blue 16 x 16 planes of each
image, one row per image, as CIFAR's) and ``'labels'`` (N class numbers from 1 to 1000); the
training batches also hold ``'mean'``, which is not read. The reader follows the NAS-Bench-201
authors' ``xautodl/datasets/DownsampledImageNet.py`` (AutoDL-Projects, commit
``f46486e21b71ae6459a700be720d7648b5429569``): the batches in order, then only the images
whose label is in ``1..num_classes``, kept in order, with the label less one as the target.
Their ImageNet16-120 has 151,700 training and 6,000 validation images (the validation set is
the test set there).
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from sharpdarts.engine.data.datasets import (
    DATA_ENV_VAR,
    DEFAULT_ROOT,
    ArrayImageDataset,
    Transform,
)
from sharpdarts.errors import UserError

FOLDER = "ImageNet16"
TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
VALID_FILES = ("val_data",)
SIDE = 16

_HINT = (
    "Get the pickled 'Downsampled ImageNet 16x16' training and validation files (not the .npz "
    "version) from https://image-net.org/download-images (an account is needed), put the "
    f"eleven files ({', '.join(TRAIN_FILES[:1])} .. {TRAIN_FILES[-1]}, {VALID_FILES[0]}) in "
    f"{FOLDER}/ under the data root, and set --data (or ${DATA_ENV_VAR}) to that root "
    f"(default '{DEFAULT_ROOT}/')."
)


def _read(path: str) -> tuple[np.ndarray, list[int]]:
    with open(path, "rb") as f:
        try:
            # Written by Python 2 (NumPy arrays inside): latin1 reads its byte strings.
            entry = pickle.load(f, encoding="latin1")
            data, labels = entry["data"], entry["labels"]
        except Exception as e:  # noqa: BLE001 - anything unreadable is the file's fault
            raise UserError(
                f"{path} is not a downsampled ImageNet pickle (a dict with 'data' and "
                f"'labels'): {type(e).__name__}: {e}. {_HINT}"
            ) from e
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE or len(labels) != len(data):
        raise UserError(
            f"{path} does not hold 16 x 16 images (N x 768 bytes with N labels; found "
            f"{data.shape} and {len(labels)} labels). {_HINT}"
        )
    return data, [int(v) for v in labels]


def imagenet16(
    root: str | os.PathLike,
    train: bool = True,
    transform: Transform | None = None,
    num_classes: int = 120,
) -> ArrayImageDataset:
    """The training or validation images of ImageNet16's first ``num_classes`` classes.

    Args:
        root: The data root (the files are in ``root/ImageNet16/``).
        train: The ten training batches if True, else ``val_data``.
        transform: Applied to each 16 x 16 PIL image.
        num_classes: Keep the images labelled 1 to ``num_classes`` (120: ImageNet16-120).

    Raises:
        UserError: A file is missing or is not in the published format.
    """
    folder = os.path.join(os.fspath(root), FOLDER)
    names = TRAIN_FILES if train else VALID_FILES
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise UserError(
            f"ImageNet16-{num_classes} was not found in {os.path.abspath(folder)} (missing "
            f"{', '.join(missing)}). {_HINT}"
        )
    parts = [_read(os.path.join(folder, n)) for n in names]
    data = np.concatenate([d for d, _ in parts])
    labels = np.asarray([v for _, part in parts for v in part], dtype=np.int64)
    keep = (labels >= 1) & (labels <= num_classes)
    # Rows of channel planes -> N x H x W x C, the layout PIL reads.
    images = data[keep].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return ArrayImageDataset(np.ascontiguousarray(images), (labels[keep] - 1).tolist(), transform)
