"""The skeleton every stage runs, written once (tutorials/paper.md §6 lists the stages).

A stage file declares what it trains, on what data, with which loss and which report, as a task
class with a ``build`` constructor; this file does the rest, the same way for every stage:

    build the task (data, starting weights) -> write config.json -> train (train/loop.py)
    -> stop here if interrupted -> the stage's report -> metrics.json -> print the report

    stage  file                 what it trains                        starts from
    0      train/stage0.py      audio codec + judge ASR               nothing
    1      train/stage1.py      the LLM (audio-text alignment)        nothing (no pretrained LLM)
    2      train/mctp_stages.py one MCTP module, LLM frozen           stage 1
    3      train/mctp_stages.py ten MCTP modules, LLM frozen          stage 2
    4      train/stage4.py      everything, on spoken QA              stage 3

Under torchrun (train/distributed.py) every rank runs this skeleton: rank 0 builds the task first
(so that any cache or token shard it writes is whole before the others read it), the others
after it; every rank trains; rank 0 alone writes config.json, reports and writes metrics.json,
while the others wait for it.

``metrics.json`` holds the last validation numbers, ``train_seconds`` (data and training),
the report's numbers and ``wall_seconds`` (everything, report included).
"""

from __future__ import annotations

import os
import time
from typing import Protocol

import torch

from vita_mini.checkpoint import save_json
from vita_mini.config import Config
from vita_mini.errors import VitaError
from vita_mini.runs import checkpoint_path, stage_dir, stage_state
from vita_mini.shards import remove_token_shards
from vita_mini.train.compile import compile_blocks
from vita_mini.train.distributed import World, micro_batch_count
from vita_mini.train.eta import StageClock
from vita_mini.train.loop import StageTask, make_sampler, precision_kind, train
from vita_mini.train.memory import estimate_memory, format_bytes
from vita_mini.train.mctp_stages import MCTPTask
from vita_mini.train.stage0 import Stage0Task
from vita_mini.train.stage1 import Stage1Task
from vita_mini.train.stage4 import Stage4Task


class ReportingTask(StageTask, Protocol):
    """A StageTask that also says what it is before training and reports after it."""

    stage: int

    def summary(self) -> str: ...  # one line: model sizes, samples

    def report(self, device: torch.device, folder: str) -> dict: ...  # the stage's own tests

    def format_report(self, metrics: dict) -> str: ...


TASKS = {0: Stage0Task, 1: Stage1Task, 2: MCTPTask, 3: MCTPTask, 4: Stage4Task}


def build_task(cfg: Config, stage: int, device: torch.device, log=print) -> ReportingTask:
    """The task of ``stage``: its data prepared and its starting weights in place."""
    return TASKS[stage].build(cfg, stage, device, log)


def run_stage(cfg: Config, stage: int, device: torch.device, resume: bool = False,
              stop_after: int | None = None, log=print, later_stages=(),
              world: World = World()) -> dict | None:
    """Train ``stage`` into its folder of the run; its metrics, or None if it stopped early
    (``stop_after`` steps, or Ctrl-C: continue with ``resume=True``). After the first steps it
    says how long the stage will take here, and ``later_stages`` (train/eta.py) after it.
    ``world``: this process's rank under torchrun; only rank 0 logs and reports."""
    t0 = time.perf_counter()
    folder = stage_dir(cfg, stage)
    if not world.is_main:
        log = lambda *_: None  # noqa: E731  (rank 0 speaks for all)
    if world.is_main and stage == 0 and not (resume and stage_state(cfg, 0)):
        remove_token_shards(folder)  # made by the codec this stage is about to change
    task = build_task(cfg, stage, device, log) if world.is_main else None
    world.barrier()  # rank 0's caches and shards are on disk: the others read them
    task = task or build_task(cfg, stage, device, log)
    if cfg.compile:
        log(f"torch.compile: {compile_blocks(task.model)} blocks (compiled on their first call)")
    log(task.summary())
    if world.is_main:
        save_json(os.path.join(folder, "config.json"), cfg.to_dict())
    tcfg = getattr(cfg, task.name)
    log(memory_estimate(task, cfg, tcfg, device, world).describe())
    clock = StageClock(cfg, stage, precision_kind(device, tcfg.precision), later_stages)
    result = train(task, cfg, tcfg, checkpoint_path(cfg, stage), device, resume=resume,
                   stop_after=stop_after, log=log, clock=clock, world=world)
    if not result.finished:
        return None
    metrics = {"step": result.step, **(result.evals[-1] if result.evals else {})}
    if device.type == "cuda":
        metrics["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        log(f"{task.name}: peak memory measured {format_bytes(metrics['peak_memory_bytes'])} (rank 0)")
    metrics["train_seconds"] = time.perf_counter() - t0
    if world.is_main:
        metrics.update(task.report(device, folder))
        metrics["wall_seconds"] = time.perf_counter() - t0
        save_json(os.path.join(folder, "metrics.json"), metrics)
        log(task.format_report(metrics))
    world.barrier()  # the others wait for rank 0's report
    return metrics


def memory_estimate(task, cfg: Config, tcfg, device: torch.device, world: World = World()):
    """train/memory.py's estimate for this stage, counted on this rank's first micro-batch; a
    forward pass that does not fit on the device is one clear line."""
    task.model.to(device)
    micro = tcfg.batch_size // micro_batch_count(tcfg.batch_size, tcfg.grad_accum, world, task.name)
    try:
        return estimate_memory(task, tcfg, make_sampler(task, tcfg, cfg.seed), device, micro)
    except torch.OutOfMemoryError:
        raise VitaError(f"{task.name}: one micro-batch of {micro} does not fit on {device} even "
                        f"for the forward pass; lower {task.name}.batch_size or raise "
                        f"{task.name}.grad_accum") from None
