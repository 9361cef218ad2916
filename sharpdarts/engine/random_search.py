"""The DARTS paper's random-search baselines as a job: sample cells, train each briefly, keep
the best by validation, train the winner by the full protocol.

DARTS (Liu et al. 2019), Tables 1 and 2: on CIFAR-10 the best of 24 cells drawn uniformly from
the search space by validation error after 100 training epochs, then trained by the normal
evaluation protocol (3.29 +/- 0.15 % test error); on PTB the best of 8 recurrent cells by
validation perplexity after 300 epochs (59.4 test perplexity).

No second training loop: every phase is a job of an existing trainer (``@train``,
``@lm_train``) built from the experiment's own config and fitted by the one epoch loop. The
cell of each phase reaches the trainer's network through the ``GENOTYPE`` macro, as a named
genotype does in any training experiment (so each phase's operative config names its cell).
The samples' trainings are built and fitted inside the gin scope ``sample``, which is how an
experiment gives them their own settings (``sample/train.epochs = 100``,
``sample/train.valid_portion = 0.5``); the winner's training is the unscoped config. The
selection reads held-out data only: the validation error of the final weights on the part of
the training set a sample's training held out (``train``), or the validation perplexity of the
best weights (``lm_train``, as the original's train.py keeps them); never test data.

Records and resume (the simplest design that loses nothing): the run's ``run.json`` holds
``random_search.genotypes`` (the cells drawn from the run's seed, written before the first
training) and ``random_search.samples`` (one result per finished sample, appended atomically
right after its training). Each phase records through a
:class:`~sharpdarts.engine.phases.Phase`: its own checkpoints in ``phases/<name>/``, its
epochs in the run's one metrics.jsonl (sample ``i`` of ``E`` epochs owns run epochs
``i*E+1 .. (i+1)*E``, the winner's training the epochs after the samples; the winner's
training keeps the run's own checkpoint.pt, run.json fields and operative config, as any
training run, so ``sharpdarts evaluate RUN`` measures the winner's weights). A killed run
resumes by skipping the samples whose results are recorded, resuming the interrupted phase from
its own last checkpoint (exactly, as any run), and going on. A finished sample's checkpoints
are deleted once its result is recorded; a kill between the two only means that phase is
measured again from its last checkpoint, with no epoch trained twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import gin

from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.core import run_folder, validate
from sharpdarts.core.random_genotypes import sample_genotypes
from sharpdarts.engine.context import broadcast_object
from sharpdarts.engine.data.bundle import build_datasets
from sharpdarts.engine.job_params import REQUIRED, UNCHECKED, job_entry, param
from sharpdarts.engine.lm_jobs import LanguageTrainJob
from sharpdarts.engine.loop import evaluate
from sharpdarts.engine.phases import Phase
from sharpdarts.engine.train_job import TrainJob

SAMPLE_SCOPE = "sample"  # the gin scope of the samples' trainings
RECORD = "random_search"  # run.json: {"genotypes": [...], "samples": [...]}
FINAL_PHASE = "final"
_MACRO = "GENOTYPE/gin.macro.value"
_bound_here: list = [None]  # the GENOTYPE this module bound last (a second build may see it)


def selection_metric(job: Any) -> str:
    """The held-out figure a built sample's training is chosen by (lower is better):
    ``valid_error`` (percent) of an image network, ``valid_ppl`` of a language model.

    Raises:
        ValueError: the trainer has no held-out data to choose by, or is no known trainer.
    """
    if isinstance(job, LanguageTrainJob):
        return "valid_ppl"
    if isinstance(job, TrainJob):
        if job.valid_loader is None:
            raise ValueError(
                "a random search chooses its cell on held-out data: bind "
                f"{SAMPLE_SCOPE}/train.valid_portion (e.g. 0.5, as DARTS's search)"
            )
        return "valid_error"
    raise ValueError(
        f"a random search trains its samples with @train or @lm_train, not with "
        f"{type(job).__name__}"
    )


def selection_figure(job: Any, final: dict) -> tuple[str, float]:
    """``(metric, value)`` of a trained sample: the validation error of the final weights on
    the held-out part of the training set, or the validation perplexity of the best weights
    (``final['valid_ppl']``, as the original's train.py keeps them)."""
    metric = selection_metric(job)
    if metric == "valid_ppl":
        return metric, float(final["valid_ppl"])
    valid = evaluate(job.model, job.valid_loader, job.eval_criterion, job.ctx)
    return metric, 100.0 - valid["acc"]


def _scope(sample: bool):
    """The gin scope of a sample's training, or none for the winner's."""
    return gin.config_scope(SAMPLE_SCOPE) if sample else contextlib.nullcontext()


def _genotype_dict(genotype) -> dict:
    return genotypes_lib.to_dict(genotypes_lib.resolve(genotype))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomSearchParams:
    """The parameters of :func:`random_search` (``random_search.NAME`` in a config)."""

    trainer: Callable[..., Any] = param(
        UNCHECKED,
        REQUIRED,
        "the training job (``@train``, ``@lm_train``); its network must "
        "read the ``GENOTYPE`` macro. Bind the samples' own settings under ``sample/`` (their "
        "epochs; ``sample/train.valid_portion`` for an image network).",
    )
    samples: int = param(validate.COUNT, REQUIRED, "how many cells to draw and train.")
    sampler: Callable[..., Any] = param(
        UNCHECKED,
        REQUIRED,
        "draws one genotype from a numpy generator "
        "(``@sample_cell_genotype``, ``@sample_recurrent_genotype``).",
    )


class RandomSearchJob:
    """A built random search (see :func:`random_search`): the cells are drawn, and the first
    sample's training and a winner's training are built, so a bad config is refused before a
    run folder exists."""

    name = "random_search"

    def __init__(self, seed: int, data, params: RandomSearchParams):
        bound = None
        with contextlib.suppress(ValueError, KeyError):
            bound = gin.query_parameter("%GENOTYPE")
        if bound is not None and bound != _bound_here[0]:  # the config's, not a former draw's
            raise ValueError(
                f"a random search draws its own cells; GENOTYPE is bound to "
                f"{bound!r}: remove that binding"
            )
        self.params, self.seed = params, seed
        self.data = data if data is not None else build_datasets(seed=seed)
        self.genotypes = [
            _genotype_dict(g) for g in sample_genotypes(params.sampler, params.samples, seed)
        ]
        # The winner's training is built once now, only to refuse a bad config before days of
        # sampling (and so that every binding it reads counts as used); it is built again for
        # the winner.
        self._build(self.genotypes[0], sample=False)
        self.current = self._build(self.genotypes[0], sample=True)
        self.metric = selection_metric(self.current)  # refused now, not after a sample's days
        self.sample_epochs = self.current.epochs

    # Read by the runner's failure report (an out-of-memory error names the batch size).
    @property
    def ctx(self):
        return self.current.ctx

    @property
    def train_loader(self):
        return self.current.train_loader

    def _build(self, genotype: dict, sample: bool):
        """The trainer's job for one cell: the GENOTYPE macro names it, the scope ``sample``
        applies to a sample's training."""
        gin.bind_parameter(_MACRO, genotype)
        _bound_here[0] = genotype
        with _scope(sample):
            job = self.params.trainer(build_only=True, seed=self.seed, data=self.data)
        built = getattr(job.network, "genotype", None)
        if built is None or _genotype_dict(built) != genotype:
            raise ValueError(
                "the trainer's network does not take its cell from the GENOTYPE "
                "macro (bind e.g. NetworkCIFAR.genotype = %GENOTYPE)"
            )
        return job

    def _fit(self, job, run, restart: bool, sample: bool) -> dict:
        with _scope(sample):
            return job.fit(run, restart=restart)

    def fit(self, run=None, restart: bool = False) -> dict:
        """Trains the samples not yet done, then the winner; returns the winner's final metrics
        with the winner's genotype and every sample's result.

        Args:
            run: the run to record into (rank 0), or None.
            restart: passed to each phase's fit (a phase whose checkpoints are all damaged
                starts again from its first epoch).
        """
        record = broadcast_object(dict(run.info.get(RECORD) or {}) if run is not None else {})
        # A resumed run goes on with the cells it drew when it started.
        genotypes = record.get("genotypes") or self.genotypes
        results = list(record.get("samples") or [])
        if run is not None:
            run.write_text(run_folder.OPERATIVE_CONFIG, gin.operative_config_str())
            run.update(
                **{
                    RECORD: {
                        "genotypes": genotypes,
                        "samples": results,
                        "sample_epochs": self.sample_epochs,
                    }
                }
            )
        epochs = self.sample_epochs
        for i in range(len(results), self.params.samples):
            built = self.current if i == 0 and genotypes[0] == self.genotypes[0] else None
            self.current = None  # one network at a time in memory
            self.current = built or self._build(genotypes[i], sample=True)
            phase = Phase(run, f"sample_{i:02d}", i * epochs, {"sample": i}) if run else None
            final = self._fit(self.current, phase, restart, sample=True)
            metric, value = selection_figure(self.current, final)
            results.append(
                {
                    "sample": i,
                    "genotype": genotypes[i],
                    metric: value,
                    "epochs": self.current.epochs,
                }
            )
            if run is not None:
                run.update(**{RECORD: {**run.info[RECORD], "samples": results}})
                phase.remove_checkpoints()
        metric = self.metric
        winner = min(results, key=lambda r: r[metric])  # the first sample on a tie
        self.current = None
        self.current = self._build(winner["genotype"], sample=False)
        if run is not None:
            run.update(**{RECORD: {**run.info[RECORD], "winner": winner["sample"]}})
        # The winner's training is the run's own: its checkpoint.pt, its operative config.
        phase = Phase(run, FINAL_PHASE, self.params.samples * epochs, at_root=True) if run else None
        final = self._fit(self.current, phase, restart, sample=False)
        return {
            **final,
            "genotype": winner["genotype"],
            "winner_sample": winner["sample"],
            f"winner_{metric}": winner[metric],
            "samples": results,
            "sample_epochs": epochs,
        }


@job_entry(RandomSearchParams)
def random_search(
    run=None, seed: int = 0, data=None, build_only: bool = False, **params
) -> dict | RandomSearchJob:
    """Random search: ``samples`` cells, each trained by ``trainer`` in the gin scope
    ``sample``; the best by held-out validation is trained again by the unscoped config.

    Args:
        run: the run folder to record into (None: record nothing, keep no checkpoint).
        seed: draws the cells and seeds every training.
        data: the datasets, when the caller built them (else ``build_datasets()``).
        build_only: return the built :class:`RandomSearchJob` (fit it with ``.fit(run)``).
        **params: :class:`RandomSearchParams` (gin binds them).

    Returns:
        The winner's final metrics (``test_*``, ``params_m``, ...) with ``genotype`` (the
        winner's), ``winner_sample``, ``winner_valid_*`` and ``samples`` (every sample's
        genotype and validation figure), or the built job with ``build_only``.
    """
    job = RandomSearchJob(seed, data, RandomSearchParams(**params))
    return job if build_only else job.fit(run)


random_search.run_kind = "train"  # the run store's kind: its figures are a training's
