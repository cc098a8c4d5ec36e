"""Train vita-mini, one stage at a time.

    python train.py --stage 0                      # audio tokenizer + judge ASR (toy preset)
    python train.py --stage 0 --preset tiny        # the seconds-long version the tests use
    python train.py --stage 0 codec.codebook_size=256 stage0.steps=500   # override any field
    python train.py --stage 0 --resume             # continue an interrupted run
    python train.py --stage 1 --eval               # re-evaluate a finished stage
    python train.py --stage 3                      # builds any missing earlier stage first
    python train.py --stage all                    # 0 to 4 in order: finished stages are skipped,
                                                   # an unfinished one resumes (--restart: all anew)
    python train.py --stage all --interleave balance --run-dir runs/toy-balance   # a Balance model
    torchrun --nproc_per_node=4 train.py --stage all --preset base   # 4 GPUs share every batch

A stage that builds on earlier ones trains those first, each in a fresh Python process, exactly as if
you had typed ``python train.py --stage N`` yourself. Why not in this process: on our 2-core CPU the
MCTP stages ran up to 1.7x slower in a process that had already trained stage 0 (memory allocation
got slower after stage 0's large audio tensors; tutorials/02_mctp_and_modes.md has the measurement).

Under torchrun (train/distributed.py: DistributedDataParallel, NCCL on GPUs, gloo on CPUs) every
rank runs this file; rank 0 alone prints, evaluates and saves, and the stages of ``--stage all``
run one after another in the same processes (the process group is joined once).

Stages: 0 tokenizer + judge; 1 audio-text alignment (the LLM); 2 one MCTP module; 3 ten MCTP
modules (the LLM frozen in 2 and 3); 4 spoken question answering (everything trains).

Checkpoints, the resolved config and metrics go to runs/<preset>/stage<N>/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from vita_mini.cli import run_main, use_config_threads
from vita_mini.config import PRESETS, get_config
from vita_mini.errors import VitaError
from vita_mini.runs import STAGE_TITLES, STAGES, checkpoint_path, pick_device, stage_name, stage_state
from vita_mini.train.distributed import BACKENDS, World, join_world, leave_world, micro_batch_count
from vita_mini.train.run_stage import run_stage


def stage_list(text: str) -> list[int]:
    """"2,3,4" -> [2, 3, 4] (argparse type of --later-stages)."""
    try:
        stages = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        stages = None
    if stages is None or any(stage not in STAGES for stage in stages):
        raise argparse.ArgumentTypeError(f"{text!r}: expected stage numbers 0-4 separated by commas")
    return stages


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=[*map(str, STAGES), "all"],
                        help="which stage to train; all: 0 to 4 in order")
    parser.add_argument("--preset", default="toy", choices=list(PRESETS), help="config preset (default: toy)")
    parser.add_argument("--device", default=None, help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    parser.add_argument("--run-dir", default=None, help="where checkpoints go (default: runs/<preset>)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the stage's checkpoint")
    group.add_argument("--restart", action="store_true", help="train from scratch, replacing the checkpoint")
    group.add_argument("--eval", action="store_true", help="only evaluate the finished stage and print its report")
    parser.add_argument("--interleave", default=None,
                        help="text/audio interleave of spoken answers, stages 1-4: boost (default), "
                             "balance, or t1,a1,t2,a2,... (the same as alignment_data.ratio=...)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the models' blocks: faster steps after a slow first one "
                             "(needs a C++ compiler on CPUs; the same as compile=true)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="under torchrun: the process group's backend (auto: nccl on CUDA, gloo on CPUs)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="stop after N steps as if interrupted (resume later with --resume)")
    parser.add_argument("--later-stages", default=[], type=stage_list, metavar="N,N,...",
                        help="stages that will train after this one (set by --stage all, for the "
                             "time it projects for them)")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value",
                        help="override any config field, e.g. codec.codebook_size=256")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.interleave is not None:
        args.overrides.append(f"alignment_data.ratio={args.interleave}")
    cfg = get_config(args.preset, args.overrides)
    if args.seed is not None:
        cfg.seed = args.seed
    if args.run_dir is not None:
        cfg.run_dir = args.run_dir
    if args.device is not None:
        cfg.device = args.device
    if args.compile:
        cfg.compile = True
    use_config_threads(cfg)
    check_world_size(cfg, args)
    world, cfg.device = join_world(cfg.device, args.backend)
    if not world.is_main:
        sys.stdout = open(os.devnull, "w")  # rank 0 speaks for all (errors still reach stderr)
    try:
        return train_stages(cfg, args, world)
    finally:
        leave_world(world)


def check_world_size(cfg, args) -> None:
    """Under torchrun, one line before anything starts if the processes cannot share a stage's batch."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    stages = STAGES if args.stage == "all" else STAGES[:int(args.stage) + 1]
    for stage in stages:
        name = stage_name(stage)
        tcfg = getattr(cfg, name)
        micro_batch_count(tcfg.batch_size, tcfg.grad_accum, World(0, size), name)


