"""Random search with weight sharing (RSPS) on NAS-Bench-201: its readout, the best of random
cells scored on held-out batches.

RSPS (Li & Talwalkar, "Random Search and Reproducibility for Neural Architecture Search", UAI
2019), as the NAS-Bench-201 authors run it on their space (github.com/D-X-Y/AutoDL-Projects,
commit f46486e, ``exps/NAS-Bench-201-algos/RANDOM-NAS.py`` with the supernet
``xautodl/models/cell_searchs/search_model_random.py``; docs/nb201.md):

- every training step draws one cell uniformly and trains the shared weights on it alone. The
  supernet, ``NB201SearchNetwork(method='rsps')``, draws the cell in its forward; it has no
  architecture parameters, so the search job's architecture step has nothing to do;
- the epoch's validation runs each held-out batch under a cell of its own (the same forward);
- the readout (:class:`RandomSelection`, bound as ``search.selection``) draws ``num`` more cells
  (100) and scores each by its top-1 accuracy on ONE held-out batch of ``batch_size`` (512),
  the batches taken in turn from a new pass over the held-out half (another pass when it runs
  out), in eval mode; the best score wins, the first of equals (their ``np.argmax``). It runs
  after each epoch (the epoch's genotype) and once more after the last (the search's result).

The cells come from Python's global ``random`` alone (``random.choice`` per edge, as their
``random_genotype``), which the search seeds with its seed (their ``prepare_seed``) and keeps in
each checkpoint; nothing else in the search draws from it, so a seed gives the authors' stream
of cells. The order of the held-out batches comes from torch's global generator, as their
``SubsetRandomSampler``'s, also kept in each checkpoint: the selection's loader holds no state
of its own, and a resumed search selects as an uninterrupted one.
"""

from __future__ import annotations

import contextlib

import gin
import torch
from torch import nn

from sharpdarts.core import validate
from sharpdarts.engine.context import Context
from sharpdarts.engine.data import loaders
from sharpdarts.errors import UserError


def top1(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy in percent as the authors' ``obtain_accuracy`` computes it (the first of
    the top 5, float32 hits times ``100 / n``): a selection between equal scores then sees the
    ties they see."""
    pred = logits.topk(min(5, logits.size(1)), dim=1).indices[:, 0]
    hits = pred.eq(target).float().sum()
    return hits.mul_(100.0 / target.size(0)).item()


@torch.no_grad()
def best_of_random_cells(
    model: nn.Module, batches, num: int, ctx: Context | None = None
) -> tuple[str, float, list[tuple[str, float]]]:
    """Scores ``num`` random cells of an RSPS supernet, one held-out batch each (their
    ``search_find_best``).

    Args:
        model: ``NB201SearchNetwork(method='rsps')`` (each forward draws a cell).
        batches: a re-iterable of ``(x, y)`` batches (a loader); a new pass starts when one ends.
        num: the cells to score.
        ctx: the device and autocast (None: where the model is, no autocast).

    Returns:
        The winning cell, its score, and every ``(cell, score)`` in order.
    """
    if getattr(model, "method", None) != "rsps":
        raise UserError(
            "the random selection reads cells drawn by an RSPS supernet: bind "
            "search.network = @NB201SearchNetwork and NB201SearchNetwork.method = 'rsps'."
        )
    model.eval()
    scored: list[tuple[str, float]] = []
    passes = iter(batches)
    for _ in range(num):
        try:
            x, y = next(passes)
        except StopIteration:  # the authors' `except: loader_iter = iter(xloader)`
            passes = iter(batches)
            x, y = next(passes)
        device = ctx.device if ctx is not None else next(model.parameters()).device
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with ctx.autocast() if ctx is not None else contextlib.nullcontext():
            logits = model(x)
        scored.append((model.sampled, top1(logits.float(), y)))
    best = max(range(num), key=lambda i: scored[i][1])  # the first of equals, as np.argmax
    return scored[best][0], scored[best][1], scored


class RandomSelection:
    """RSPS's readout for the search job (``search.selection = @random_selection()``): called
    with the job after each epoch and at the end; returns the winning cell and its figures
    (``selection_acc``: its score, percent).

    Args:
        num: cells scored (their ``--select_num``, 100).
        batch_size: images per held-out batch (their ``test_batch_size``, 512).
    """

    def __init__(self, num: int, batch_size: int):
        self.num, self.batch_size = num, batch_size
        self._loaders: tuple = (None, None)  # (the job's valid_loader, ours built from it)

    def loader(self, job):
        """The held-out half in batches of ``batch_size``, in a new random order each pass from
        torch's global generator: the images and indices of the job's ``valid_loader``."""
        source, loader = self._loaders
        if source is not job.valid_loader:
            source = job.valid_loader
            indices = getattr(source.sampler, "indices", None)
            loader = loaders.make_loader(
                source.dataset,
                self.batch_size,
                shuffle=indices is None,
                indices=indices,
                workers=job.params.workers,
            )
            self._loaders = (source, loader)
        return loader

    def __call__(self, job) -> tuple[str, dict]:
        cell, score, _ = best_of_random_cells(job.network, self.loader(job), self.num, job.ctx)
        return cell, {"selection_acc": score}


@gin.configurable
@validate.params(num=validate.COUNT, batch_size=validate.BATCH_SIZE)
def random_selection(num: int = 100, batch_size: int = 512) -> RandomSelection:
    """RSPS's readout with its settings bound when the search is built (see
    :class:`RandomSelection`; xautodl's ``RANDOM-NAS.sh``: ``--select_num 100``, and
    ``RANDOM.config``'s ``test_batch_size`` 512)."""
    return RandomSelection(num, batch_size)
