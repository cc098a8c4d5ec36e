"""How much memory a stage's training step needs, estimated before training starts.

A training step holds four things at its peak (the arithmetic behind every "will it fit?"):

    weights      every parameter of the model (frozen ones too), 4 bytes each in fp32
    gradients    one per trainable parameter, 4 bytes each
    AdamW        two running moments per trainable parameter, 8 bytes each
    activations  what the forward pass keeps for the backward pass: for each layer, its inputs,
                 normalised inputs, projections and nonlinearity outputs, for every position
                 of the (micro-)batch; in our decoder about (12.5 d_model + 4.3 d_ff) floats per
                 token per layer in packed rows (measured, tutorials/04_scaling_up.md), plus
                 the logits' softmax

The first three follow from the parameter counts. Activations depend on the batch, its lengths
and the precision, so ``estimate_memory`` measures them on the first micro-batch itself: one
forward pass whose saved tensors are counted (``torch.autograd.graph.saved_tensors_hooks``),
without a backward pass or an optimizer step. Mixed precision (bf16 autocast) keeps many of
them in 2 bytes; the count sees what is actually saved.

``measure_peak_cpu`` measures what a real step allocates, from torch.profiler's memory records
(CPU tensors only): the test checks the estimate against it on the tiny preset. On CUDA,
``torch.cuda.max_memory_allocated`` is the measure.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

from vita_mini.train.loop import autocast

ADAMW_BYTES = 8  # exp_avg and exp_avg_sq, fp32
GRAD_BYTES = 4


@dataclass
class MemoryEstimate:
    total_parameters: int
    trainable_parameters: int
    weights: int  # bytes
    gradients: int
    optimizer: int
    activations: int
    micro_batch: int  # items in the micro-batch the activations were counted on

    @property
    def peak(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        return (f"parameters: {self.trainable_parameters / 1e6:.2f}M trained of "
                f"{self.total_parameters / 1e6:.2f}M; estimated peak memory per device "
                f"{format_bytes(self.peak)} (weights {format_bytes(self.weights)}, gradients "
                f"{format_bytes(self.gradients)}, AdamW {format_bytes(self.optimizer)}, "
                f"activations {format_bytes(self.activations)} for a micro-batch of "
                f"{self.micro_batch})")


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def saved_activation_bytes(task, indices: list[int], device: torch.device, precision: str) -> int:
    """Bytes of the tensors the forward pass of ``task.loss(indices)`` keeps for backward.

    Each storage counts once (views and reused tensors share one), parameters not at all."""
    params = {p.untyped_storage().data_ptr() for p in task.model.parameters()}
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with untouched(task.model):
        task.model.train()
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), autocast(device, precision):
            out = task.loss(indices, device)
        del out  # the graph and its saved tensors go with it
    return sum(storages.values())


@contextlib.contextmanager
def untouched(model: torch.nn.Module):
    """Run a forward pass that leaves no trace: the model's buffers (the VQ codebook moves in a
    training forward) and the random generators are put back as they were."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    states = (random.getstate(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        random.setstate(states[0])
        torch.set_rng_state(states[1])
        if states[2] is not None:
            torch.cuda.set_rng_state_all(states[2])


def estimate_memory(task, tcfg, sampler, device: torch.device,
                    micro_size: int | None = None) -> MemoryEstimate:
    """The estimate for ``task``'s training with ``tcfg``, activations counted on the micro-batch
    the sampler will give first (the sampler is not advanced). ``micro_size``: items per
    micro-batch (default ``batch_size // grad_accum``; under torchrun, what each rank computes)."""
    parameters = list(task.model.parameters())
    trainable = [p for p in parameters if p.requires_grad]
    state = sampler.state_dict()
    micro_size = micro_size or tcfg.batch_size // tcfg.grad_accum
    first = sampler.next()[:micro_size]
    sampler.load_state_dict(state)
    n_trainable = sum(p.numel() for p in trainable)
    return MemoryEstimate(
        total_parameters=sum(p.numel() for p in parameters), trainable_parameters=n_trainable,
        weights=sum(p.numel() * p.element_size() for p in parameters),
        gradients=n_trainable * GRAD_BYTES, optimizer=n_trainable * ADAMW_BYTES,
        activations=saved_activation_bytes(task, first, device, tcfg.precision),
        micro_batch=len(first))


def measure_peak_cpu(step) -> int:
    """Peak bytes of CPU tensors alive during ``step()`` beyond those alive before it, from
    torch.profiler's memory records (each operator's own allocations minus frees, in order)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak
