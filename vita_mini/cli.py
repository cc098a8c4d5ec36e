"""Shared by the command lines: a VitaError becomes one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from typing import Callable


def run_main(main: Callable[[], int]) -> None:
    from vita_mini.errors import VitaError

    try:
        code = main()
    except VitaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
