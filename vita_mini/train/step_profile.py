"""Where one training step of a stage spends its time, on this machine.

    python -m vita_mini.train.step_profile --stage 1                 # toy preset, runs/toy
    python -m vita_mini.train.step_profile --stage all --steps 5 --precision fp32

Builds the stage's task exactly as ``train.py`` does (its data and starting weights: stages 2-4
need the earlier stages finished in the run folder), takes a few warm-up steps of the shared loop
(train/loop.py ``train_step``), then profiles ``--steps`` more with ``torch.profiler`` and prints
one table per stage: milliseconds per step in

    data        building the batch (packing samples into rows, padding mel spectrograms)
    matmul      the linear layers (aten::mm, addmm, bmm, matmul, linear)
    attention   scaled-dot-product attention
    layout      where each packed sample lies in its row: RoPE positions, document lengths
                (an earlier version built a block-diagonal attention mask here)
    conv        the codec's and the judge's 1-D convolutions (stage 0)
    loss        cross-entropy and CTC
    optimizer   AdamW's update and gradient clipping
    other       everything else: element-wise ops, norms, embeddings, copies, Python

Time is the *self* CPU time of each operator, forward and backward, so the categories add up to
what the operators took (printed as ``sum``, beside the wall time of the same steps; the
difference is Python between operators, and the profiler's own cost). Nothing is saved: the weights
of the run are only read.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from vita_mini.cli import run_main, use_config_threads
from vita_mini.config import PRESETS, get_config
from vita_mini.model import llm, mctp
from vita_mini.runs import STAGES, pick_device
from vita_mini.train.loop import make_optimizer, make_sampler, precision_kind, train_step
from vita_mini.train.run_stage import build_task

LAYOUT_FUNCTION = llm.packed_documents
LAYOUT_USERS = (llm, mctp)  # the modules that call it by name

CATEGORIES = ("data", "matmul", "attention", "layout", "conv", "loss", "optimizer", "other")

# operator name fragments -> category; the first that matches wins (names are lower-cased)
OPERATOR_CATEGORIES = (
    ("optimizer", ("optimizer.step", "adamw", "_foreach", "clip_grad", "_fused_adam")),
    ("attention", ("scaled_dot_product", "_flash_attention", "_efficient_attention")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("conv", ("conv", "mkldnn_convolution")),
    ("loss", ("cross_entropy", "nll_loss", "log_softmax", "ctc")),
)
# Python functions whose whole time (every operator inside) counts as one category
LABELLED = {"vita_mini.data": "data", "vita_mini.layout": "layout"}


def category(name: str) -> str:
    lowered = name.lower()
    for label, fragments in OPERATOR_CATEGORIES:
        if any(fragment in lowered for fragment in fragments):
            return label
    return "other"


def labelled(function, label: str):
    """``function``, run inside a profiler range named ``label``."""
    def wrapper(*args, **kwargs):
        with torch.profiler.record_function(label):
            return function(*args, **kwargs)
    return wrapper


def label_ranges(task) -> None:
    """Name the batch builder and the packed rows' layout in the profile (``LABELLED``)."""
    owner = task.data if hasattr(task, "data") and hasattr(task.data, "batch") else task
    owner.batch = labelled(owner.batch, "vita_mini.data")
    for module in LAYOUT_USERS:
        module.packed_documents = labelled(LAYOUT_FUNCTION, "vita_mini.layout")


def step_categories(events) -> dict[str, float]:
    """{category: self CPU ms} over profiler ``events``: an operator inside a labelled range
    counts for the range's category, any other for its own name's."""
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        label, parent = None, event
        while parent is not None and label is None:
            label, parent = LABELLED.get(parent.name), parent.cpu_parent
        totals[label or category(event.name)] += event.self_cpu_time_total / 1e3
    return totals


def profile_stage(cfg, stage: int, device: torch.device, steps: int, warmup: int) -> dict:
    """{category: ms per step, "wall": ms per step, "steps_per_s": ...} for ``stage``."""
    task = build_task(cfg, stage, device, log=lambda *_: None)
    tcfg = getattr(cfg, task.name)
    model = task.model.to(device)
    optimizer = make_optimizer(task, tcfg)
    sampler = make_sampler(task, tcfg, cfg.seed)
    for step in range(warmup):
        train_step(task, optimizer, sampler, tcfg, step, device)
    label_ranges(task)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for step in range(warmup, warmup + steps):
                train_step(task, optimizer, sampler, tcfg, step, device)
            wall = time.perf_counter() - t0
    finally:
        for module in LAYOUT_USERS:
            module.packed_documents = LAYOUT_FUNCTION
    totals = step_categories(prof.events())
    row = {label: totals.get(label, 0.0) / steps for label in CATEGORIES}
    row["wall"] = wall * 1e3 / steps
    row["steps_per_s"] = steps / wall
    row["precision"] = precision_kind(device, tcfg.precision)
    return row


def format_table(rows: dict[int, dict]) -> str:
    header = "| stage | precision | " + " | ".join(CATEGORIES) + " | sum | wall | steps/s |"
    lines = ["ms per training step (self CPU time of the operators, forward and backward)",
             header, "|" + "---|" * (len(CATEGORIES) + 5)]
    for stage, row in rows.items():
        total = sum(row[label] for label in CATEGORIES)
        cells = [f"{row[label]:.0f} ({row[label] / total * 100:.0f}%)" for label in CATEGORIES]
        lines.append(f"| {stage} | {row['precision']} | " + " | ".join(cells)
                     + f" | {total:.0f} | {row['wall']:.0f} | {row['steps_per_s']:.2f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="all", choices=[*map(str, STAGES), "all"])
    parser.add_argument("--preset", default="toy", choices=list(PRESETS))
    parser.add_argument("--run-dir", default=None, help="the run whose earlier stages to start from")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps per stage")
    parser.add_argument("--warmup", type=int, default=3, help="steps before profiling")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="stages 1-4's precision (stage 0 keeps its config's)")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = get_config(args.preset, args.overrides)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    use_config_threads(cfg)
    for stage in STAGES[1:]:
        getattr(cfg, f"stage{stage}").precision = args.precision
    device = pick_device(cfg.device)
    stages = STAGES if args.stage == "all" else [int(args.stage)]
    rows = {}
    for stage in stages:
        rows[stage] = profile_stage(cfg, stage, device, args.steps, args.warmup)
        print(f"stage {stage}: {rows[stage]['steps_per_s']:.2f} steps/s", flush=True)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    run_main(main)
