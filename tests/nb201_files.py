"""Small NAS-Bench-201 benchmark files in the real on-disk formats, for tests.

The records are built with the official packages' own classes (``ResultsCount``,
``ArchResults``) and saved the way their loaders read them:

- ``nas_201_api`` (``NAS-Bench-201-v1_*.pth``): one ``torch.save``d dict with ``meta_archs``
  (the arch strings, index order), ``arch2infos`` (index -> ``{'less': ..., 'full': ...}``, the
  ``ArchResults.state_dict()`` of the 12- and 200-epoch trainings), ``evaluated_indexes`` and
  ``total_archs``;
- ``nats_bench`` topology, 'simple' archive (``NATS-tss-v1_0-3ffb9-simple/``): a folder with
  ``meta.pickle.pbz2`` (``meta_archs``, ``total_archs``, ``arch2infos=None``,
  ``evaluated_indexes=set()``) and one ``NNNNNN.pickle.pbz2`` per arch, a dict
  ``{'12': state, '200': state}``. The authors' own sample archive (D-X-Y/NATS-Bench,
  ``fake_torch_dir/``, commit 1d4a304) has this layout and these keys.

Every figure is a deterministic function of the arch string, so tests can pin what the
benchmark answers. The 200-epoch records hold ``EPOCHS_200`` epochs (the real files hold 200):
the API reads whatever number a record declares, and a few epochs keep the files small.
"""

from __future__ import annotations

import collections
import itertools
import zlib
from pathlib import Path

import numpy as np

from sharpdarts.core.nb201_arch import arch_string

# The cells of a test file: every cell over these two ops (64 cells), so that random search
# and REA, drawing ops among those the file lists, only meet cells that it has.
TEST_OPS = ("skip_connect", "nor_conv_3x3")
ARCHS = [arch_string(ops) for ops in itertools.product(TEST_OPS, repeat=6)]
EPOCHS_200 = 4
# The trials the real files hold: 12-epoch CIFAR-10 (train/valid) twice, the rest once;
# 200 epochs three times.
SEEDS = {"12": {"cifar10-valid": [111, 777]}, "200": {}}
DEFAULT_SEEDS = {"12": [111], "200": [777, 888, 999]}
# dataset -> (classes, evaluation sets the real files record)
DATASETS = {
    "cifar10-valid": (10, ("x-valid", "ori-test")),
    "cifar10": (10, ("ori-test",)),
    "cifar100": (100, ("ori-test", "x-valid", "x-test")),
    "ImageNet16-120": (120, ("ori-test", "x-valid", "x-test")),
}
_DATASET_BASE = {"cifar10-valid": 80.0, "cifar10": 84.0, "cifar100": 55.0, "ImageNet16-120": 25.0}
_SET_SHIFT = {"train": 5.0, "x-valid": 0.0, "ori-test": 0.5, "x-test": 0.25}


def n_convs(arch: str) -> int:
    return arch.count("nor_conv_3x3")


def accuracy(arch: str, hp: str, dataset: str, setname: str, seed: int, epoch: int) -> float:
    """The accuracy a test file records: more convolutions, more epochs score higher."""
    wobble = (zlib.crc32(arch.encode()) % 97) / 100.0 + (seed % 7) * 0.05
    epochs = 12 if hp == "12" else EPOCHS_200
    longer = 2.0 if hp == "200" else 0.0
    return round(
        _DATASET_BASE[dataset]
        + 1.5 * n_convs(arch)
        + wobble
        + longer
        + _SET_SHIFT[setname]
        - (epochs - 1 - epoch),
        4,
    )


def epoch_seconds(arch: str, dataset: str) -> float:
    """Training seconds per epoch: a convolution costs more than a skip."""
    return 10.0 + 2.5 * n_convs(arch) + (1.0 if dataset == "ImageNet16-120" else 0.0)


