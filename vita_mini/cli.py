"""Shared by the command lines (train.py, generate.py, python -m vita_mini.eval ...): a VitaError
becomes ``error: ...`` on stderr, one line per problem, and exit code 2; ``--modes`` gives back
the overrides it swallowed."""

from __future__ import annotations

import sys
from typing import Callable


def run_main(main: Callable[[], int]) -> None:
    from vita_mini.errors import VitaError

    try:
        code = main()
    except VitaError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        code = 2
    sys.exit(code)


def use_config_threads(cfg) -> None:
    """torch's CPU threads as ``cfg.num_threads`` says (0: leave torch's default)."""
    if cfg.num_threads > 0:
        import torch

        torch.set_num_threads(cfg.num_threads)


def split_modes(args) -> None:
    """``--modes`` takes every word after it, so in ``--modes vanilla stage1.steps=5`` the
    override would be read as a mode. A mode or schedule never holds '=': move such words to
    ``args.overrides``. With no mode left, say so."""
    from vita_mini.errors import VitaError

    args.overrides += [word for word in args.modes if "=" in word]
    args.modes = [word for word in args.modes if "=" not in word]
    if not args.modes:
        raise VitaError("--modes needs at least one mode (vanilla, balance, boost, turbo) or schedule (e.g. 1,10,4,10)")


def add_run_arguments(parser) -> None:
    """--preset, --run-dir, --device and the config overrides: how an evaluation command finds
    a trained run (python -m vita_mini.eval, python -m vita_mini.eval.speed_quality)."""
    from vita_mini.config import PRESETS

    parser.add_argument("--preset", default="toy", choices=list(PRESETS))
    parser.add_argument("--run-dir", default=None, help="where the checkpoints are (default: runs/<preset>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value",
                        help="config overrides the run was trained with")


def run_config(args):
    """The config of the run that ``add_run_arguments``' flags name."""
    from vita_mini.config import get_config

    cfg = get_config(args.preset, args.overrides)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    return cfg


def threshold_arg(text: str) -> float | tuple[float, float]:
    """An argparse type for confidence thresholds: "0.7" (every token) or "0.9,0.5" (text, audio)."""
    import argparse

    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r}: give a threshold such as 0.7, or text,audio such as 0.9,0.5")
    return values[0] if len(values) == 1 else values
