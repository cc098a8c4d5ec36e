"""Run every ```python block of a tutorial chapter, in order, in one namespace.

    python tutorials/run_chapter.py tutorials/00_speech_and_tokens.md
    VITA_MINI_PRESET=tiny python tutorials/run_chapter.py tutorials/00_speech_and_tokens.md

The chapters read the preset from VITA_MINI_PRESET (default: toy). The tests run every chapter
this way at the tiny preset, so the code in the chapters cannot rot.
"""

from __future__ import annotations

import re
import sys


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def run_blocks(blocks: list[str], where: str, name: str = "__chapter__") -> dict:
    """Run code ``blocks`` in order in one fresh namespace (errors name ``where`` and the block's
    number); the namespace. The chapters, their notebooks and the worked solutions run this way."""
    namespace: dict = {"__name__": name}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{where}[block {i + 1}]", "exec"), namespace)
    return namespace


def run_chapter(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return run_blocks(python_blocks(f.read()), path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tutorials/run_chapter.py tutorials/<chapter>.md")
    run_chapter(sys.argv[1])
