"""``evaluate_checkpoint``: the test error of saved weights, ours or the original code's.

Saved weights (a checkpoint file, or a run folder holding one) are loaded into their network
and measured on the test set and on the dataset's extra test sets (CIFAR-10.1 for CIFAR-10);
:func:`extra_test_errors` is shared with the final epoch of ``train``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import gin
from torch import nn

from sharpdarts.core import run_folder, validate
from sharpdarts.core.metrics import count_parameters
from sharpdarts.engine.checkpoint import file_sha256, init_weights_from
from sharpdarts.engine.context import make_context, seed_everything
from sharpdarts.engine.data import bundle as bundle_lib
from sharpdarts.engine.data import loaders
from sharpdarts.engine.job_params import REQUIRED, UNCHECKED, job_entry, param
from sharpdarts.engine.loop import evaluate


def extra_test_errors(model, bundle, batch_size, criterion, ctx, workers) -> dict:
    """Errors on the extra test sets (CIFAR-10.1 for CIFAR-10)."""
    out = {}
    for name, dataset in bundle.extra_tests.items():
        loader = loaders.make_loader(
            dataset, batch_size, workers=workers, distributed=ctx.distributed, exact=True
        )
        out[f"{name}_error"] = 100.0 - evaluate(model, loader, criterion, ctx)["acc"]
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateParams:
    """The parameters of :func:`evaluate_checkpoint` (``evaluate_checkpoint.NAME``)."""

    network: Callable[..., nn.Module] = param(
        UNCHECKED, REQUIRED, "builds the network the weights belong to."
    )
    batch_size: int = param(validate.BATCH_SIZE, 128, "evaluation batch size.")
    workers: int = param(validate.WORKERS, 0, "loader worker processes.")
    checkpoint_sha256: str | None = param(
        UNCHECKED,
        None,
        "the content hash the checkpoint must have (the runner binds it, so "
        "that the record names exactly which weights it measured); None checks nothing.",
    )


class EvaluateJob:
    """Saved weights loaded into their network, ready to be measured (see
    :func:`evaluate_checkpoint`)."""

    name = "evaluate"

    def __init__(
        self,
        seed: int,
        data: bundle_lib.DataBundle | None,
        checkpoint: str | os.PathLike,
        params: EvaluateParams,
    ):
        self.params = p = params
        path = run_folder.checkpoint_file(checkpoint)
        if p.checkpoint_sha256 is not None and file_sha256(path) != p.checkpoint_sha256:
            raise ValueError(f"{path} changed: its sha256 is no longer {p.checkpoint_sha256}")
        self.ctx = ctx = make_context()
        seed_everything(seed)
        self.bundle = bundle_lib.given_or_built(data, seed)
        self.model = p.network(
            num_classes=self.bundle.spec.num_classes, in_channels=self.bundle.spec.channels
        )
        init_weights_from(self.model, path)
        self.model.to(ctx.device)
        self.criterion = nn.CrossEntropyLoss().to(ctx.device)
        self.loader = loaders.make_loader(self.bundle.test, p.batch_size, workers=p.workers)

    def fit(self, run=None) -> dict[str, Any]:
        """Measures the weights; records the operative config into ``run`` when given."""
        result = evaluate(self.model, self.loader, self.criterion, self.ctx)
        final = {
            "test_error_top1": 100.0 - result["acc"],
            "test_error_top5": 100.0 - result["acc_top5"],
            "params_m": count_parameters(self.model) / 1e6,
        }
        final.update(
            extra_test_errors(
                self.model,
                self.bundle,
                self.params.batch_size,
                self.criterion,
                self.ctx,
                self.params.workers,
            )
        )
        if run is not None:
            run.write_text(run_folder.OPERATIVE_CONFIG, gin.operative_config_str())
        return final


@job_entry(EvaluateParams)
def evaluate_checkpoint(
    run=None,
    seed: int = 0,
    data=None,
    checkpoint: str | os.PathLike = "",
    build_only: bool = False,
    **params,
) -> dict[str, Any] | EvaluateJob:
    """Test error (and CIFAR-10.1 error for CIFAR-10) of saved weights, ours or the original's.

    Args:
        run: an evaluation run to record into, or None.
        seed: seeds everything (the data build).
        data: the datasets, when the caller built them (else ``build_datasets()``).
        checkpoint: a checkpoint file, or a run folder holding checkpoint.pt.
        build_only: return the built :class:`EvaluateJob` (measure it with ``.fit(run)``).
        **params: :class:`EvaluateParams` (gin binds them).
    """
    job = EvaluateJob(seed, data, checkpoint, EvaluateParams(**params))
    return job if build_only else job.fit(run)
