"""The search and training loops, with checkpoints, exact resume, AMP and DistributedDataParallel.

``search(...)`` is the original ``train_search.py``: weight steps on one half of the training
set alternate with architecture steps on the other. ``train(...)`` is ``train.py`` and the
ImageNet trainer: a fixed network with auxiliary loss, drop path, label smoothing and the lr
scaled by the global batch. Both are configured by gin and record into a run folder
(``sharpdarts.runs.Run``) when one is given: one metrics line per epoch, a checkpoint after
every epoch that holds everything needed to continue exactly where it stopped.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gin
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from sharpdarts.core import optimizers as configurables  # noqa: F401  (registers torch classes with gin)
from sharpdarts.engine import data as data_lib
from sharpdarts.core import genotypes as genotypes_lib
from sharpdarts.engine.architect import Architect
from sharpdarts.core.metrics import count_parameters, multiply_adds
from sharpdarts.nn.models import load_original_state_dict
from sharpdarts.core.schedules import CosinePowerAnnealingLR

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ---- Devices, precision, processes ------------------------------------------------------
@dataclass
class Context:
    """Where and how a job runs: device, precision and the process group."""

    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world_size: int = 1
    compile_backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def compiled(self, model: nn.Module) -> nn.Module:
        """``torch.compile(model)`` with the configured backend, or ``model`` itself. The
        compiled module shares the model's parameters; checkpoints keep using the model."""
        if not self.compile_backend:
            return model
        return torch.compile(model, backend=self.compile_backend)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


@gin.configurable
def make_context(device: str | None = None, amp: str | None = "bf16",
                 cudnn_benchmark: bool = True, deterministic: bool = False,
                 threads: int | None = None, compile_backend: str | None = None) -> Context:
    """Chooses the device, mixed precision and joins the torchrun process group, if any.

    Args:
        device: 'cpu', 'cuda', 'cuda:1', ...; None picks the GPU when there is one.
        amp: 'bf16', 'fp16' or None. Mixed precision is used only on a GPU.
        cudnn_benchmark: let cuDNN pick the fastest kernels (not bit-reproducible).
        deterministic: ask torch for deterministic algorithms (slower on a GPU).
        threads: torch's CPU threads; None keeps torch's default. On small CPU jobs one
            thread is as fast, and it does not collapse when other processes share the cores.
        compile_backend: run the weight steps' forward passes through ``torch.compile``
            with this backend ('inductor' for speed; 'eager' checks tracing only); None
            (the default) runs eagerly. The architect's passes stay eager (they swap weights
            with ``torch.func.functional_call``). Compilation costs minutes up front and,
            on CPU, inductor needs a C++ compiler.
    """
    if threads:
        torch.set_num_threads(threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    amp_dtype = None
    if dev.type == "cuda" and amp:
        if amp not in ("bf16", "fp16"):
            raise ValueError(f"amp must be 'bf16', 'fp16' or None, not {amp!r}")
        amp_dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return Context(dev, amp_dtype, rank, world_size, compile_backend)


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (all devices); loader workers derive from torch's seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(loaders: list) -> dict:
    """Every random state a resumed run needs, as tensors and ints (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "loaders": [l.generator.get_state() if l.generator is not None else None for l in loaders],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, loaders: list) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for loader, gen_state in zip(loaders, state["loaders"]):
        if gen_state is not None and loader.generator is not None:
            loader.generator.set_state(gen_state)


def _reduce(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sums a tensor of running totals over the processes."""
    if ctx.distributed:
        dist.all_reduce(values)
    return values


def broadcast_object(obj):
    """Rank 0's value of a picklable object, on every process."""
    box = [obj]
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    return box[0]


def close_process_group() -> None:
    """Leaves the torchrun process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def cycle(loader) -> Iterator:
    """Endless batches of a loader, without rebuilding it for every batch."""
    epoch = 0
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


# ---- Checkpoints --------------------------------------------------------------------------
def save_checkpoint(path: Path, state: dict) -> None:
    """Writes atomically: a crash mid-write leaves the previous checkpoint intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path | str, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def _checkpoint_path(run, ctx: Context) -> Path | None:
    """The run's checkpoint file, agreed on by every process (only rank 0 has the run)."""
    path = broadcast_object(str(run.checkpoint_path) if run is not None else None)
    return Path(path) if path else None


# ---- One epoch ---------------------------------------------------------------------------
class Totals:
    """Running sums on the device, read (one host sync) at the end of the epoch."""

    def __init__(self, device):
        self.values = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        n = target.size(0)
        top5 = logits.topk(min(5, logits.size(1)), dim=1).indices
        hits = top5.eq(target.view(-1, 1))
        self.values += torch.stack([loss.detach().double() * n, hits[:, 0].sum().double(),
                                    hits.any(dim=1).sum().double(),
                                    torch.tensor(float(n), dtype=torch.float64, device=loss.device)])

    def result(self, ctx: Context) -> dict:
        loss, top1, top5, n = _reduce(self.values.clone(), ctx).tolist()
        n = max(n, 1.0)
        return {"loss": loss / n, "acc": 100.0 * top1 / n, "acc_top5": 100.0 * top5 / n}


def _progress(loader, desc: str, ctx: Context, show: bool):
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                disable=not (show and ctx.is_main))


