"""Language-model jobs: DARTS's recurrent search (``rnn/train_search.py``) and training
(``rnn/train.py``), fitted by the one epoch loop of :mod:`sharpdarts.engine.loop`.

What they share with the image jobs is the loop (resume, one metrics line per epoch, the
checkpoint, the finite-loss check, mid-epoch checkpoints); what differs is injected here: the
batches are BPTT windows of a batchified corpus (:class:`~.corpus.Windows`, the original's
variable lengths), the hidden state is carried from window to window and zeroed each epoch,
each step's lr is scaled by ``seq_len / bptt``, the loss adds TAR (and AR), and evaluation
reports perplexity. Training switches from SGD to averaged SGD on the original's
non-monotonic trigger; the switch, the averaged weights and the best weights are in the
checkpoint, so a resumed run continues exactly; a mid-epoch checkpoint also keeps the hidden
state and the windows' place. Facts: ``docs/facts/darts_rnn.md``, sections 1, 3 and 5.

Under torchrun (``batch_size`` is then per process) each split is batchified at the whole
batch and every rank takes its own block of columns (:func:`~.corpus.rank_columns`): the ranks
together see exactly one process's batches at the whole batch. Weight gradients are averaged
over the ranks before the clip, so every rank holds the same weights; each rank draws its own
dropout masks (torch's seed per rank) but the same BPTT window lengths (numpy's stream keeps
the run seed, so the ranks step together); evaluation sums over the ranks' columns, every
token once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import gin
import torch
import torch.nn.functional as F
from torch import nn

from sharpdarts.core import run_folder
from sharpdarts.core.metrics import count_parameters
from sharpdarts.core.schedules import constant_schedule
from sharpdarts.engine.context import (
    Context,
    gather_from_processes,
    make_context,
    reduce_sum,
    seed_everything,
)
from sharpdarts.engine.data import corpus as corpus_lib
from sharpdarts.engine.data.bundle import given_or_built
from sharpdarts.engine.data.shards import rank_seed
from sharpdarts.engine.job_params import REQUIRED, UNCHECKED, job_entry, param
from sharpdarts.engine.loop import Job, weight_step
from sharpdarts.engine.preemption import midepoch_checkpoints
from sharpdarts.errors import UserError
from sharpdarts.nn.recurrent.model import ar_tar_penalty


@torch.no_grad()
def evaluate_ppl(
    model: nn.Module, source: torch.Tensor, bptt: int = 35, ctx: Context | None = None
) -> dict:
    """The original's evaluation: windows of ``bptt`` with the hidden state carried; the loss
    is the sum of window-mean NLL times window length, divided by the rows of ``source``.

    That is the sum of every token's NLL over ``columns * rows``; under torchrun (``ctx``)
    each rank sums over its own columns of ``source`` and the sums are added, so every token
    counts exactly once and the figure equals one process's.
    """
    model.eval()
    part = source
    if ctx is not None and ctx.distributed:
        part = corpus_lib.rank_columns(source, ctx.rank, ctx.world_size)
    total = torch.zeros((), dtype=torch.float64, device=source.device)
    if part.size(1):  # a rank may hold no column (the test's single column)
        hidden = model.init_hidden(part.size(1))
        for i, _ in corpus_lib.eval_windows(part.size(0), bptt):
            x, y = corpus_lib.get_batch(part, i, bptt)
            log_probs, hidden = model(x, hidden)
            nll = F.nll_loss(log_probs.view(-1, log_probs.size(-1)), y)
            total += nll.double() * y.numel()  # the window mean times its tokens
    if ctx is not None:
        reduce_sum(total, ctx)
    loss = total.item() / (source.size(0) * source.size(1))
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}


def _corpus(data, seed: int) -> corpus_lib.Corpus:
    bundle = given_or_built(data, seed)
    if bundle.spec.modality != "text":
        raise UserError(
            f"A language-model job needs a text corpus (build_datasets.name = "
            f"'ptb', 'wikitext2', ...), not the image dataset {bundle.spec.name!r}."
        )
    return bundle.train


@dataclasses.dataclass(frozen=True, kw_only=True)
class LanguageParams:
    """The parameters that the language-model search and training share."""

    epochs: int = param(
        UNCHECKED,
        REQUIRED,
        'training epochs (the original\'s 8000 is "until stopped"), or search epochs (50).',
    )
    batch_size: int = param(
        UNCHECKED,
        REQUIRED,
        "columns of the training (and architecture) "
        "batches: 64 to train, 256 to search; per process under torchrun.",
    )
    network: Callable[..., nn.Module] = param(
        UNCHECKED,
        REQUIRED,
        "builds the model from ``ntoken`` (``@RNNModel``, ``@RNNSearchModel``).",
    )
    learning_rate: float = param(UNCHECKED, 20.0, "SGD's lr, then ASGD's.")
    bptt: int = param(UNCHECKED, 35, "the base BPTT length.")
    grad_clip: float = param(UNCHECKED, 0.25, "global gradient-norm clip.")
    weight_decay: float = param(
        UNCHECKED, 8e-7, "SGD's and ASGD's weight decay (5e-7 on WikiText-2)."
    )
    alpha: float = param(UNCHECKED, 0.0, "AR weight.")
    beta: float = param(UNCHECKED, 1e-3, "TAR weight.")
    eval_batch_size: int = param(
        UNCHECKED, corpus_lib.EVAL_BATCH_SIZE, "validation batch columns; test uses batch 1."
    )
    show_progress: bool = param(UNCHECKED, True, "a tqdm bar per epoch.")


class _LanguageJob(Job):
    """What the search and the training share: data, model, SGD, the TAR step."""

    def __init__(self, seed: int, data, params: LanguageParams, *, jitter: bool):
        self.params = p = params
        self.ctx = ctx = make_context()
        seed_everything(seed)
        self._corpus = corpus = _corpus(data, seed)
        self.ntokens = corpus.ntokens
        self.train_data = self._columns(corpus.train, p.batch_size)
        self.valid_data = corpus_lib.batchify(corpus.valid, p.eval_batch_size).to(ctx.device)
        self.test_data = corpus_lib.batchify(corpus.test, corpus_lib.TEST_BATCH_SIZE).to(ctx.device)
        self.train_loader = corpus_lib.Windows(self.train_data, p.bptt, jitter)
        self.rng_loaders = []  # the windows draw from numpy's global state, which is saved
        self.model = p.network(ntoken=corpus.ntokens).to(ctx.device)
        if ctx.distributed:  # the same initial network everywhere, then each rank's masks
            torch.manual_seed(rank_seed(seed, ctx.rank))
        self.optimizer = self._sgd()
        # No per-epoch schedule: the lr changes per step only (scaled by the window length).
        self.scheduler = constant_schedule(self.optimizer, p.epochs)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=False)
        self.epochs, self.show_progress = p.epochs, p.show_progress
        self.checkpointing = midepoch_checkpoints()
        self.hidden = None

    def _sgd(self) -> torch.optim.SGD:
        p = self.params
        return torch.optim.SGD(self.weights(), lr=p.learning_rate, weight_decay=p.weight_decay)

    def _columns(self, tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
        """This process's ``batch_size`` columns of the split batchified at the whole batch
        (all of it in one process)."""
        ctx = self.ctx
        whole = corpus_lib.batchify(tokens, batch_size * ctx.world_size)
        return corpus_lib.rank_columns(whole, ctx.rank, ctx.world_size).to(ctx.device)

    def weights(self) -> list[nn.Parameter]:
        """The parameters the weight optimizer steps."""
        return list(self.model.parameters())

    def run_fields(self) -> dict:
        return {"parameters": sum(p.numel() for p in self.weights()), "vocabulary": self.ntokens}

    def start_epoch(self, epoch: int) -> None:
        self.hidden = self.model.init_hidden(self.params.batch_size)  # zeroed every epoch

    def _weight_step(self, x, y):
        """TAR/AR-regularised NLL, backward, the original's clip, one step."""
        self.hidden = [h.detach() for h in self.hidden]
        log_probs, self.hidden, raw, dropped = self.model(x, self.hidden, return_h=True)
        log_probs = log_probs.view(-1, log_probs.size(-1))
        raw_loss = F.nll_loss(log_probs, y)
        loss = raw_loss + ar_tar_penalty(raw, dropped, self.params.alpha, self.params.beta)
        # Under torchrun the gradients are averaged over the ranks before the clip (its norm
        # is the whole batch's), so every rank takes the same step.
        weight_step(
            self.optimizer,
            self.scaler,
            loss,
            self.weights(),
            self.params.grad_clip,
            average=self.ctx.distributed,
        )
        return raw_loss.detach(), log_probs.detach()

    def _scaled_lr(self):
        """Scales the lr by the window's sampled length; returns the lr to restore."""
        group = self.optimizer.param_groups[0]
        base = group["lr"]
        group["lr"] = base * self.train_loader.seq_len / self.params.bptt
        return base

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.hidden = None

    def inside_state(self) -> dict:
        return {"hidden": self._whole_batch(self.hidden)}

    def load_inside_state(self, state: dict) -> None:
        self.hidden = self._own_columns(state["hidden"])

    def _whole_batch(self, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        """A hidden state of this process's columns as the whole batch's (every process's
        columns in rank order: :func:`~.corpus.rank_columns`'s layout), detached."""
        hidden = [h.detach() for h in hidden]
        if not self.ctx.distributed:
            return [h.clone() for h in hidden]
        return [torch.cat(gather_from_processes(h), dim=1) for h in hidden]

    def _own_columns(self, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        """This process's columns of a whole batch's hidden state, on its device."""
        ctx = self.ctx
        return [corpus_lib.rank_columns(h, ctx.rank, ctx.world_size).to(ctx.device) for h in hidden]


# ---- Training ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class LanguageTrainParams(LanguageParams):
    """The parameters of :func:`lm_train` (``lm_train.NAME`` in a config)."""

    nonmono: int = param(
        UNCHECKED,
        5,
        "switch to ASGD when validation is worse than the best before the last ``nonmono`` epochs.",
    )


class LanguageTrainJob(_LanguageJob):
    """A built language-model training (see :func:`lm_train`)."""

    name = "lm_train"

    def __init__(self, seed: int, data, params: LanguageTrainParams):
        super().__init__(seed, data, params, jitter=True)
        self.asgd_epoch = None  # the epoch after which ASGD took over
        self.val_history: list[float] = []
        self.best = {"valid_loss": math.inf, "epoch": 0}
        self.best_model: dict | None = None
        self.params_m = count_parameters(self.model) / 1e6

    @property
    def averaging(self) -> bool:
        return self.asgd_epoch is not None

    def _switch_to_asgd(self) -> None:
        self.optimizer = torch.optim.ASGD(
            self.weights(),
            lr=self.params.learning_rate,
            t0=0,
            lambd=0.0,
            weight_decay=self.params.weight_decay,
        )

    def train_step(self, x, y):
        base = self._scaled_lr()
        loss, log_probs = self._weight_step(x, y)
        self.optimizer.param_groups[0]["lr"] = base
        return loss, log_probs

    def _averaged(self):
        """The ASGD average of each weight (its value before the first averaged step)."""
        return {p: self.optimizer.state[p].get("ax", p.detach()) for p in self.weights()}

    def end_epoch(self, epoch: int) -> dict:
        record = {"asgd": self.averaging}
        if self.averaging:  # validate (and keep) the averaged weights, as the original
            saved = {p: p.detach().clone() for p in self.weights()}
            with torch.no_grad():
                for p, ax in self._averaged().items():
                    p.copy_(ax)
            valid = evaluate_ppl(self.model, self.valid_data, self.params.bptt, self.ctx)
            self._keep_if_best(valid["loss"], epoch)
            with torch.no_grad():
                for p, value in saved.items():
                    p.copy_(value)
        else:
            valid = evaluate_ppl(self.model, self.valid_data, self.params.bptt, self.ctx)
            self._keep_if_best(valid["loss"], epoch)
            hist, nonmono = self.val_history, self.params.nonmono
            if len(hist) > nonmono and valid["loss"] > min(hist[:-nonmono]):
                self._switch_to_asgd()
                self.asgd_epoch = epoch
                record["switched_to_asgd"] = True
            hist.append(valid["loss"])
        record.update(valid_loss=valid["loss"], valid_ppl=valid["ppl"])
        return record

    def _keep_if_best(self, loss: float, epoch: int) -> None:
        if loss < self.best["valid_loss"]:
            self.best.update(valid_loss=loss, epoch=epoch)
            self.best_model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def extra_state(self) -> dict:
        return {
            "asgd_epoch": self.asgd_epoch,
            "val_history": list(self.val_history),
            "best": dict(self.best),
            "best_model": self.best_model,
        }

    def load_state(self, state: dict) -> None:
        # The optimizer in the checkpoint is ASGD after the switch, SGD before: build that one
        # before loading (a signal that stops an evaluation after its switch goes back to SGD).
        switched = state.get("asgd_epoch") is not None
        if switched != isinstance(self.optimizer, torch.optim.ASGD):
            if switched:
                self._switch_to_asgd()
            else:
                self.optimizer = self._sgd()
        super().load_state(state)

    def load_extra_state(self, state: dict) -> None:
        self.asgd_epoch = state["asgd_epoch"]
        self.val_history = list(state["val_history"])
        self.best.update(state["best"])
        self.best_model = state["best_model"]

    def final(self, trained: bool) -> dict:
        """Test perplexity (batch 1) of the best weights by validation, as the original's
        final test of its saved model."""
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.best_model is not None:
            self.model.load_state_dict(self.best_model)
        test = evaluate_ppl(self.model, self.test_data, self.params.bptt, self.ctx)
        self.model.load_state_dict(current)
        valid_ppl = math.exp(min(self.best["valid_loss"], 700.0))
        return {
            "test_loss": test["loss"],
            "test_ppl": test["ppl"],
            "valid_ppl": valid_ppl,
            "best_epoch": self.best["epoch"],
            "asgd_epoch": self.asgd_epoch,
            "params_m": self.params_m,
        }


@job_entry(LanguageTrainParams)
def lm_train(
    run=None, seed: int = 1267, data=None, build_only: bool = False, **params
) -> dict | LanguageTrainJob:
    """Trains a fixed recurrent cell's language model (``rnn/train.py``).

    Args:
        run: the run folder to record into (None: record nothing, keep no checkpoint).
        seed: seeds everything.
        data: the corpus bundle, when the caller built it (else ``build_datasets()``).
        build_only: return the built job (fit it with ``.fit(run)``).
        **params: :class:`LanguageTrainParams` (gin binds them).
    """
    job = LanguageTrainJob(seed, data, LanguageTrainParams(**params))
    return job if build_only else job.fit(run)


lm_train.run_kind = "train"  # the run store's kind: a training run (test_* metrics)


# ---- Evaluation of saved weights ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True, kw_only=True)
class LanguageEvaluateParams:
    """The parameters of :func:`lm_evaluate_checkpoint` (``lm_evaluate_checkpoint.NAME``)."""

    network: Callable[..., nn.Module] = param(
        UNCHECKED, REQUIRED, "builds the model the weights belong to (``@RNNModel``)."
    )
    bptt: int = param(UNCHECKED, 35, "evaluation window length.")
    checkpoint_sha256: str | None = param(
        UNCHECKED, None, "the content hash the checkpoint must have, or None."
    )


class LanguageEvaluateJob:
    """Saved recurrent weights (ours or in the original's state-dict layout) in their model,
    ready to be measured (see :func:`lm_evaluate_checkpoint`)."""

    name = "lm_evaluate"

    def __init__(self, seed: int, data, checkpoint, params: LanguageEvaluateParams):
        from sharpdarts.engine.checkpoint import file_sha256, load_checkpoint
        from sharpdarts.nn.models import load_original_state_dict

        self.params = p = params
        path = run_folder.checkpoint_file(checkpoint)
        if p.checkpoint_sha256 is not None and file_sha256(path) != p.checkpoint_sha256:
            raise ValueError(f"{path} changed: its sha256 is no longer {p.checkpoint_sha256}")
        self.ctx = make_context()
        seed_everything(seed)
        corpus = _corpus(data, seed)
        self.model = p.network(ntoken=corpus.ntokens)
        state = load_checkpoint(path)
        # Our training checkpoints keep the best weights by validation (averaged once ASGD
        # runs), which the original's model.pt holds and its test.py measures.
        if isinstance(state, dict) and isinstance(state.get("best_model"), dict):
            state = state["best_model"]
        load_original_state_dict(
            self.model, state.get("model", state) if isinstance(state, dict) else state
        )
        self.model.to(self.ctx.device)
        self.test_data = corpus_lib.batchify(corpus.test, corpus_lib.TEST_BATCH_SIZE).to(
            self.ctx.device
        )

    def fit(self, run=None) -> dict:
        """Test perplexity at batch 1 (as ``rnn/test.py``); records the config into ``run``."""
        test = evaluate_ppl(self.model, self.test_data, self.params.bptt, self.ctx)
        if run is not None:
            run.write_text(run_folder.OPERATIVE_CONFIG, gin.operative_config_str())
        return {
            "test_loss": test["loss"],
            "test_ppl": test["ppl"],
            "params_m": count_parameters(self.model) / 1e6,
        }


@job_entry(LanguageEvaluateParams)
def lm_evaluate_checkpoint(
    run=None, seed: int = 0, data=None, checkpoint="", build_only: bool = False, **params
) -> dict | LanguageEvaluateJob:
    """Test perplexity of saved recurrent weights (``rnn/test.py``: batch 1, BPTT 35).

    Args:
        run: an evaluation run to record into, or None.
        seed: seeds everything.
        data: the corpus bundle, when the caller built it.
        checkpoint: a checkpoint file (ours, or a state dict in the original's layout), or a
            run folder holding checkpoint.pt.
        build_only: return the built job.
        **params: :class:`LanguageEvaluateParams` (gin binds them).
    """
    job = LanguageEvaluateJob(seed, data, checkpoint, LanguageEvaluateParams(**params))
    return job if build_only else job.fit(run)
