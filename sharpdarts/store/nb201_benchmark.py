"""NAS-Bench-201's ground truth, read through the authors' own API packages.

The benchmark (Dong & Yang, ICLR 2020) publishes, for each of its 15,625 cells, the figures of
its networks trained on CIFAR-10, CIFAR-100 and ImageNet16-120. The authors read their files
with their own packages, and so do we (imported only when a file is opened, so that the rest
of sharpdarts works without them):

- ``nats_bench`` (NATS-Bench's topology space, the same cells and figures, with more trials):
  the archive folder ``NATS-tss-v1_0-3ffb9-simple/`` (one file per cell, read on demand) or
  the single file ``NATS-tss-v1_0-3ffb9.pickle.pbz2``;
- ``nas_201_api`` (package ``nas-bench-201``): ``NAS-Bench-201-v1_1-096897.pth`` or the
  older ``NAS-Bench-201-v1_0-e61699.pth``.

docs/nb201_benchmark.md says where each file comes from. Figures come from the API's
``get_more_info`` (accuracies and times, averaged over a cell's trials) and ``get_cost_info``
(parameters and FLOPs, the latter counted as multiply-adds), for the 200-epoch training
(``hp='200'``, the figures the papers report) or the 12-epoch one (``hp='12'``, what the
benchmark's own baselines search on).

A search records its current cell's figures each epoch, and its final cell's in ``final``,
through the scorer that :func:`nb201_benchmark_scores` makes (``search.genotype_scorer =
@nb201_benchmark_scores()``; docs/nb201.md, "Searching the space").
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import gin

from sharpdarts.core.nb201_arch import OPS, parse_arch
from sharpdarts.errors import UserError, one_line

__all__ = [
    "DATASETS",
    "HPS",
    "TABLE_METRICS",
    "Benchmark",
    "BenchmarkScores",
    "nb201_benchmark_scores",
    "open_benchmark",
    "supported_files",
]

# The training sets the benchmark records, as the API names them: 'cifar10-valid' is trained
# on the benchmark's CIFAR-10 train half (evaluated on its valid half and the test set),
# 'cifar10' on train + valid.
DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
HPS = ("12", "200")
# The figures of the NAS-Bench-201 paper's table of searches, as run.json ``final`` keys: a run
# that records these for its cell has a row in `sharpdarts table nb201`.
TABLE_METRICS = {
    "nb201_cifar10_valid_acc": ("cifar10-valid", "valid"),
    "nb201_cifar10_test_acc": ("cifar10", "test"),
    "nb201_cifar100_valid_acc": ("cifar100", "valid"),
    "nb201_cifar100_test_acc": ("cifar100", "test"),
    "nb201_imagenet16_valid_acc": ("ImageNet16-120", "valid"),
    "nb201_imagenet16_test_acc": ("ImageNet16-120", "test"),
}
# get_more_info's keys -> ours.
_SPLITS = {"train": "train", "valid": "valid", "test": "test", "valtest": "valtest"}
NATS_ARCHIVE = "NATS-tss-v1_0-3ffb9-simple"
NATS_FILE = "NATS-tss-v1_0-3ffb9.pickle.pbz2"
NB201_FILES = ("NAS-Bench-201-v1_1-096897.pth", "NAS-Bench-201-v1_0-e61699.pth")


def supported_files() -> str:
    """One paragraph: the files this module reads, where each comes from, what to install."""
    return (
        f"Supported NAS-Bench-201 files: the NATS-Bench topology archive {NATS_ARCHIVE}/ "
        f"(unpack {NATS_ARCHIVE}.tar) or its single file {NATS_FILE}, both listed in the "
        f"README of github.com/D-X-Y/NATS-Bench and read with `pip install nats_bench`; or "
        f"{NB201_FILES[0]} (recommended) or {NB201_FILES[1]}, listed on the NAS-Bench-201 page "
        f"of github.com/D-X-Y/AutoDL-Projects (docs/) and read with `pip install nas-bench-201`. "
        f"Pass the file or folder with --benchmark PATH (docs/nb201_benchmark.md)."
    )


def _number(value) -> float | None:
    """A figure as a plain float (the API returns numpy scalars); None when absent."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _numpy_globals() -> list:
    """The numpy types that the benchmark's files pickle figures as, under both numpy 1.x and
    2.x module names, for torch's weights-only loader (torch >= 2.6 refuses other globals)."""
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray

    allowed = [multiarray.scalar, multiarray._reconstruct, np.ndarray, np.dtype]
    allowed += [type(np.dtype(code)) for code in ("f8", "f4", "i8", "i4", "b1")]
    old = [
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    ]
    return allowed + old