@torch.no_grad()
def evaluate(model: nn.Module, loader, criterion: nn.Module, ctx: Context,
             show_progress: bool = False) -> dict:
    """Loss, top-1 and top-5 accuracy (percent) of a model over a loader."""
    model.eval()
    totals = Totals(ctx.device)
    for x, y in _progress(loader, "eval", ctx, show_progress):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        with ctx.autocast():
            out = model(x)
            logits = out[0] if isinstance(out, tuple) else out
            loss = criterion(logits.float(), y)
        totals.add(loss, logits, y)
    return totals.result(ctx)


def _weight_step(model, optimizer, scaler, loss, params, grad_clip):
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()


# ---- Shared set-up -------------------------------------------------------------------------
def _build_optimizer(params, lr, momentum, weight_decay):
    return torch.optim.SGD(params, lr, momentum=momentum, weight_decay=weight_decay)


@gin.configurable
def lr_schedule(optimizer, epochs: int, min_lr: float = 1e-4, exponent_order: float = 2,
                warmup_epochs: int | None = 5):
    """The per-epoch learning rate schedule: cosine power annealing (FACTS.md defaults)."""
    return CosinePowerAnnealingLR(optimizer, epochs, min_lr=min_lr, exponent_order=exponent_order,
                                  warmup_epochs=warmup_epochs)


def _resume(run, ckpt_path, ctx, restore: Callable[[dict], None]) -> int:
    """Loads the last checkpoint if there is one; returns the first epoch still to run."""
    if ckpt_path is None or not ckpt_path.exists():
        if run is not None:
            run.truncate_metrics(None)  # epochs logged before the first checkpoint are redone
        return 1
    state = load_checkpoint(ckpt_path, map_location=ctx.device)
    restore(state)
    if run is not None:
        run.truncate_metrics(state["epoch"])  # an epoch logged after its checkpoint is redone
    log.info("resuming after epoch %d from %s", state["epoch"], ckpt_path)
    return state["epoch"] + 1


def _check_finite(loss: float, epoch: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"the training loss became {loss} in epoch {epoch}; the last "
                                 "good checkpoint is kept (try a lower learning rate)")


def _data(data: data_lib.DataBundle | None, seed: int) -> data_lib.DataBundle:
    """The datasets the caller built already (the runner checks them first), or gin's."""
    return data if data is not None else data_lib.build_datasets(seed=seed)


