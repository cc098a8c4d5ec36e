"""One training loop for every stage.

What the paper uses for all four stages (tutorials/paper.md §6): AdamW with betas
(0.9, 0.95), a cosine schedule with 3% warmup, gradient clipping at 1.0, bf16. Here:

* the stage supplies a ``StageTask``: the model, its parameter groups (with learning-rate
  multipliers), a loss on a list of training-item indices, and a validation function;
* batches come from ``BatchSampler``, a seeded permutation per epoch whose position is part of
  the checkpoint, so ``--resume`` continues with exactly the batches it would have seen;
* all training randomness (input noise, VQ restarts) draws from torch's generator, seeded
  afresh for every micro-batch from (seed, step, micro-batch): a resumed run matches an
  uninterrupted one step for step, with one process or several (train/distributed.py);
* under torchrun each rank computes its share of every batch, DistributedDataParallel averages
  the gradients, and rank 0 alone logs, evaluates and saves (train/distributed.py);
* checkpoints are written atomically every ``checkpoint_every`` steps, at the end, and when the
  run is interrupted (Ctrl-C): an interrupted run loses nothing, a killed one loses at most the
  steps since its last checkpoint;
* bf16 autocast where the hardware multiplies bf16 natively (``precision="auto"``: CUDA, and
  CPUs with AMX tiles such as Intel Xeon since Sapphire Rapids), fp32 elsewhere;
  ``precision=fp32`` or ``bf16`` in a stage's config forces it.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from tqdm.auto import tqdm

from vita_mini.config import Config, TrainConfig
from vita_mini.errors import VitaError
from vita_mini.checkpoint import (check_saved_config, load_checkpoint, load_state_strict,
                                  save_checkpoint)
from vita_mini.train.distributed import (DataParallel, World, micro_batch_count, micro_seed,
                                         resume_micro_batches)


def native_bf16(device: torch.device) -> bool:
    """Does ``device`` multiply bf16 matrices in hardware? CUDA yes; a CPU if it has AMX tiles."""
    if device.type == "cuda":
        return True
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so guarded
    return device.type == "cpu" and bool(is_amx and is_amx())


def precision_kind(device: torch.device, precision: str = "auto") -> str:
    """"bf16" or "fp32": what a stage with ``precision`` ("auto", "bf16", "fp32") trains in."""
    if precision not in ("auto", "bf16", "fp32"):
        raise VitaError(f"precision={precision!r}: choose auto, bf16 or fp32")
    bf16 = precision == "bf16" or (precision == "auto" and native_bf16(device))
    return "bf16" if bf16 and device.type in ("cuda", "cpu") else "fp32"


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast (``precision`` "bf16", or "auto" where native_bf16), else a no-op (fp32)."""
    if precision_kind(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class BatchSampler:
    """Indices 0..n-1 in a fresh seeded permutation every epoch, ``batch_size`` at a time.

    ``lengths`` (optional, one per item): batch items of similar length together, so that a
    stage whose items are padded to the longest in the batch (stage 0's utterances) computes
    less padding. The epoch's permutation is cut into pools of ``pool_batches`` batches; each
    pool is sorted by length and cut into batches, and the full batches are shuffled (the
    epoch's one partial batch, if any, comes last). Random batches of 32 toy utterances are 28%
    padding; length buckets (pools of 16 batches) leave 3% (the toy corpus, batches of 20 or 32)."""

    def __init__(self, n: int, batch_size: int, seed: int, lengths=None, pool_batches: int = 16):
        if n == 0:
            raise VitaError("the training set is empty")
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"lengths: {len(lengths)} values for {n} items")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.lengths, self.pool_batches = lengths, pool_batches
        self.epoch, self.position = 0, 0
        self._cached = (None, [])  # (epoch, its order): the order is computed once per epoch

    def _order(self) -> list[int]:
        if self._cached[0] == self.epoch:
            return self._cached[1]
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.lengths is not None:
            order = self._bucketed(order, g)
        self._cached = (self.epoch, order)
        return order

    def _bucketed(self, order: list[int], g: torch.Generator) -> list[int]:
        pool, size = self.batch_size * self.pool_batches, self.batch_size
        batches = []
        for start in range(0, self.n, pool):
            by_length = sorted(order[start:start + pool], key=lambda i: self.lengths[i])
            batches += [by_length[j:j + size] for j in range(0, len(by_length), size)]
        partial = [b for b in batches if len(b) < size]  # at most one: only the last pool is short
        full = [b for b in batches if len(b) == size]
        shuffled = [full[k] for k in torch.randperm(len(full), generator=g).tolist()]
        return [i for batch in shuffled + partial for i in batch]

    def next(self) -> list[int]:
        batch = []
        while len(batch) < self.batch_size:
            if self.position >= self.n:
                self.epoch, self.position = self.epoch + 1, 0
            order = self._order()
            take = min(self.batch_size - len(batch), self.n - self.position)
            batch += order[self.position:self.position + take]
            self.position += take
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def make_sampler(task, tcfg: TrainConfig, seed: int) -> BatchSampler:
    """The stage's sampler: length buckets if ``tcfg.length_buckets`` and the task has lengths."""
    lengths = getattr(task, "lengths", None) if tcfg.length_buckets else None
    return BatchSampler(task.n_train, tcfg.batch_size, seed, lengths=lengths)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over warmup_share of the steps, then cosine down to min_lr_share * lr."""
    warmup = max(1, round(cfg.warmup_share * cfg.steps))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (cfg.min_lr_share + (1 - cfg.min_lr_share) * 0.5 * (1 + math.cos(math.pi * progress)))


class StageTask(Protocol):
    """What a stage hands to the loop (train/run_stage.py adds what the stage reports)."""

    name: str  # "stage0", "stage1", ... (runs.py stage_name): the checkpoint's tag
    model: torch.nn.Module  # everything whose state the checkpoint keeps
    n_train: int  # number of training items the sampler draws from
    # optional: ``lengths``, one per training item, for TrainConfig.length_buckets (stage 0)
    config_sections: list[str]  # config sections a checkpoint of this stage must agree on

    def param_groups(self) -> list[dict]: ...  # [{"params": [...], "lr_scale": 1.0, "weight_decay": ...}]

    def loss(self, indices: list[int], device: torch.device) -> dict: ...  # {"loss": tensor, ...}

    def evaluate(self, device: torch.device) -> dict: ...  # {metric: float}


@dataclass
class TrainResult:
    step: int
    finished: bool
    history: list  # [{"step": ..., "loss": ..., "lr": ...}, ...] every log_every steps
    evals: list  # [{"step": ..., metric: ...}, ...]


def make_optimizer(task: StageTask, tcfg: TrainConfig) -> torch.optim.AdamW:
    groups = []
    for group in task.param_groups():
        params = [p for p in group["params"] if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": tcfg.lr * group.get("lr_scale", 1.0),
                           "lr_scale": group.get("lr_scale", 1.0),
                           "weight_decay": group.get("weight_decay", tcfg.weight_decay)})
    return torch.optim.AdamW(groups, lr=tcfg.lr, betas=tuple(tcfg.betas),
                             weight_decay=tcfg.weight_decay)


def decay_groups(module: torch.nn.Module, lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on matrices and conv kernels, none on biases, norms and 1-D parameters."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "lr_scale": lr_scale},
            {"params": no_decay, "lr_scale": lr_scale, "weight_decay": 0.0}]


def restore(task: StageTask, cfg: Config, checkpoint_path: str, model, optimizer,
            sampler: BatchSampler) -> dict:
    """Put model, optimizer and sampler back where ``checkpoint_path`` left them; the payload's
    other fields (step, history, evals, micro_batches). A checkpoint of another config is refused."""
    payload = load_checkpoint(checkpoint_path)
    check_saved_config(payload, cfg.to_dict(), task.config_sections, checkpoint_path)
    load_state_strict(model, payload["model"], checkpoint_path)
    try:
        optimizer.load_state_dict(payload["optimizer"])
    except (KeyError, ValueError) as exc:
        raise VitaError(f"checkpoint '{checkpoint_path}' has an optimizer state that does not fit ({exc})") from None
    sampler.load_state_dict(payload["sampler"])
    return payload


def micro_batches(indices: list[int], n: int) -> list[list[int]]:
    """``indices`` cut into ``n`` consecutive parts of equal size (n divides the batch size)."""
    size = len(indices) // n
    return [indices[i * size:(i + 1) * size] for i in range(n)]


def train_step(task: StageTask, optimizer, sampler: BatchSampler, tcfg: TrainConfig, step: int,
               device: torch.device, seed: int = 0,
               parallel: DataParallel | None = None) -> tuple[dict, float, torch.Tensor]:
    """One optimizer step at the schedule's learning rate: (the loss's terms, lr, grad norm),
    left as tensors so that a GPU is not waited for at every step.

    The batch is cut into micro-batches (``tcfg.grad_accum`` of them in one process; under
    torchrun ``parallel`` says how many and which are this rank's), each loss scaled by 1/(its rank's share) and its gradients added up
    before the one optimizer step, so the batch a step learns from stays ``batch_size`` while
    only a part of it is in memory at a time; with several ranks, DDP averages the ranks' sums
    (train/distributed.py). (Each stage's loss is a mean over its micro-batch's target tokens,
    so this equals the whole batch's mean only when the micro-batches hold equally many; packed
    rows nearly do.) The terms returned are then the micro-batches' means, on this rank."""
    task.model.train()
    lr = lr_at(step, tcfg)
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]
    optimizer.zero_grad(set_to_none=True)
    parallel = parallel or DataParallel(task, device, World(), tcfg.grad_accum)
    mine = parallel.mine(micro_batches(sampler.next(), parallel.micro_batches))
    terms: dict = {}
    for i, (j, part) in enumerate(mine):
        torch.manual_seed(micro_seed(seed, step, j))
        last = i == len(mine) - 1
        with contextlib.nullcontext() if last else parallel.no_sync():
            with autocast(device, tcfg.precision):
                out = parallel.loss(part)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise VitaError(f"{task.name}: loss became {loss.item()} at step {step}; "
                                f"try a lower learning rate ({task.name}.lr=...)")
            (loss / len(mine)).backward()  # with several ranks, DDP all-reduces on the last one
        for name, value in out.items():
            if torch.is_tensor(value) and value.dim() == 0:
                terms[name] = terms.get(name, 0.0) + value.detach().float() / len(mine)
    grad_norm = torch.nn.utils.clip_grad_norm_(task.model.parameters(), tcfg.grad_clip)
    optimizer.step()
    return terms, lr, grad_norm


