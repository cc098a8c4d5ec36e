"""Data parallelism: N processes train one model, each on its share of every batch.

``torchrun --nproc_per_node=N train.py --stage K ...`` starts N copies of ``train.py`` (ranks
0..N-1) and gives each its RANK, LOCAL_RANK and WORLD_SIZE in the environment; ``join_world``
reads them and joins PyTorch's process group (NCCL between GPUs, gloo between CPU processes).
Every rank builds the same model from the same seed, and DistributedDataParallel (DDP) keeps the
copies equal: after each backward pass it averages the gradients of all ranks (an all-reduce),
so every rank takes the same optimizer step. One step, with M micro-batches per step:

    global batch: ``batch_size`` items from the sampler, the same on every rank (train/loop.py)
      -> cut into M micro-batches, M = grad_accum rounded up to a multiple of N
      -> rank r computes micro-batches r*M/N .. (r+1)*M/N - 1: its data shard for this step
      -> each micro-batch: forward, loss / (M/N), backward; gradients stay local (DDP's
         ``no_sync``) except on the rank's last micro-batch, whose backward all-reduces the mean
      -> every rank: the same clipped gradient, the same AdamW step

So a step learns from the same ``batch_size`` items, cut into the same M micro-batches, whatever N
is: N=1 with grad_accum=2 and N=2 with grad_accum=1 compute the same update (up to the order of
floating-point additions). Micro-batch j of step s draws its randomness (dropout-like input noise,
VQ restarts) from a generator seeded by (seed, s, j), whichever rank computes it, so the random
state belongs to the global step, not to a rank: a checkpoint holds no per-rank state, and a run
resumes with another number of processes as long as that number divides M (``resume_micro_batches``).

Rank 0 alone logs, evaluates, writes checkpoints and reports; the other ranks wait for it at a
barrier. A rank that dies cannot damage a checkpoint: only rank 0 writes them, atomically
(checkpoint.py), so the last one on disk is whole.

VITA-Audio's own training (tutorials/paper.md §6) runs on many GPUs through DeepSpeed; this file
is the smallest version of that idea that keeps our training loop exact.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vita_mini.errors import VitaError

BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: rank 0 of 1 when not started by torchrun."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank's index on its own machine: which GPU it uses

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank has reached this line."""
        if self.size > 1:
            dist.barrier()

    def mean(self, values: dict) -> dict:
        """Scalar tensors of ``values`` averaged over the ranks (what rank 0 logs); others as given."""
        if self.size == 1:
            return values
        names = [k for k, v in values.items() if torch.is_tensor(v) and v.dim() == 0]
        if not names:
            return values
        stacked = torch.stack([values[k].detach().float() for k in names])  # [n_values]
        dist.all_reduce(stacked)
        return {**values, **dict(zip(names, (stacked / self.size).unbind()))}


def join_world(device_name: str, backend: str = "auto") -> tuple[World, str]:
    """(World, the device name this rank trains on). Outside torchrun: World(), ``device_name``.

    Under torchrun, a CUDA device becomes ``cuda:<LOCAL_RANK>`` (one GPU per rank) and the
    process group is joined: ``backend`` auto is NCCL on CUDA and gloo on CPUs."""
    if backend not in BACKENDS:
        raise VitaError(f"--backend {backend!r}: choose auto, nccl or gloo")
    kind = device_name.split(":")[0]
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "nccl" and kind != "cuda":
        raise VitaError(f"--backend nccl needs CUDA devices, but this run trains on {kind}: "
                        f"use --backend gloo (or auto)")
    if "WORLD_SIZE" not in os.environ:
        return World(), device_name
    world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                  int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    if kind == "mps":
        raise VitaError("--device mps under torchrun: PyTorch's process groups do not run on Apple's "
                        "mps device; use --device cpu (gloo)")
    if backend == "auto":
        backend = "nccl" if kind == "cuda" else "gloo"
    if kind == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise VitaError(f"rank {world.rank}: LOCAL_RANK={world.local_rank} but this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s); lower --nproc_per_node")
        device_name = f"cuda:{world.local_rank}"
        torch.cuda.set_device(world.local_rank)
    else:
        device_name = "cpu"
    # generous timeout: the other ranks wait at a barrier while rank 0 evaluates and reports
    dist.init_process_group(backend, timeout=timedelta(hours=2))
    return world, device_name