# ---- Search --------------------------------------------------------------------------------
@gin.configurable(denylist=["run", "seed", "data"])
def search(run=None, seed: int = 0, data=None, *, epochs: int = gin.REQUIRED, batch_size: int = gin.REQUIRED,
           network: Callable[..., nn.Module] = gin.REQUIRED, learning_rate: float = 0.025,
           momentum: float = 0.9, weight_decay: float = 3e-4, grad_clip: float = 5.0,
           train_portion: float = 0.5, skip_primitive: str | None = "none",
           workers: int = 0, show_progress: bool = True) -> dict:
    """Architecture search: alternating architecture and weight steps (DARTS).

    Args:
        run: the run folder to record into (None: record nothing, keep no checkpoint).
        seed: seeds everything.
        data: the datasets, when the caller built them (else ``build_datasets()``).
        epochs: search epochs.
        batch_size: images per step (per process), for both halves of the training set.
        network: builds the supernet from ``num_classes`` and ``in_channels``
            (e.g. ``@SearchNetwork``, ``@MultiChannelNetwork``).
        learning_rate: the weights' initial lr (the schedule is ``lr_schedule``).
        momentum, weight_decay: SGD settings of the weights.
        grad_clip: gradient norm clip of the weights.
        train_portion: share of the training set for the weights; the rest trains the
            architecture and measures the search accuracy.
        skip_primitive: the op left out when reading the genotype ('none', as DARTS), or None.
        workers: loader worker processes.
        show_progress: a tqdm bar per epoch.

    Returns:
        The final metrics (also written to the run).
    """
    ctx = make_context()
    seed_everything(seed)
    bundle = _data(data, seed)
    weight_idx, arch_idx = data_lib.search_split(bundle.train, train_portion)
    train_loader = data_lib.make_loader(bundle.train, batch_size, indices=weight_idx, workers=workers,
                                        seed=seed, distributed=ctx.distributed, drop_last=True)
    arch_loader = data_lib.make_loader(bundle.train, batch_size, indices=arch_idx, workers=workers,
                                       seed=seed + 1, distributed=ctx.distributed, drop_last=True)
    valid_loader = data_lib.make_loader(bundle.train, batch_size, indices=arch_idx, workers=workers,
                                        seed=seed + 2, distributed=ctx.distributed)
    model = network(num_classes=bundle.spec.num_classes, in_channels=bundle.spec.channels)
    model.to(ctx.device)
    criterion = nn.CrossEntropyLoss().to(ctx.device)
    optimizer = _build_optimizer(model.weights(), learning_rate, momentum, weight_decay)
    scheduler = lr_schedule(optimizer, epochs)
    architect = Architect(model, criterion=criterion)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.amp_dtype == torch.float16)
    if run is not None:
        run.write_text("operative_config.gin", gin.operative_config_str())
        run.update(parameters=count_parameters(model),
                   primitives=getattr(model, "primitives", None))
    loaders = [train_loader, arch_loader, valid_loader]
    best = {"valid_acc": -1.0, "epoch": 0, "genotype": None}

    def restore(state):
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        architect.load_state_dict(state["architect"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        best.update(state["best"])
        set_rng_state(state["rng"], loaders)

    ckpt_path = _checkpoint_path(run, ctx)
    start = _resume(run, ckpt_path, ctx, restore)
    arch_batches = cycle(arch_loader)
    step_model = ctx.compiled(model)
    record = {}
    for epoch in range(start, epochs + 1):
        tic = time.time()
        lr = optimizer.param_groups[0]["lr"]
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        model.train()
        totals = Totals(ctx.device)
        for x, y in _progress(train_loader, f"search {epoch}/{epochs}", ctx, show_progress):
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            xa, ya = next(arch_batches)
            xa, ya = xa.to(ctx.device, non_blocking=True), ya.to(ctx.device, non_blocking=True)
            architect.step(x, y, xa, ya, eta=lr, weight_optimizer=optimizer)
            with ctx.autocast():
                logits = step_model(x)
                loss = criterion(logits.float(), y)
            _weight_step(model, optimizer, scaler, loss, model.weights(), grad_clip)
            totals.add(loss, logits, y)
        train = totals.result(ctx)
        _check_finite(train["loss"], epoch)
        valid = evaluate(model, valid_loader, criterion, ctx)
        scheduler.step()
        genotype = model.genotype(skip_primitive=skip_primitive)
        if valid["acc"] > best["valid_acc"]:
            best.update(valid_acc=valid["acc"], epoch=epoch, genotype=genotypes_lib.to_dict(genotype))
        record = {"epoch": epoch, "lr": lr, "train_loss": train["loss"], "train_acc": train["acc"],
                  "valid_loss": valid["loss"], "valid_acc": valid["acc"],
                  "seconds": time.time() - tic, "genotype": genotypes_lib.to_dict(genotype),
                  **_alphas(model)}
        # Log first, then checkpoint: a kill between the two leaves an epoch logged past the
        # checkpoint, which resume truncates and redoes; the other order would lose its line.
        if run is not None:
            run.log_epoch(record)
        if ckpt_path is not None and ctx.is_main:
            save_checkpoint(ckpt_path, {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "architect": architect.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "best": dict(best), "rng": rng_state(loaders)})
        if ctx.distributed:
            dist.barrier()  # nobody runs ahead of the checkpoint it may have to resume from
        log.info("search epoch %d: train acc %.2f valid acc %.2f genotype %s", epoch,
                 train["acc"], valid["acc"], genotype)
    final_genotype = model.genotype(skip_primitive=skip_primitive)
    final = {"best_valid_acc": best["valid_acc"], "best_epoch": best["epoch"],
             "valid_acc": record.get("valid_acc"), "genotype": genotypes_lib.to_dict(final_genotype),
             "best_genotype": best["genotype"], "genotype_epoch": epochs}
    raw = getattr(model, "raw_weights", None)
    if raw is not None:
        final["raw_weights"] = genotypes_lib.to_dict(raw())
    return final


def _alphas(model) -> dict:
    """The softmax architecture weights, for the alpha heatmaps (and the grid's paths)."""
    if hasattr(model, "raw_weights"):  # the multi-channel grid: its weights and paths
        raw = model.raw_weights()
        return {"grid_weights": {"normal": raw.normal, "reduce": raw.reduce},
                "paths": {name: list(p) for name, p in model.paths().items()}}
    if not hasattr(model, "alphas_normal"):
        return {}
    with torch.no_grad():
        return {name: torch.softmax(getattr(model, name).float(), dim=-1).cpu().tolist()
                for name in ("alphas_normal", "alphas_reduce")}


# ---- Training -------------------------------------------------------------------------------
def _init_weights_from(model: nn.Module, source: str | os.PathLike) -> None:
    """Starts from another run's (or the original code's) weights, with a fresh schedule."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoint.pt"
    state = load_checkpoint(path)
    load_original_state_dict(model, state.get("model", state) if isinstance(state, dict) else state)


@gin.configurable(denylist=["run", "seed", "data"])
def train(run=None, seed: int = 0, data=None, *, epochs: int = gin.REQUIRED, batch_size: int = gin.REQUIRED,
          network: Callable[..., nn.Module] = gin.REQUIRED, learning_rate: float = 0.025,
          momentum: float = 0.9, weight_decay: float = 3e-4, grad_clip: float = 5.0,
          auxiliary_weight: float = 0.4, drop_path_prob: float = 0.2,
          label_smoothing: float = 0.0, lr_reference_batch: int | None = None,
          init_from: str | None = None, eval_batch_size: int | None = None,
          workers: int = 0, show_progress: bool = True) -> dict:
    """Trains a fixed network from scratch (CIFAR-10 ``train.py``, the ImageNet trainer).

    Args:
        run: the run folder to record into (None: record nothing, keep no checkpoint).
        seed: seeds everything.
        data: the datasets, when the caller built them (else ``build_datasets()``).
        epochs: training epochs.
        batch_size: images per step per process.
        network: builds the network from ``num_classes`` and ``in_channels``
            (e.g. ``@NetworkCIFAR`` with ``NetworkCIFAR.genotype = %GENOTYPE``).
        learning_rate: initial lr, for a global batch of ``lr_reference_batch`` if given.
        momentum, weight_decay, grad_clip: SGD settings.
        auxiliary_weight: weight of the auxiliary head's loss (when the network has one).
        drop_path_prob: final drop path probability, ramped linearly from 0 over the epochs.
        label_smoothing: cross-entropy label smoothing of the training loss (ImageNet).
        lr_reference_batch: scale the lr by global_batch / lr_reference_batch (256 for
            ImageNet), None for no scaling.
        init_from: a checkpoint file or run folder to take the initial weights from (e.g. the
            README's 100-epoch ImageNet continuation at a lower lr).
        eval_batch_size: batch size of evaluation (defaults to batch_size).
        workers: loader worker processes.
        show_progress: a tqdm bar per epoch.

    Returns:
        The final metrics (also written to the run).
    """
    ctx = make_context()
    seed_everything(seed)
    bundle = _data(data, seed)
    train_loader = data_lib.make_loader(bundle.train, batch_size, shuffle=True, workers=workers,
                                        seed=seed, distributed=ctx.distributed, drop_last=True)
    eval_bs = eval_batch_size or batch_size
    test_loader = data_lib.make_loader(bundle.test, eval_bs, workers=workers,
                                       distributed=ctx.distributed)
    model = network(num_classes=bundle.spec.num_classes, in_channels=bundle.spec.channels)
    params_m = count_parameters(model) / 1e6
    madds_b = multiply_adds(model, bundle.spec.image_shape) / 1e9
    if init_from:
        _init_weights_from(model, init_from)
    model.to(ctx.device)
    if ctx.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
    if lr_reference_batch:
        learning_rate = learning_rate * batch_size * ctx.world_size / lr_reference_batch
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing).to(ctx.device)
    eval_criterion = nn.CrossEntropyLoss().to(ctx.device)
    optimizer = _build_optimizer(model.parameters(), learning_rate, momentum, weight_decay)
    scheduler = lr_schedule(optimizer, epochs)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.amp_dtype == torch.float16)
    if run is not None:
        run.write_text("operative_config.gin", gin.operative_config_str())
        run.update(parameters=int(params_m * 1e6))
    best = {"valid_acc": -1.0, "epoch": 0}

    def restore(state):
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        best.update(state["best"])
        set_rng_state(state["rng"], [train_loader])

    ckpt_path = _checkpoint_path(run, ctx)
    start = _resume(run, ckpt_path, ctx, restore)
    net = _unwrap(model)
    step_model = ctx.compiled(model)
    valid = {"acc": float("nan"), "acc_top5": float("nan"), "loss": float("nan")}
    for epoch in range(start, epochs + 1):
        tic = time.time()
        lr = optimizer.param_groups[0]["lr"]
        # The original ramps drop path with the 0-based epoch: 0 in the first epoch.
        net.drop_path_prob = drop_path_prob * (epoch - 1) / epochs
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        model.train()
        totals = Totals(ctx.device)
        for x, y in _progress(train_loader, f"train {epoch}/{epochs}", ctx, show_progress):
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            with ctx.autocast():
                logits, logits_aux = step_model(x)
                loss = criterion(logits.float(), y)
                if logits_aux is not None and auxiliary_weight:
                    loss = loss + auxiliary_weight * criterion(logits_aux.float(), y)
            _weight_step(model, optimizer, scaler, loss, model.parameters(), grad_clip)
            totals.add(loss, logits, y)
        train_m = totals.result(ctx)
        _check_finite(train_m["loss"], epoch)
        valid = evaluate(model, test_loader, eval_criterion, ctx)
        scheduler.step()
        if valid["acc"] > best["valid_acc"]:
            best.update(valid_acc=valid["acc"], epoch=epoch)
        record = {"epoch": epoch, "lr": lr, "train_loss": train_m["loss"],
                  "train_acc": train_m["acc"], "valid_loss": valid["loss"],
                  "valid_acc": valid["acc"], "valid_acc_top5": valid["acc_top5"],
                  "drop_path_prob": net.drop_path_prob, "seconds": time.time() - tic}
        if run is not None:  # log before the checkpoint (see search)
            run.log_epoch(record)
        if ckpt_path is not None and ctx.is_main:
            save_checkpoint(ckpt_path, {
                "epoch": epoch, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "best": dict(best), "rng": rng_state([train_loader])})
        if ctx.distributed:
            dist.barrier()  # nobody runs ahead of the checkpoint it may have to resume from
    if start > epochs:  # already trained: measure the final weights again
        valid = evaluate(model, test_loader, eval_criterion, ctx)
    final = {"test_error_top1": 100.0 - valid["acc"], "test_error_top5": 100.0 - valid["acc_top5"],
             "best_epoch": best["epoch"], "best_valid_acc": best["valid_acc"],
             "params_m": params_m, "multiply_adds_b": madds_b}
    final.update(_extra_test_errors(model, bundle, eval_bs, eval_criterion, ctx, workers))
    return final


def _extra_test_errors(model, bundle, batch_size, criterion, ctx, workers) -> dict:
    """Errors on the extra test sets (CIFAR-10.1 for CIFAR-10)."""
    out = {}
    for name, dataset in bundle.extra_tests.items():
        loader = data_lib.make_loader(dataset, batch_size, workers=workers, distributed=ctx.distributed)
        out[f"{name}_error"] = 100.0 - evaluate(model, loader, criterion, ctx)["acc"]
    return out


@gin.configurable(denylist=["run", "seed", "data", "checkpoint"])
def evaluate_checkpoint(run=None, seed: int = 0, data=None, checkpoint: str | os.PathLike = "", *,
                        network: Callable[..., nn.Module] = gin.REQUIRED,
                        batch_size: int = 128, workers: int = 0) -> dict[str, Any]:
    """Test error (and CIFAR-10.1 error for CIFAR-10) of saved weights, ours or the original's.

    Args:
        run: an evaluation run to record into, or None.
        seed: seeds everything (the data build).
        data: the datasets, when the caller built them (else ``build_datasets()``).
        checkpoint: a checkpoint file, or a run folder holding checkpoint.pt.
        network: builds the network the weights belong to.
        batch_size: evaluation batch size.
        workers: loader worker processes.
    """
    ctx = make_context()
    seed_everything(seed)
    bundle = _data(data, seed)
    model = network(num_classes=bundle.spec.num_classes, in_channels=bundle.spec.channels)
    _init_weights_from(model, checkpoint)
    model.to(ctx.device)
    criterion = nn.CrossEntropyLoss().to(ctx.device)
    loader = data_lib.make_loader(bundle.test, batch_size, workers=workers)
    result = evaluate(model, loader, criterion, ctx)
    final = {"test_error_top1": 100.0 - result["acc"], "test_error_top5": 100.0 - result["acc_top5"],
             "params_m": count_parameters(model) / 1e6}
    final.update(_extra_test_errors(model, bundle, batch_size, criterion, ctx, workers))
    if run is not None:
        run.write_text("operative_config.gin", gin.operative_config_str())
    return final


@gin.configurable
def experiment(job: Callable[..., dict] = gin.REQUIRED) -> Callable[..., dict]:
    """The job an experiment runs: ``experiment.job = @search`` (or ``@train``)."""
    return job