def _import(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(
            f"reading this file needs the {module} package. {supported_files()}"
        ) from None


class Benchmark:
    """One opened benchmark file: the API object and the questions we ask it.

    Attributes:
        path: the file or folder that was opened.
        api: the official API object (``NATStopology`` or ``NASBench201API``).
        package: ``'nats_bench'`` or ``'nas_201_api'``.
    """

    def __init__(self, path: Path, api, package: str):
        self.path, self.api, self.package = path, api, package

    def ops(self) -> tuple[str, ...]:
        """The ops that the listed cells use, in the benchmark's op order (all five in a real
        file; test files list fewer)."""
        used = set()
        for arch in self.api.meta_archs:
            used.update(parse_arch(arch))
            if len(used) == len(OPS):
                break
        return tuple(op for op in OPS if op in used)

    def index(self, arch: str) -> int:
        """The benchmark's index of ``arch`` (checked with :func:`parse_arch` first).

        Raises:
            UserError: not an arch string, or a cell the file does not list.
        """
        parse_arch(arch)
        index = self.api.query_index_by_arch(arch.strip())
        if index < 0:
            raise UserError(f"{self.path.name} does not list the cell {arch}.")
        return index

    def _ask(self, call, *args, **kwargs):
        """An API call whose failure for a cell without a record is the user's file's fault."""
        try:
            return call(*args, **kwargs)
        except (AssertionError, KeyError, ValueError, OSError, EOFError) as exc:
            raise UserError(
                f"{self.path.name} has no readable record for this cell: {one_line(exc)}"
            ) from None

    def dataset_figures(self, index: int, dataset: str, hp: str = "200") -> dict:
        """One training set's figures of cell ``index``: accuracies per split (means over the
        trials), parameters (millions), multiply-adds (millions) and training seconds."""
        info = self._ask(
            self.api.get_more_info, index, dataset, iepoch=None, hp=hp, is_random=False
        )
        cost = self._ask(self.api.get_cost_info, index, dataset, hp=hp)
        out = {
            split: _number(info[f"{key}-accuracy"])
            for key, split in _SPLITS.items()
            if f"{key}-accuracy" in info
        }
        out["params_m"] = _number(cost.get("params"))
        out["multiply_adds_m"] = _number(cost.get("flops"))
        out["train_seconds"] = _number(info.get("train-all-time"))
        out["latency_s"] = _number(cost.get("latency"))
        return out

    def query(self, arch: str, hp: str = "200") -> dict:
        """Everything the file records for ``arch`` after training ``hp`` epochs.

        Returns:
            ``{'arch', 'index', 'hp', 'benchmark', 'datasets': {dataset: figures}}`` with
            :meth:`dataset_figures` for each of :data:`DATASETS` that the file trained for
            ``hp`` epochs (``NAS-Bench-201-v1_0`` has 12-epoch figures for 'cifar10-valid' only).

        Raises:
            UserError: the file has no figures of the cell for ``hp`` at all.
        """
        if str(hp) not in HPS:
            raise UserError(f"hp is one of {', '.join(HPS)} (training epochs); got {hp!r}.")
        index = self.index(arch)
        datasets, first_error = {}, None
        for dataset in DATASETS:
            try:
                datasets[dataset] = self.dataset_figures(index, dataset, str(hp))
            except UserError as exc:
                first_error = first_error or exc
        if not datasets:
            raise first_error
        return {
            "arch": arch.strip(),
            "index": index,
            "hp": str(hp),
            "benchmark": self.path.name,
            "datasets": datasets,
        }

    def table_figures(self, arch: str) -> dict[str, float | None]:
        """The NAS-Bench-201 table's six accuracies of ``arch`` (200 epochs), keyed as
        :data:`TABLE_METRICS`: what a search run records in run.json ``final``."""
        index = self.index(arch)
        cache: dict[str, dict] = {}
        out = {}
        for key, (dataset, split) in TABLE_METRICS.items():
            if dataset not in cache:
                cache[dataset] = self.dataset_figures(index, dataset, "200")
            out[key] = cache[dataset].get(split)
        return out

    def trial_seeds(self, index: int, dataset: str, hp: str) -> list[int]:
        """The seeds of the trials recorded for cell ``index`` (in the API's order)."""
        return list(self._ask(self.api.query_by_index, index, dataset, hp=hp))

    def simulate(self, index: int, dataset: str, hp: str, trial: int) -> tuple[float, float]:
        """What training cell ``index`` would have given and cost, as the benchmark's baselines
        count it: the validation accuracy of trial ``trial`` and its training time plus one
        evaluation's (``train-all-time + valid-per-time``)."""
        info = self._ask(
            self.api.get_more_info, index, dataset, iepoch=None, hp=hp, is_random=trial
        )
        return float(info["valid-accuracy"]), float(info["train-all-time"] + info["valid-per-time"])


def _open_nats(path: Path, fast_mode: bool):
    nats_bench = _import("nats_bench")
    return nats_bench.create(str(path), "tss", fast_mode=fast_mode, verbose=False)


def _open_nas201(path: Path):
    _import("nas_201_api")
    import torch
    from nas_201_api import NASBench201API

    with torch.serialization.safe_globals(_numpy_globals()):
        return NASBench201API(str(path), verbose=False)


def open_benchmark(path: str | os.PathLike) -> Benchmark:
    """Opens a benchmark file or archive folder with its official package.

    Raises:
        UserError: no such file, a file of no supported kind, a missing package, or a file
            the package cannot read (each message says what is supported and where it is).
    """
    if path is None:
        raise UserError(f"this command needs --benchmark PATH. {supported_files()}")
    path = Path(path).expanduser()
    try:
        if path.is_dir() and (path / "meta.pickle.pbz2").is_file():
            return Benchmark(path, _open_nats(path, fast_mode=True), "nats_bench")
        if path.is_file() and path.name.endswith(".pickle.pbz2"):
            return Benchmark(path, _open_nats(path, fast_mode=False), "nats_bench")
        if path.is_file() and path.suffix == ".pth":
            return Benchmark(path, _open_nas201(path), "nas_201_api")
    except UserError:
        raise
    except Exception as exc:  # a damaged or foreign file: the packages raise anything
        raise UserError(
            f"{path} could not be read as a NAS-Bench-201 file: {one_line(exc)[:300]}. "
            f"{supported_files()}"
        ) from None
    what = "is not a benchmark file or archive folder" if path.exists() else "does not exist"
    raise UserError(f"{path} {what}. {supported_files()}")


class BenchmarkScores:
    """A search's genotype scorer: the NAS-Bench-201 table's six accuracies of a cell
    (:meth:`Benchmark.table_figures`, keyed as :data:`TABLE_METRICS`), each cell looked up
    once.

    Args:
        benchmark: the opened benchmark file.
    """

    def __init__(self, benchmark: Benchmark):
        self.benchmark = benchmark
        self._seen: dict[str, dict] = {}

    def __call__(self, genotype) -> dict[str, float | None]:
        """The figures of ``genotype``, a NAS-Bench-201 arch string.

        Raises:
            UserError: the genotype is not an arch string (a search of another space), or a
                cell the file does not list.
        """
        if not isinstance(genotype, str):
            raise UserError(
                "nb201_benchmark_scores looks up NAS-Bench-201 cells, and this search's genotype "
                "is not one (search.network must be @NB201SearchNetwork); leave "
                "search.genotype_scorer unbound for other spaces."
            )
        if genotype not in self._seen:
            self._seen[genotype] = self.benchmark.table_figures(genotype)
        return dict(self._seen[genotype])


@gin.configurable
def nb201_benchmark_scores(path: str | os.PathLike = gin.REQUIRED) -> BenchmarkScores:
    """The scorer that records a search's cells' benchmark accuracies (bind
    ``search.genotype_scorer = @nb201_benchmark_scores()`` and
    ``nb201_benchmark_scores.path``). The file opens here, before the first epoch, so a
    missing file or package stops the run at once.

    Args:
        path: a benchmark file or archive folder (see :func:`supported_files`).

    Raises:
        UserError: as :func:`open_benchmark`.
    """
    return BenchmarkScores(open_benchmark(path))
