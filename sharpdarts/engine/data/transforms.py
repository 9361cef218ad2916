"""Augmentation: Cutout, AutoAugment (torchvision's, with the dataset's learned policy) and
the train and test pipelines of the original code (random crop with padding 4, horizontal
flip, optional AutoAugment, normalise, cutout last).

What a pipeline does for a dataset follows its description (``specs.DatasetSpec``): its
crop (``'padded'`` for CIFAR-style images, ``'resized'`` for ImageNet), whether its items
are tensors already, and its AutoAugment policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torchvision import transforms as T

from sharpdarts.engine.data.specs import DatasetSpec

logger = logging.getLogger(__name__)

Transform = Callable[[Any], Any]


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


def autoaugment_policy(data_spec: DatasetSpec) -> T.AutoAugmentPolicy:
    """The learned AutoAugment policy the dataset's description names (CIFAR-10's unless a
    dataset has its own)."""
    return T.AutoAugmentPolicy[data_spec.autoaugment_policy]


def train_transform(
    data_spec: DatasetSpec,
    cutout_length: int = 0,
    cutout_count: int = 1,
    autoaugment: bool = False,
    random_crop: bool = True,
    flip: bool = True,
) -> T.Compose:
    """The training augmentation pipeline of the original code.

    CIFAR-style datasets (PIL images): RandomCrop(size, the description's padding: 4, 2 for
    ImageNet16), horizontal flip,
    AutoAugment, ToTensor, Normalize, Cutout. With AutoAugment the original pads with grey
    (fill 128) rather than black before cropping, as the AutoAugment authors did; without it
    the padding is black.

    ImageNet (``crop='resized'``): RandomResizedCrop(224), horizontal flip, AutoAugment
    (ImageNet policy), ToTensor, Normalize, Cutout.

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
    if data_spec.tensor_images:
        if autoaugment:
            logger.info("AutoAugment does not apply to %s tensors; skipped.", data_spec.name)
    elif data_spec.crop == "resized":
        if random_crop:
            steps.append(T.RandomResizedCrop(data_spec.image_size))
        else:
            steps += [T.Resize(_resize_size(data_spec)), T.CenterCrop(data_spec.image_size)]
    elif random_crop:
        padding, fill = data_spec.crop_padding, 128 if autoaugment else 0
        steps.append(T.RandomCrop(data_spec.image_size, padding=padding, fill=fill))

    if not data_spec.tensor_images:
        if flip:
            steps.append(T.RandomHorizontalFlip())
        if autoaugment:
            steps.append(T.AutoAugment(autoaugment_policy(data_spec)))
        steps.append(T.ToTensor())
    steps.append(T.Normalize(data_spec.mean, data_spec.std))
    if cutout_length > 0 and cutout_count > 0:
        steps.append(Cutout(cutout_length, cutout_count))
    return T.Compose(steps)


def _resize_size(data_spec: DatasetSpec) -> int:
    """The shorter side a 'resized'-crop image is resized to before the centre crop (256 for
    ImageNet's 224)."""
    return int(round(data_spec.image_size[0] * 256 / 224))


def test_transform(data_spec: DatasetSpec) -> T.Compose:
    """The evaluation pipeline: ToTensor and Normalize (ImageNet: Resize(256), CenterCrop(224)
    first; tensor datasets: Normalize only)."""
    steps: list[Transform] = []
    if data_spec.crop == "resized" and not data_spec.tensor_images:
        steps += [T.Resize(_resize_size(data_spec)), T.CenterCrop(data_spec.image_size)]
    if not data_spec.tensor_images:
        steps.append(T.ToTensor())
    steps.append(T.Normalize(data_spec.mean, data_spec.std))
    return T.Compose(steps)


# Not a test for pytest to collect, despite the name.
test_transform.__test__ = False  # type: ignore[attr-defined]
