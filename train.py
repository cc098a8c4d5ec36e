"""Train vita-mini, one stage at a time.

    python train.py --stage 0                      # audio tokenizer + judge ASR (toy preset)
    python train.py --stage 0 --preset tiny        # the seconds-long version the tests use
    python train.py --stage 0 codec.codebook_size=256 stage0.steps=500   # override any field
    python train.py --stage 0 --resume             # continue an interrupted run
    python train.py --stage 1 --eval               # re-evaluate a finished stage
    python train.py --stage 3                      # builds any missing earlier stage first
    python train.py --stage all                    # 0 to 4 in order: finished stages are skipped,
                                                   # an unfinished one resumes (--restart: all anew)

A stage that builds on earlier ones trains those first, each in a fresh Python process, exactly as if
you had typed ``python train.py --stage N`` yourself. Why not in this process: on our 2-core CPU the
MCTP stages ran up to 1.7x slower in a process that had already trained stage 0 (memory allocation
got slower after stage 0's large audio tensors; tutorials/02_mctp_and_modes.md has the measurement).

Stages: 0 tokenizer + judge; 1 audio-text alignment (the LLM); 2 one MCTP module; 3 ten MCTP
modules (the LLM frozen in 2 and 3); 4 spoken question answering (everything trains).

Checkpoints, the resolved config and metrics go to runs/<preset>/stage<N>/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

from vita_mini.cli import run_main
from vita_mini.config import PRESETS, get_config
from vita_mini.errors import VitaError
from vita_mini.train.checkpoint import load_checkpoint
from vita_mini.train.loop import pick_device
from vita_mini.train.mctp_stages import run_mctp_stage
from vita_mini.train.stage0 import run_stage0, stage_dir
from vita_mini.train.stage1 import run_stage1
from vita_mini.train.stage4 import run_stage4

STAGES = ["0", "1", "2", "3", "4"]
NAMES = {"0": "audio tokenizer", "1": "audio-text alignment", "2": "one MCTP module",
         "3": "ten MCTP modules", "4": "spoken question answering"}


def run_stage(stage: str, cfg, device, resume: bool = False, stop_after: int | None = None):
    """Train one stage; its metrics, or None if it stopped early."""
    if stage == "0":
        return run_stage0(cfg, device, resume=resume, stop_after=stop_after)
    if stage == "1":
        return run_stage1(cfg, device, resume=resume, stop_after=stop_after)
    if stage == "4":
        return run_stage4(cfg, device, resume=resume, stop_after=stop_after)
    return run_mctp_stage(cfg, f"stage{stage}", device, resume=resume, stop_after=stop_after)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=[*STAGES, "all"],
                        help="which stage to train; all: 0 to 4 in order")
    parser.add_argument("--preset", default="toy", choices=list(PRESETS), help="config preset (default: toy)")
    parser.add_argument("--device", default=None, help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    parser.add_argument("--run-dir", default=None, help="where checkpoints go (default: runs/<preset>)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the stage's checkpoint")
    group.add_argument("--restart", action="store_true", help="train from scratch, replacing the checkpoint")
    group.add_argument("--eval", action="store_true", help="only evaluate the finished stage and print its report")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="stop after N steps as if interrupted (resume later with --resume)")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value",
                        help="override any config field, e.g. codec.codebook_size=256")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = get_config(args.preset, args.overrides)
    if args.seed is not None:
        cfg.seed = args.seed
    if args.run_dir is not None:
        cfg.run_dir = args.run_dir
    if args.device is not None:
        cfg.device = args.device
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    print(f"vita-mini: stage {args.stage}, preset {cfg.preset}, device {device}, run {cfg.resolved_run_dir()}")
    print(cfg.to_json())
    if args.stage == "all":
        return run_all(cfg, args)
    checkpoint = os.path.join(stage_dir(cfg, f"stage{args.stage}"), "checkpoint.pt")
    if args.eval:
        if not stage_finished(cfg, f"stage{args.stage}"):
            raise VitaError(f"--eval needs a finished stage {args.stage} in '{checkpoint}'; "
                            f"train it first: python train.py --stage {args.stage} --preset {cfg.preset}")
        args.resume = True  # a finished run resumes straight into its report
    elif os.path.exists(checkpoint) and not (args.resume or args.restart):
        raise VitaError(f"'{checkpoint}' already exists: pass --resume to continue it or --restart "
                        f"to train from scratch")
    ensure_earlier_stages(cfg, args, args.stage)
    done = run_stage(args.stage, cfg, device, resume=args.resume, stop_after=args.stop_after)
    return 0 if done is not None else 1


def run_all(cfg, args) -> int:
    """Stages 0 to 4 in order, each in its own process. A finished stage is skipped (``--restart``:
    trained anew, and ``--eval``: reported again), an unfinished one resumes; ``--stop-after``
    stops the first stage that trains."""
    for stage in STAGES:
        state = stage_finished(cfg, f"stage{stage}")
        if args.eval:
            if not state:
                raise VitaError(f"--eval needs a finished stage {stage} in {cfg.resolved_run_dir()}; "
                                f"train it first: python train.py --stage all --preset {cfg.preset}")
            how = "--eval"
        elif state and not args.restart:
            print(f"stage {stage} ({NAMES[stage]}) already finished in {cfg.resolved_run_dir()}: skipping")
            continue
        else:
            how = "--resume" if state is False and not args.restart else "--restart"
        print(f"== stage {stage} ({NAMES[stage]}) ==", flush=True)
        code = run_in_fresh_process(stage, args, how, args.stop_after)
        if code == 1:
            print(f"stage {stage} stopped before it finished; run the same command again (without "
                  f"--restart) to continue from there")
        if code != 0:
            return code
    return 0


def run_in_fresh_process(stage: str, args, how: str, stop_after: int | None = None) -> int:
    """``python train.py --stage <stage> <how>`` with this run's preset, device, seed, run folder
    and overrides, in a new Python process; its exit code (0 finished, 1 stopped early, 2 error)."""
    command = [sys.executable, os.path.abspath(__file__), "--stage", stage, "--preset", args.preset, how]
    for flag, value in (("--device", args.device), ("--seed", args.seed), ("--run-dir", args.run_dir),
                        ("--stop-after", stop_after)):
        if value is not None:
            command += [flag, str(value)]
    command += args.overrides
    with subprocess.Popen(command) as child:
        try:
            return child.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too: it saves a checkpoint and stops
            return child.wait()


def stage_finished(cfg, stage: str) -> bool | None:
    """True if finished, False if started and unfinished, None if there is no checkpoint."""
    path = os.path.join(stage_dir(cfg, stage), "checkpoint.pt")
    if not os.path.exists(path):
        return None
    return bool(load_checkpoint(path).get("finished"))


def ensure_earlier_stages(cfg, args, stage: str) -> None:
    """A stage builds on the ones before it: train (or finish) any that is missing, saying so."""
    for earlier in STAGES[:STAGES.index(stage)]:
        state = stage_finished(cfg, f"stage{earlier}")
        if state:
            continue
        print(f"stage {earlier} ({NAMES[earlier]}) is {'unfinished' if state is False else 'missing'} "
              f"in {cfg.resolved_run_dir()}: training it first", flush=True)
        code = run_in_fresh_process(earlier, args, "--resume" if state is False else "--restart")
        if code != 0:
            raise VitaError(f"stage {earlier} did not finish (exit code {code}); fix what it said "
                            f"above, then run the same command again to continue")


if __name__ == "__main__":
    run_main(main)