def train(task: StageTask, cfg: Config, tcfg: TrainConfig, checkpoint_path: str,
          device: torch.device, resume: bool = False, stop_after: int | None = None,
          log: Callable[[str], None] = print, clock=None, world: World = World()) -> TrainResult:
    """Train ``task`` for ``tcfg.steps`` steps, checkpointing to ``checkpoint_path``.

    ``stop_after``: stop after this many steps of *this* run, as if interrupted (a checkpoint is
    written; continue later with ``resume=True``). ``clock``: a train/eta.py ``StageClock``,
    told of every step; what it says once (the time left) is printed. ``world``: this process's
    rank among several (train/distributed.py); only rank 0 logs, evaluates and saves."""
    model = task.model.to(device)
    optimizer = make_optimizer(task, tcfg)
    sampler = make_sampler(task, tcfg, cfg.seed)
    micro = micro_batch_count(tcfg.batch_size, tcfg.grad_accum, world, task.name)
    step, history, evals = 0, [], []
    if resume:
        payload = restore(task, cfg, checkpoint_path, model, optimizer, sampler)
        step, history, evals = payload["step"], payload["history"], payload["evals"]
        saved = payload.get("micro_batches", tcfg.grad_accum)  # older checkpoints: one process
        planned, micro = micro, resume_micro_batches(saved, micro, world, task.name, checkpoint_path)
        log(f"resumed {task.name} from {checkpoint_path} at step {step}/{tcfg.steps}"
            + (f"; keeping its {micro} micro-batches per step ({planned} planned) so that it continues "
               f"exactly" if micro != planned else ""))
    if world.size > 1:
        log(f"{task.name}: {world.size} processes, each {micro // world.size} of the {micro} "
            f"micro-batches of {tcfg.batch_size // micro} in every batch of {tcfg.batch_size}")
    parallel = DataParallel(task, device, world, micro)

    def save() -> None:
        if world.is_main:
            save_checkpoint(checkpoint_path, {
                "stage": task.name, "step": step, "finished": step >= tcfg.steps,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "sampler": sampler.state_dict(), "micro_batches": micro, "world_size": world.size,
                "config": cfg.to_dict(), "history": history, "evals": evals})

    start_step, t0 = step, time.perf_counter()
    bar = tqdm(total=tcfg.steps, initial=step, desc=task.name, dynamic_ncols=True, leave=True,
               disable=not world.is_main)
    try:
        while step < tcfg.steps:
            if stop_after is not None and step - start_step >= stop_after:
                raise KeyboardInterrupt
            out, lr, grad_norm = train_step(task, optimizer, sampler, tcfg, step, device, cfg.seed, parallel)
            step += 1
            bar.update(1)
            if clock is not None and (message := clock.tick(step, tcfg.steps)) and world.is_main:
                bar.write(message)
            if step % tcfg.log_every == 0 or step == tcfg.steps:
                out = world.mean(out)  # every rank takes part; rank 0 keeps the record
                history.append({"step": step, "lr": lr, "grad_norm": float(grad_norm),
                                **{k: float(v) for k, v in out.items()}})
                bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", lr=f"{lr:.1e}")
            if step % tcfg.eval_every == 0 or step == tcfg.steps:
                if world.is_main:
                    model.eval()
                    with torch.no_grad(), autocast(device, tcfg.precision):
                        evals.append({"step": step, **task.evaluate(device)})
                    bar.write(f"[{task.name} step {step}] " + "  ".join(
                        f"{k}={v:.4g}" for k, v in evals[-1].items() if k != "step"))
                world.barrier()  # the other ranks wait for rank 0's evaluation
            if step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
                save()
                world.barrier()
    except KeyboardInterrupt:
        save()
        bar.close()
        log(f"{task.name}: stopped at step {step}/{tcfg.steps}; checkpoint saved to "
            f"{checkpoint_path}; continue with --resume")
        return TrainResult(step, False, history, evals)
    bar.close()
    seconds = time.perf_counter() - t0
    if step > start_step:
        log(f"{task.name}: {step - start_step} steps in {seconds:.1f} s "
            f"({(step - start_step) / seconds:.2f} steps/s)")
    model.eval()
    return TrainResult(step, True, history, evals)
