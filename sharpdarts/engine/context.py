"""Where and how a job runs: device, mixed precision, the torchrun process group, seeding and
every random state that exact resume needs."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import gin
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from sharpdarts.errors import UserError


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
        """Whether this process records (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1

    def compiled(self, model: nn.Module) -> nn.Module:
        """``torch.compile(model)`` with the configured backend, or ``model`` itself. The
        compiled module shares the model's parameters; checkpoints keep using the model."""
        if not self.compile_backend:
            return model
        return torch.compile(model, backend=self.compile_backend)

    def autocast(self):
        """The mixed-precision context of forward passes (a no-op without AMP)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


@gin.configurable
def make_context(
    device: str | None = None,
    amp: str | None = "bf16",
    cudnn_benchmark: bool = True,
    deterministic: bool = False,
    threads: int | None = None,
    compile_backend: str | None = None,
) -> Context:
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
    """Restores what :func:`rng_state` saved, loaders in the same order."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for loader, gen_state in zip(loaders, state["loaders"]):
        if gen_state is not None and loader.generator is not None:
            loader.generator.set_state(gen_state)


def reduce_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sums a tensor of running totals over the processes (in place)."""
    if ctx.distributed:
        dist.all_reduce(values)
    return values


def average_over_processes(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mean of each tensor over the processes of the default process group (in one
    process: the tensors themselves).

    The distributed search averages its architecture gradients (:mod:`.architect`) and its
    weight gradients (:func:`sharpdarts.engine.loop.weight_step`) with it, as DDP does for a
    training's weights.
    """
    if (
        not tensors
        or not (dist.is_available() and dist.is_initialized())
        or dist.get_world_size() == 1
    ):
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])  # one collective, not one per tensor
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view_as(t))
        start += t.numel()
    return out


def gather_from_processes(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's copy of a tensor (all of the same shape), in rank order, on every
    process (in one process: the tensor alone)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [tensor]
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return parts


def broadcast_object(obj):
    """Rank 0's value of a picklable object, on every process."""
    box = [obj]
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Context) -> None:
    """Waits for every process (a no-op in one process)."""
    if ctx.distributed:
        dist.barrier()


def close_process_group() -> None:
    """Leaves the torchrun process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def no_batch_error(loader) -> UserError:
    """The error for a loader a pass over which gives no batch: fewer items than one batch,
    with incomplete batches dropped (an epoch that trained on nothing, or an endless cycle
    that would wait for ever)."""
    sampler, size = getattr(loader, "sampler", None), getattr(loader, "batch_size", None)
    items = f"a loader of {len(sampler)} items" if sampler is not None else "a loader"
    return UserError(
        f"{items} gives no batch of {size} (incomplete batches are dropped): use a smaller "
        "batch size, or more data for this split (e.g. another search.train_portion)."
    )


class Cycle:
    """Endless batches of a loader, without rebuilding it for every batch, whose place can be
    checkpointed: the pass it is in, the batches taken from that pass, and the loader's
    generator state when the pass began. A restored cycle draws that pass's order again and
    goes on after the batches taken (see :class:`~sharpdarts.engine.data.loaders.Skipping`),
    so a run resumed inside an epoch gets the batches an uninterrupted one would.

    Raises:
        UserError: a pass over the loader gives no batch (fewer items than one batch, with
            incomplete batches dropped), where it would otherwise loop for ever.
    """

    def __init__(self, loader):
        self.loader = loader
        self.passes = 0  # passes completed
        self.taken = 0  # batches taken from the current pass
        self.pass_generator: torch.Tensor | None = None  # the generator as the pass began
        self._batches: Iterator | None = None
        self._restored = False

    def __iter__(self) -> Cycle:
        return self

    def __next__(self):
        while True:
            if self._batches is None:
                self._start_pass()
            try:
                batch = next(self._batches)
            except StopIteration:
                if self.taken == 0:
                    raise no_batch_error(self.loader) from None
                self._batches, self.passes, self.taken = None, self.passes + 1, 0
                continue
            self.taken += 1
            return batch

    def _start_pass(self) -> None:
        sampler, generator = self.loader.sampler, self.loader.generator
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.passes)
        restorable = hasattr(sampler, "skip_next") and generator is not None
        if self._restored and restorable and self.pass_generator is not None:
            generator.set_state(self.pass_generator)  # the restored pass's order, drawn again
            sampler.skip_next(self.taken * self.loader.batch_size)
        else:
            self.taken = 0
            self.pass_generator = generator.get_state() if generator is not None else None
        self._restored = False
        self._batches = iter(self.loader)

    def state_dict(self) -> dict:
        """The cycle's place (tensors and ints: ``weights_only``-loadable)."""
        return {"passes": self.passes, "taken": self.taken, "generator": self.pass_generator}

    def load_state_dict(self, state: dict) -> None:
        """Goes back to a saved place; the next batch is the one after it. The loader's
        generator is set when the next pass starts (after the random states are restored)."""
        self.passes, self.taken = int(state["passes"]), int(state["taken"])
        self.pass_generator = state["generator"]
        self._batches, self._restored = None, True


def cycle(loader) -> Cycle:
    """Endless batches of a loader (a :class:`Cycle`)."""
    return Cycle(loader)
