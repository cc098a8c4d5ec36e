"""Shared by the command lines (train.py, generate.py, python -m vita_mini.eval): a VitaError
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