def train_stages(cfg, args, world: World) -> int:
    device = pick_device(cfg.device)
    print(f"vita-mini: stage {args.stage}, preset {cfg.preset}, device {device}, run {cfg.resolved_run_dir()}"
          + (f", {world.size} processes" if world.size > 1 else ""))
    print(cfg.to_json())
    if args.stage == "all":
        return run_all(cfg, args, world)
    stage = int(args.stage)
    checkpoint = checkpoint_path(cfg, stage)
    if args.eval:
        if not stage_state(cfg, stage):
            raise VitaError(f"--eval needs a finished stage {stage} in '{checkpoint}'; "
                            f"train it first: python train.py --stage {stage} --preset {cfg.preset}")
        args.resume = True  # a finished run resumes straight into its report
    elif os.path.exists(checkpoint) and not (args.resume or args.restart):
        raise VitaError(f"'{checkpoint}' already exists: pass --resume to continue it or --restart "
                        f"to train from scratch")
    ensure_earlier_stages(cfg, args, stage, world)
    done = run_stage(cfg, stage, device, resume=args.resume, stop_after=args.stop_after,
                     later_stages=args.later_stages, world=world)
    return 0 if done is not None else stopped_early(world)


def stopped_early(world: World) -> int:
    """The exit code of a stage that stopped before it finished (a checkpoint is saved): 1, so
    that ``--stage all`` knows; under torchrun 0, which reads any other code as a failed rank."""
    return 1 if world.size == 1 else 0


def run_all(cfg, args, world: World) -> int:
    """Stages 0 to 4 in order, each in its own process (under torchrun: in these processes). A
    finished stage is skipped (``--restart``: trained anew, and ``--eval``: reported again), an
    unfinished one resumes; ``--stop-after`` stops the first stage that trains."""
    for stage in STAGES:
        state = stage_state(cfg, stage)
        if args.eval:
            if not state:
                raise VitaError(f"--eval needs a finished stage {stage} in {cfg.resolved_run_dir()}; "
                                f"train it first: python train.py --stage all --preset {cfg.preset}")
            how = "--eval"
        elif state and not args.restart:
            print(f"stage {stage} ({STAGE_TITLES[stage]}) already finished in {cfg.resolved_run_dir()}: skipping")
            continue
        else:
            how = "--resume" if state is False and not args.restart else "--restart"
        print(f"== stage {stage} ({STAGE_TITLES[stage]}) ==", flush=True)
        later = [s for s in STAGES[stage + 1:] if args.restart or args.eval or not stage_state(cfg, s)]
        code = run_one(cfg, stage, args, how, world, args.stop_after, later)
        if code == 1:
            print(f"stage {stage} stopped before it finished; run the same command again (without "
                  f"--restart) to continue from there")
            return stopped_early(world)
        if code != 0:
            return code
    return 0


def run_one(cfg, stage: int, args, how: str, world: World, stop_after=None, later=()) -> int:
    """Stage ``stage`` as ``python train.py --stage <stage> <how>`` would run it: in a fresh
    process, or under torchrun in this one (every rank must take part in the same process
    group); 0 finished, 1 stopped early, 2 error."""
    if world.size == 1:
        return run_in_fresh_process(stage, args, how, stop_after, later)
    done = run_stage(cfg, stage, pick_device(cfg.device), resume=how in ("--resume", "--eval"),
                     stop_after=stop_after, later_stages=later, world=world)
    return 0 if done is not None else 1  # run_all says so, then returns stopped_early(world)


def run_in_fresh_process(stage: int, args, how: str, stop_after: int | None = None, later=()) -> int:
    """``python train.py --stage <stage> <how>`` with this run's preset, device, seed, run folder
    and overrides, in a new Python process; its exit code (0 finished, 1 stopped early, 2 error).
    ``later``: the stages that will follow it (its time estimate projects theirs too)."""
    command = [sys.executable, os.path.abspath(__file__), "--stage", str(stage), "--preset", args.preset, how]
    if later:
        command += ["--later-stages", ",".join(map(str, later))]
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


def ensure_earlier_stages(cfg, args, stage: int, world: World) -> None:
    """A stage builds on the ones before it: train (or finish) any that is missing, saying so."""
    for earlier in STAGES[:stage]:
        state = stage_state(cfg, earlier)
        if state:
            continue
        print(f"stage {earlier} ({STAGE_TITLES[earlier]}) is {'unfinished' if state is False else 'missing'} "
              f"in {cfg.resolved_run_dir()}: training it first", flush=True)
        code = run_one(cfg, earlier, args, "--resume" if state is False else "--restart", world,
                       later=STAGES[earlier + 1:stage + 1])
        if code != 0:
            raise VitaError(f"stage {earlier} did not finish (exit code {code}); fix what it said "
                            f"above, then run the same command again to continue")


if __name__ == "__main__":
    run_main(main)