def params_mb(arch: str, classes: int) -> float:
    return round(0.07 + 0.1 * n_convs(arch) + classes * 0.0001, 6)


def flops_m(arch: str, classes: int) -> float:
    return round(15.6 + 28.0 * n_convs(arch) + classes * 0.01, 5)


def arch_results(package, index: int, arch: str, hp: str, datasets=tuple(DATASETS)):
    """The ``ArchResults`` of one cell and one training length, built with ``package``'s classes."""
    epochs = 12 if hp == "12" else EPOCHS_200
    results = package.ArchResults(index, arch)
    for dataset in datasets:
        classes, eval_names = DATASETS[dataset]
        for seed in SEEDS[hp].get(dataset, DEFAULT_SEEDS[hp]):
            config = {"channel": 16, "num_cells": 5, "arch_str": arch, "class_num": classes}
            train_acc = {e: accuracy(arch, hp, dataset, "train", seed, e) for e in range(epochs)}
            result = package.ResultsCount(
                f"{dataset}-{seed}",
                None,  # no trained weights: the files used for queries have none either
                train_acc,
                {e: 1.0 - a / 100.0 for e, a in train_acc.items()},
                # numpy scalars where the authors' files have them (their sample archive)
                np.float64(params_mb(arch, classes)),
                flops_m(arch, classes),
                config,
                f"{seed:04d}",
                epochs,
                [np.float64(0.01 + 0.001 * n_convs(arch))],
            )
            result.update_train_info(
                train_acc,
                None,
                {e: 1.0 - a / 100.0 for e, a in train_acc.items()},
                collections.OrderedDict((e, epoch_seconds(arch, dataset)) for e in range(epochs)),
            )
            accs, losses, times = {}, {}, {}
            for name in eval_names:
                for e in range(epochs):
                    key = f"{name}@{e}"
                    accs[key] = accuracy(arch, hp, dataset, name, seed, e)
                    losses[key] = 1.0 - accs[key] / 100.0
                    times[key] = 2.0
            result.update_eval(accs, losses, times)
            results.update(dataset, seed, result)
    results.clear_params()
    return results


def write_nas201_file(
    folder: Path, archs=ARCHS, name="NAS-Bench-201-v1_1-096897.pth", short=tuple(DATASETS)
) -> Path:
    """A ``nas_201_api`` benchmark file of ``archs`` (index order) in ``folder``; ``short``:
    the datasets with 12-epoch records (v1_0 has 'cifar10-valid' only, v1_1 all four)."""
    import nas_201_api
    import torch

    infos = {
        index: {
            "less": arch_results(nas_201_api, index, arch, "12", short).state_dict(),
            "full": arch_results(nas_201_api, index, arch, "200").state_dict(),
        }
        for index, arch in enumerate(archs)
    }
    path = Path(folder) / name
    torch.save(
        {
            "meta_archs": list(archs),
            "arch2infos": infos,
            "evaluated_indexes": set(range(len(archs))),
            "total_archs": len(archs),
        },
        path,
    )
    return path


def write_nats_archive(folder: Path, archs=ARCHS, name="NATS-tss-v1_0-3ffb9-simple") -> Path:
    """A ``nats_bench`` topology 'simple' archive of ``archs`` (index order) in ``folder``."""
    import nats_bench

    root = Path(folder) / name
    root.mkdir(parents=True)
    meta = {
        "meta_archs": list(archs),
        "total_archs": len(archs),
        "arch2infos": None,
        "evaluated_indexes": set(),
    }
    # pickle_save appends the '.pbz2' of 'pickle.pbz2'.
    nats_bench.pickle_save(meta, str(root / "meta.pickle"))
    for index, arch in enumerate(archs):
        record = collections.OrderedDict(
            (hp, arch_results(nats_bench, index, arch, hp).state_dict()) for hp in ("12", "200")
        )
        nats_bench.pickle_save(record, str(root / f"{index:06d}.pickle"))
    return root
