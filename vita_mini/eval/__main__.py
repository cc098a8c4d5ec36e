"""python -m vita_mini.eval: the evaluation suite of the stage-4 model (eval/suite.py).

    python -m vita_mini.eval                                 # toy preset, runs/toy, four modes
    python -m vita_mini.eval --preset tiny --run-dir /tmp/run --modes vanilla turbo
    python -m vita_mini.eval --json results.json --figures figures/
"""

from __future__ import annotations

import argparse

from vita_mini.cli import run_main, split_modes
from vita_mini.config import PRESETS, get_config
from vita_mini.eval.suite import MODE_NAMES, evaluate_and_report
from vita_mini.runs import pick_device


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vita_mini.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="toy", choices=list(PRESETS))
    parser.add_argument("--run-dir", default=None, help="where the checkpoints are (default: runs/<preset>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--modes", nargs="+", default=list(MODE_NAMES),
                        help="modes or schedules to evaluate (default: vanilla balance boost turbo)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--figures", help="also draw the figures into this folder (needs matplotlib)")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value",
                        help="config overrides the run was trained with")
    args = parser.parse_intermixed_args(argv)
    split_modes(args)
    cfg = get_config(args.preset, args.overrides)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    evaluate_and_report(cfg, pick_device(args.device), args.modes, args.json, args.figures)
    return 0


if __name__ == "__main__":
    run_main(main)
