"""The recurrent architecture search (``rnn/train_search.py``) as a job of the one loop.

Each training step (``docs/facts/darts_rnn.md``, section 3): the validation batch at row
``i mod (rows - 1)`` of the batchified validation split (``bptt`` rows, same columns as
training) gives one architecture step (first order or unrolled, with the validation hidden
state carried from step to step); then the weights take one SGD step on the training window
with TAR, the original's clip over the weights (never the alphas), and the lr scaled by
``seq_len / bptt``. Window lengths are 35 or 17 (no jitter). Each epoch ends with the
validation perplexity at batch 10 and the genotype of the current alphas.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from sharpdarts.core import recurrent_genotypes
from sharpdarts.engine.context import average_over_processes
from sharpdarts.engine.data import corpus as corpus_lib
from sharpdarts.engine.job_params import UNCHECKED, job_entry, param
from sharpdarts.engine.lm_architect import RecurrentArchitect
from sharpdarts.engine.lm_jobs import LanguageParams, _LanguageJob, evaluate_ppl
from sharpdarts.engine.loop import ArchitectureSearch


@torch.no_grad()
def _average_buffers(model: nn.Module) -> None:
    """Averages the search cell's batch-norm running statistics over the ranks.

    Each rank's training passes normalise by its own columns' statistics (not the whole
    batch's, as one process would) and update its own running statistics; evaluation uses
    those, so they are averaged first, and every rank evaluates and saves the same network.
    They approximate one process's statistics, not equal them: besides the per-rank
    normalisation upstream, an average of per-rank variances lacks the spread between the
    ranks' means.
    """
    floats = [b for b in model.buffers() if b.is_floating_point()]
    for b, mean in zip(floats, average_over_processes([b.clone() for b in floats])):
        b.copy_(mean)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LanguageSearchParams(LanguageParams):
    """The parameters of :func:`lm_search` (``lm_search.NAME`` in a config). The architect's
    Adam settings are ``RecurrentArchitect.lr`` etc. (3e-3, (0.9, 0.999), 1e-3)."""

    weight_decay: float = param(
        UNCHECKED, 5e-7, "SGD's weight decay, also that of the architect's virtual weight step."
    )
    order: int = param(
        UNCHECKED, 2, "1 (first order) or 2 (unrolled, the README's ``--unrolled``)."
    )


class LanguageSearchJob(ArchitectureSearch, _LanguageJob):
    """A built recurrent search (see :func:`lm_search`)."""

    name = "lm_search"

    def __init__(self, seed: int, data, params: LanguageSearchParams):
        super().__init__(seed, data, params, jitter=False)
        # The architecture's batches: the validation split in training-sized columns.
        self.search_data = self._columns(self._corpus.valid, params.batch_size)
        self.architect = RecurrentArchitect(
            self.model, order=params.order, network_weight_decay=params.weight_decay
        )
        self.hidden_valid = None
        self.best = {"valid_loss": math.inf, "epoch": 0, "genotype": None}
        self.last_valid_ppl = None

    def weights(self) -> list[nn.Parameter]:
        return self.model.weights()

    def run_fields(self) -> dict:
        return {
            **super().run_fields(),
            "primitives": self.model.primitives,
            "order": self.architect.order,
        }

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self.hidden_valid = self.model.init_hidden(self.params.batch_size)

    def inside_state(self) -> dict:
        # The architecture's batches follow the training windows' rows: their place is kept.
        return {**super().inside_state(), "hidden_valid": self._whole_batch(self.hidden_valid)}

    def load_inside_state(self, state: dict) -> None:
        super().load_inside_state(state)
        self.hidden_valid = self._own_columns(state["hidden_valid"])

    def train_step(self, x, y):
        base = self._scaled_lr()
        rows = self.search_data.size(0) - 1
        start = self.train_loader.start % rows
        xv, yv = corpus_lib.get_batch(self.search_data, start, self.params.bptt)
        self.hidden = [h.detach() for h in self.hidden]
        self.hidden_valid = self.architect.step(
            self.hidden, x, y, self.hidden_valid, xv, yv, eta=self.optimizer.param_groups[0]["lr"]
        )
        loss, log_probs = self._weight_step(x, y)
        self.optimizer.param_groups[0]["lr"] = base
        return loss, log_probs

    def end_epoch(self, epoch: int) -> dict:
        if self.ctx.distributed:
            _average_buffers(self.model)
        valid = evaluate_ppl(self.model, self.valid_data, self.params.bptt, self.ctx)
        genotype = recurrent_genotypes.recurrent_to_dict(self.model.genotype())
        if valid["loss"] < self.best["valid_loss"]:
            self.best.update(valid_loss=valid["loss"], epoch=epoch, genotype=genotype)
        self.last_valid_ppl = valid["ppl"]
        with torch.no_grad():
            alphas = torch.softmax(self.model.alphas.float(), -1).cpu().tolist()
        return {
            "valid_loss": valid["loss"],
            "valid_ppl": valid["ppl"],
            "genotype": genotype,
            "alphas_recurrent": alphas,
        }

    def final(self, trained: bool) -> dict:
        genotype = recurrent_genotypes.recurrent_to_dict(self.model.genotype())
        return {
            "genotype": genotype,
            "genotype_epoch": self.epochs,
            "best_genotype": self.best["genotype"],
            "best_epoch": self.best["epoch"],
            "best_valid_ppl": math.exp(min(self.best["valid_loss"], 700.0)),
            "valid_ppl": self.last_valid_ppl,
        }


@job_entry(LanguageSearchParams)
def lm_search(
    run=None, seed: int = 3, data=None, build_only: bool = False, **params
) -> dict | LanguageSearchJob:
    """DARTS's recurrent search on a corpus.

    Args:
        run: the run folder to record into (None: record nothing, keep no checkpoint).
        seed: seeds everything (3, as the original).
        data: the corpus bundle, when the caller built it.
        build_only: return the built job.
        **params: :class:`LanguageSearchParams` (gin binds them).
    """
    job = LanguageSearchJob(seed, data, LanguageSearchParams(**params))
    return job if build_only else job.fit(run)


lm_search.run_kind = "search"  # the run store's kind: a search run (a final genotype)