def leave_world(world: World) -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def micro_batch_count(batch_size: int, grad_accum: int, world: World, name: str) -> int:
    """M, the micro-batches a step's batch is cut into: ``grad_accum`` rounded up to a multiple
    of the number of ranks (each rank computes M/N of them). One line if it cannot be done."""
    n = world.size
    if batch_size % n:
        raise VitaError(f"{name}.batch_size={batch_size} cannot be shared by {n} processes: "
                        f"the global batch must be a multiple of the number of processes")
    m = -(-grad_accum // n) * n
    if batch_size % m:
        raise VitaError(f"{name}: {n} processes x {m // n} micro-batches each cannot cut "
                        f"{name}.batch_size={batch_size} into equal parts; choose {name}.grad_accum "
                        f"so that it, rounded up to a multiple of {n}, divides the batch size")
    return m


def resume_micro_batches(saved: int, planned: int, world: World, name: str, path: str) -> int:
    """The M a resumed run uses: the checkpoint's, so that it continues exactly; one line if
    this number of processes cannot share the checkpoint's micro-batches."""
    if saved == planned:
        return planned
    if saved % world.size:
        raise VitaError(f"checkpoint '{path}' was trained with {saved} micro-batch(es) per step; "
                        f"{world.size} processes cannot share them, so it cannot continue exactly: "
                        f"resume with a number of processes that divides {saved}, or restart "
                        f"(a grad_accum that is a multiple of every process count you may use keeps "
                        f"a run movable)")
    return saved


def micro_seed(seed: int, step: int, micro: int) -> int:
    """The seed of micro-batch ``micro`` of step ``step``: the same on whichever rank computes it."""
    return (seed * 1_000_003 + step * 1_009 + micro) % (2**63 - 1)


class TaskLoss(nn.Module):
    """A stage's loss as a module, so that DDP can wrap it: DDP watches the parameters of the
    module it wraps and must see each forward pass (to know which gradients to average)."""

    def __init__(self, task, device: torch.device):
        super().__init__()
        self.model = task.model  # the parameters DDP keeps equal across ranks
        self.task, self.device = task, device

    def forward(self, indices: list[int]) -> dict:
        return self.task.loss(indices, self.device)


class DataParallel:
    """How this rank computes its share of a step: which micro-batches (``mine``), through which
    loss (DDP's forward with several ranks, the task's own with one), and ``no_sync()``, the
    context that keeps a micro-batch's gradients local until the rank's last one."""

    def __init__(self, task, device: torch.device, world: World, micro_batches: int):
        self.world, self.micro_batches = world, micro_batches
        if world.size == 1:
            self.loss = lambda indices: task.loss(indices, device)
            self.no_sync = contextlib.nullcontext
        else:
            ddp = DistributedDataParallel(TaskLoss(task, device),
                                          device_ids=[device.index] if device.type == "cuda" else None)
            self.loss, self.no_sync = ddp, ddp.no_sync

    def mine(self, parts: list[list[int]]) -> list[tuple[int, list[int]]]:
        return rank_share(parts, self.world)


def rank_share(parts: list[list[int]], world: World) -> list[tuple[int, list[int]]]:
    """Rank ``world.rank``'s share of a step's micro-batches ``parts``: consecutive ones, each
    with its global index j (which seeds its randomness)."""
    share = len(parts) // world.size
    first = world.rank * share
    return [(j, parts[j]) for j in range(first, first + share)]
