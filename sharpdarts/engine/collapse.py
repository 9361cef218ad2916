"""Collapse, measured: what a search records per epoch about its drift to parameter-free ops,
and DARTS-ES, the early stop of R-DARTS on it (Zela et al., ICLR 2020; docs/collapse.md).

Per epoch the search's metrics line gets:

- ``hessian_eigenvalue``: the dominant (largest) eigenvalue of the Hessian of the validation
  loss with respect to the architecture parameters, by power iteration on Hessian-vector
  products (double backprop), on a fixed set of batches of the architecture half of the
  training set (chosen once from the seed), in epoch 1, every ``every`` epochs after it and in
  the last epoch (R-DARTS: 0-based epochs divisible by ``report_freq_hessian`` and the last);
  ``None`` in the other epochs. ``hessian_iterations`` is the number of products it took.
- ``skip_connections_normal`` / ``_reduce``: skip connections in the epoch's genotype;
- ``op_entropy_normal`` / ``_reduce`` (per edge, nats) and ``op_entropy_mean``: the entropy of
  each edge's op weights softmax(alpha).

The measurement leaves the search as it was: the random states are restored, the network's
weights and buffers (BatchNorm running statistics) are read through
``torch.func.functional_call`` on copies, and the train/eval mode is put back, so every later
number of the search is the one it would be without it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import gin
import numpy as np
import torch
from torch.func import functional_call
from torch.utils.data import default_collate

from sharpdarts.core import validate
from sharpdarts.core.nb201_arch import parse_arch
from sharpdarts.engine.context import (
    average_over_processes,
    rng_state,
    seed_everything,
    set_rng_state,
)
from sharpdarts.errors import UserError

Tensors = list[torch.Tensor]
SKIP = "skip_connect"


class SearchStopped(Exception):
    """Raised at the start of the epoch after DARTS-ES decided to stop (caught by the job)."""


# ---- Settings ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DartsES:
    """R-DARTS's early-stop rule (``EVLocalAvg`` in ``src/utils.py`` of automl/RobustDARTS).

    Each measured eigenvalue from the ``ceil(window / 2)``-th on gives a local average: the mean
    of the last ``window`` eigenvalues (all of them while fewer), standing for the epoch
    ``every * floor(window / 2)`` before the current one. The search stops when the newest
    local average exceeds ``factor`` times the one ``delta`` measurements before it, provided
    that older one's epoch is at least ``start_epoch``; the genotype of that older epoch is
    kept. Never checked in the last epoch.
    """

    window: int = 5
    delta: int = 4
    factor: float = 1.3
    start_epoch: int = 11

    def check(self, history: dict, epoch: int, every: int) -> dict | None:
        """The stop ``{'stop_epoch', 'genotype', 'decided_epoch'}`` after ``epoch``, or None.

        ``history`` holds ``eigenvalues`` and ``genotypes`` (by epoch) of the measured epochs.
        """
        evs = history["eigenvalues"]
        k = len(evs)
        if k < math.ceil(self.window / 2):
            return None
        history["local_averages"].append(float(np.mean(evs[max(0, k - self.window) : k])))
        averages = history["local_averages"]
        stop_epoch = epoch - every * (self.window // 2) - every * self.delta
        if stop_epoch < self.start_epoch or len(averages) <= self.delta:
            return None
        if averages[-1] / averages[-1 - self.delta] > self.factor:
            return {
                "stop_epoch": stop_epoch,
                "genotype": history["genotypes"][str(stop_epoch)],
                "decided_epoch": epoch,
            }
        return None


@gin.configurable
@validate.params(
    window=validate.COUNT,
    delta=validate.COUNT,
    factor=validate.Real("a number > 0", low=0.0, low_open=True),
    start_epoch=validate.COUNT,
)
def darts_es(
    window: int = 5, delta: int = 4, factor: float = 1.3, start_epoch: int = 11
) -> DartsES:
    """DARTS-ES, R-DARTS's early stop on the dominant eigenvalue (``collapse_metrics.early_stop
    = @darts_es()``); the defaults are R-DARTS's ``--window 5 --delta 4 --factor 1.3
    --es_start_epoch 10`` (its epochs count from 0, ours from 1: 10 -> 11)."""
    return DartsES(window=window, delta=delta, factor=factor, start_epoch=start_epoch)


@dataclasses.dataclass(frozen=True)
class CollapseSettings:
    """The settings :func:`collapse_metrics` binds (see there)."""

    every: int = 2
    batches: int = 1
    iterations: int = 50
    tolerance: float = 1e-3
    with_weight_decay: bool = True
    early_stop: DartsES | None = None
    last_epoch: bool = True


@gin.configurable
@validate.params(
    every=validate.WORKERS,
    batches=validate.COUNT,
    iterations=validate.COUNT,
    tolerance=validate.NON_NEGATIVE,
)
def collapse_metrics(
    every: int = 2,
    batches: int = 1,
    iterations: int = 50,
    tolerance: float = 1e-3,
    with_weight_decay: bool = True,
    early_stop: DartsES | None = None,
    last_epoch: bool = True,
) -> CollapseSettings:
    """What a search measures of its collapse (``collapse_metrics.NAME`` in a config).

    Args:
        every: the eigenvalue is measured in epoch 1, every ``every`` epochs after it and in
            the last epoch; 0 measures none (skip counts and entropies are always recorded).
            2, as R-DARTS's search scripts (``--report_freq_hessian 2``).
        batches: the fixed validation batches (of the search's batch size) the loss is
            averaged over; 1, as R-DARTS (one batch of 64).
        iterations: at most this many Hessian-vector products per power iteration.
        tolerance: stop once the eigenvalue estimate changes by at most this share of itself.
        with_weight_decay: add the architect's L2 weight decay to the Hessian (a shift of every
            eigenvalue by it), as R-DARTS's ``Analyzer`` does; False: the loss alone.
        early_stop: ``@darts_es()`` to stop the search by DARTS-ES; None never stops.
        last_epoch: also measure in the last epoch (R-DARTS does); False leaves it to the
            ``every`` rule. ``--smoke`` (2 epochs) sets False: one measurement, not two, still
            runs the whole eigenvalue path (DARTS-ES never decides in the last epoch anyway).
    """
    if early_stop is not None and not every:
        raise UserError(
            "collapse_metrics.early_stop needs the eigenvalue: set collapse_metrics.every to "
            "1 or more (DARTS-ES reads the eigenvalues it measures), or drop the early stop."
        )
    return CollapseSettings(
        every, batches, iterations, tolerance, with_weight_decay, early_stop, last_epoch
    )


# ---- The dominant eigenvalue -------------------------------------------------------------------
def _dot(a: Tensors, b: Tensors) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def power_iteration(
    hvp: Callable[[Tensors], Tensors],
    like: Sequence[torch.Tensor],
    iterations: int,
    tolerance: float,
    generator: torch.Generator,
) -> tuple[float, int]:
    """The eigenvalue of largest magnitude of a symmetric operator, and the products it took.

    The start vector is drawn from ``generator``; each step's estimate is the Rayleigh
    quotient ``v . Hv`` of the unit vector ``v``.
    """
    v = [torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device) for t in like]
    norm = math.sqrt(_dot(v, v))
    v = [x / norm for x in v]
    estimate = 0.0
    for i in range(1, iterations + 1):
        hv = hvp(v)
        new = _dot(v, hv)
        norm = math.sqrt(_dot(hv, hv))
        if norm == 0.0:  # v lies in the null space: every eigenvalue it touched is 0
            return 0.0, i
        v = [x / norm for x in hv]
        if i > 1 and abs(new - estimate) <= tolerance * abs(new):
            return new, i
        estimate = new
    return estimate, iterations


def dominant_eigenvalue(
    hvp: Callable[[Tensors], Tensors],
    like: Sequence[torch.Tensor],
    iterations: int,
    tolerance: float,
    generator: torch.Generator,
) -> tuple[float, int]:
    """The largest (algebraic) eigenvalue of a symmetric operator, as R-DARTS's
    ``max(eigvals(H))``, and the products it took.

    Power iteration finds the eigenvalue of largest magnitude; when that is negative, a second
    one on ``H - lambda I`` (all its eigenvalues >= 0) finds the largest.
    """
    value, used = power_iteration(hvp, like, iterations, tolerance, generator)
    if value < 0.0:
        shift = value

        def shifted(v: Tensors) -> Tensors:
            return [h - shift * x for h, x in zip(hvp(v), v)]

        top, more = power_iteration(shifted, like, iterations, tolerance, generator)
        value, used = top + shift, used + more
    return value, used


def _logits(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def hessian_vector_product(
    model: torch.nn.Module,
    criterion: Callable,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    weight_decay: float = 0.0,
) -> tuple[Callable[[Tensors], Tensors], Tensors]:
    """``v -> H v`` for the Hessian of the mean loss over ``batches`` (plus
    ``weight_decay / 2 * |alpha|^2``) with respect to ``model.arch_parameters()``, and the
    alphas it is taken at.

    The loss and its gradient are built once (``create_graph=True``); each product is one more
    backward pass through that gradient. The network runs as it is set (train mode: batch
    statistics, as the architect's steps), on detached weights and copies of its buffers.
    """
    arch = model.arch_parameters()
    arch_ids = {id(p): i for i, p in enumerate(arch)}
    alphas = [a.detach().clone().requires_grad_(True) for a in arch]
    tensors = {
        name: alphas[arch_ids[id(p)]] if id(p) in arch_ids else p.detach()
        for name, p in model.named_parameters()
    }
    tensors.update({name: b.clone() for name, b in model.named_buffers()})
    loss = sum(
        criterion(_logits(functional_call(model, tensors, (x,))).float(), y) for x, y in batches
    ) / len(batches)
    grads = torch.autograd.grad(loss, alphas, create_graph=True)

    def hvp(v: Tensors) -> Tensors:
        hv = torch.autograd.grad(grads, alphas, grad_outputs=v, retain_graph=True)
        # One search over processes: the same batches everywhere, so the average only keeps
        # every process's estimate (and its DARTS-ES decision) bit-identical.
        return [h.detach() + weight_decay * x for h, x in zip(average_over_processes(list(hv)), v)]

    return hvp, alphas


# ---- The cell's state ----------------------------------------------------------------------------
def skip_connections(genotype: dict | str) -> dict:
    """Skip connections in a cell genotype's normal and reduction cells ({} for other layouts).

    A NAS-Bench-201 cell (its arch string) has one cell type, counted as the normal cell (the
    space's reductions are fixed residual blocks)."""
    if isinstance(genotype, str):
        return {"skip_connections_normal": sum(op == SKIP for op in parse_arch(genotype))}
    if genotype.get("layout", "cell") not in ("cell", "edges") or "normal" not in genotype:
        return {}
    return {  # an entry's first item is its op in both layouts (FairDARTS' edges included)
        f"skip_connections_{cell}": sum(entry[0] == SKIP for entry in genotype[cell])
        for cell in ("normal", "reduce")
    }


def op_entropies(model: torch.nn.Module) -> dict:
    """Each edge's entropy (nats) of softmax(alpha), per cell and their mean over all edges
    (a NAS-Bench-201 supernet's one ``alphas`` matrix counts as the normal cell)."""
    if hasattr(model, "alphas_normal"):
        cells = {"normal": model.alphas_normal, "reduce": model.alphas_reduce}
    elif getattr(model, "alphas", None) is not None:  # (RSPS's supernet has none)
        cells = {"normal": model.alphas}
    else:
        return {}
    with torch.no_grad():
        out, every = {}, []
        for cell, alphas in cells.items():
            logp = torch.log_softmax(alphas.double(), dim=-1)
            entropy = (-(logp.exp() * logp).sum(dim=-1)).cpu().tolist()
            out[f"op_entropy_{cell}"] = entropy
            every += entropy
    out["op_entropy_mean"] = float(np.mean(every))
    return out


# ---- The tracker a search keeps -----------------------------------------------------------------
def fixed_batches(dataset, indices: Sequence[int], batch_size: int, batches: int, seed: int):
    """``batches`` batches (at most, fewer when ``indices`` has fewer items) drawn once from
    ``indices`` of ``dataset`` with the seed, random augmentation included, leaving every
    random state as it was."""
    generator = torch.Generator().manual_seed(seed)
    count = min(len(indices), batches * batch_size)
    chosen = torch.randperm(len(indices), generator=generator)[:count].tolist()
    saved = rng_state([])
    try:
        seed_everything(seed)
        items = [dataset[indices[i]] for i in chosen]
    finally:
        set_rng_state(saved, [])
    return [
        default_collate(items[start : start + batch_size]) for start in range(0, count, batch_size)
    ]


class CollapseTracker:
    """A search's collapse measurements and DARTS-ES state (one per :class:`SearchJob`).

    Args:
        dataset: the search's training set.
        indices: its architecture half (the eigenvalue's batches are drawn from it).
        batch_size: the search's batch size.
        seed: the search's seed (the batches and each epoch's start vector follow from it).
        settings: :func:`collapse_metrics`'s (gin's when None).
    """

    def __init__(self, dataset, indices, batch_size: int, seed: int, settings=None):
        self.settings = s = settings or collapse_metrics()
        self.seed = seed
        self.batches = (
            fixed_batches(dataset, indices, batch_size, s.batches, seed) if s.every else []
        )
        self.history = {
            "eigenvalues": [],
            "genotypes": {},  # of the measured epochs, by str(epoch)
            "valid_acc": {},  # likewise
            "local_averages": [],
            "stop": None,
        }

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether ``epoch`` measures the eigenvalue (1, 1 + every, ..., and the last unless
        ``last_epoch`` is False)."""
        every, last = self.settings.every, self.settings.last_epoch and epoch == epochs
        return bool(every) and ((epoch - 1) % every == 0 or last)

    def eigenvalue(self, job, epoch: int) -> tuple[float, int]:
        """The dominant eigenvalue at the job's current alphas, and the products it took."""
        model, device, s = job.network, job.ctx.device, self.settings
        if not model.arch_parameters():
            raise UserError(
                "the architecture Hessian's eigenvalue needs architecture parameters, and this "
                "supernet has none (RSPS's draws its cells): bind collapse_metrics.every = 0."
            )
        weight_decay = 0.0
        if s.with_weight_decay:
            weight_decay = job.architect.optimizer.param_groups[0]["weight_decay"]
        batches = [(x.to(device), y.to(device)) for x, y in self.batches]
        saved, training = rng_state([]), model.training
        try:
            seed_everything(self.seed + epoch)  # an op's random draws, the same on resume
            model.train()  # batch statistics, as the architect's steps and R-DARTS's Analyzer
            hvp, alphas = hessian_vector_product(model, job.criterion, batches, weight_decay)
            generator = torch.Generator().manual_seed(self.seed + epoch)
            return dominant_eigenvalue(hvp, alphas, s.iterations, s.tolerance, generator)
        finally:
            model.train(training)
            set_rng_state(saved, [])

    def measure(self, job, epoch: int, genotype: dict) -> dict:
        """The epoch's collapse metrics (and DARTS-ES's decision, taken after ``epoch``)."""
        record = {"hessian_eigenvalue": None, "hessian_iterations": None}
        if self.due(epoch, job.epochs):
            value, used = self.eigenvalue(job, epoch)
            record.update(hessian_eigenvalue=value, hessian_iterations=used)
            self.history["eigenvalues"].append(value)
            self.history["genotypes"][str(epoch)] = genotype
            self.history["valid_acc"][str(epoch)] = job.last_valid_acc
            rule = self.settings.early_stop
            if rule is not None and epoch < job.epochs and self.history["stop"] is None:
                self.history["stop"] = rule.check(self.history, epoch, self.settings.every)
        record.update(skip_connections(genotype))
        record.update(op_entropies(job.network))
        return record

    def check_stopped(self) -> None:
        """Raises :class:`SearchStopped` once DARTS-ES has decided to stop."""
        if self.history["stop"] is not None:
            raise SearchStopped(self.history["stop"])

    def final(self) -> dict:
        """Final-metric fields when DARTS-ES stopped the search: the genotype and validation
        accuracy of the epoch it kept (as R-DARTS reports them), that epoch, and the last one."""
        stop = self.history["stop"]
        if stop is None:
            return {}
        return {
            "genotype": stop["genotype"],
            "valid_acc": self.history["valid_acc"][str(stop["stop_epoch"])],
            "genotype_epoch": stop["stop_epoch"],
            "early_stop_epoch": stop["decided_epoch"],
        }

    def state_dict(self) -> dict:
        return {key: value for key, value in self.history.items()}

    def load_state_dict(self, state: dict) -> None:
        self.history.update(state)


class MeasuresCollapse:
    """A search job mixin (before ``ArchitectureSearch``): keeps the tracker ``self.collapse``
    in the checkpoint and stops the fit when DARTS-ES has decided to, between epochs (the
    deciding epoch is logged and checkpointed first, so a run killed there resumes to the same
    end). The job builds the tracker and calls ``measure`` from its ``end_epoch`` and ``final``
    from its ``final``."""

    collapse: CollapseTracker

    def start_epoch(self, epoch: int) -> None:
        self.collapse.check_stopped()
        super().start_epoch(epoch)

    def fit(self, run=None, restart: bool = False) -> dict:
        try:
            return super().fit(run, restart=restart)
        except SearchStopped:
            return self.final(trained=True)

    def extra_state(self) -> dict:
        return {**super().extra_state(), "collapse": self.collapse.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.collapse.load_state_dict(state.get("collapse", {}))
