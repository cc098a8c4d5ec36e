"""python -m vita_mini.eval: the evaluation suite of the stage-4 model (eval/suite.py).

    python -m vita_mini.eval                                 # toy preset, runs/toy, four modes
    python -m vita_mini.eval --preset tiny --run-dir /tmp/run --modes vanilla turbo
    python -m vita_mini.eval --json results.json --figures figures/
"""

from __future__ import annotations

import argparse

from vita_mini.cli import add_run_arguments, run_config, run_main, split_modes
from vita_mini.eval.suite import MODE_NAMES, evaluate_and_report
from vita_mini.runs import pick_device


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vita_mini.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--modes", nargs="+", default=list(MODE_NAMES),
                        help="modes or schedules to evaluate (default: vanilla balance boost turbo)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--figures", help="also draw the figures into this folder (needs matplotlib)")
    args = parser.parse_intermixed_args(argv)
    split_modes(args)
    evaluate_and_report(run_config(args), pick_device(args.device), args.modes, args.json, args.figures)
    return 0


if __name__ == "__main__":
    run_main(main)
