"""Every chapter as a Jupyter notebook, generated from its markdown, so that the two never differ.

    python tutorials/make_notebooks.py            # (re)write tutorials/NN_*.ipynb beside each chapter
    python tutorials/make_notebooks.py --check    # exit 1 if a notebook is not what its chapter makes

A notebook holds the chapter's prose as markdown cells and each of its ```python blocks as a code
cell, in order, after one setup cell (below) that the chapter does not need. The tests run every
notebook's code cells top to bottom at the tiny preset, and check that each notebook is exactly
what this script makes of its chapter; so edit the chapter, then run this script.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_chapter import run_blocks  # noqa: E402

from vita_mini.checkpoint import atomic_write_bytes  # noqa: E402

SETUP = '''\
# Setup (the notebook's own cell; the chapter does not need it). The chapter's code and commands
# run from the repository root, so a notebook opened in tutorials/ moves there first.
import os
import sys

if os.path.basename(os.getcwd()) == "tutorials" and os.path.isdir("../vita_mini"):
    os.chdir("..")
if os.path.isdir("vita_mini"):
    sys.path.insert(0, os.getcwd())
try:
    import vita_mini  # noqa: F401
except ImportError:
    raise SystemExit("vita_mini not found. In Colab, first run: !git clone <this repository's URL> vita-mini "
                     "then %cd vita-mini and run this cell again (Colab has torch, torchaudio and numpy; "
                     "!pip install tqdm matplotlib if they are missing). Elsewhere: pip install -e . "
                     "in the repository, and open the notebook from there.")
'''

BLOCK = re.compile(r"^```python\n(.*?)^```[ \t]*\n?", flags=re.S | re.M)


def chapter_cells(markdown: str) -> list[tuple[str, str]]:
    """[("markdown" | "code", source), ...]: the prose between the ```python blocks, and the blocks."""
    cells, pos = [], 0
    for match in BLOCK.finditer(markdown):
        prose = markdown[pos:match.start()].strip("\n")
        if prose:
            cells.append(("markdown", prose))
        cells.append(("code", match.group(1).rstrip("\n")))
        pos = match.end()
    if markdown[pos:].strip():
        cells.append(("markdown", markdown[pos:].strip("\n")))
    first_code = next((i for i, (kind, _) in enumerate(cells) if kind == "code"), len(cells))
    return cells[:first_code] + [("code", SETUP.rstrip("\n"))] + cells[first_code:]


def lines(source: str) -> list[str]:
    parts = source.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def notebook(markdown: str) -> dict:
    """The nbformat-4 notebook of a chapter (as a dict, ready for json.dump)."""
    cells = []
    for kind, source in chapter_cells(markdown):
        cell = {"cell_type": kind, "metadata": {}, "source": lines(source)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 4,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}}


def notebook_text(markdown: str) -> str:
    return json.dumps(notebook(markdown), indent=1, ensure_ascii=False) + "\n"


def notebook_path(chapter: str) -> str:
    return os.path.splitext(chapter)[0] + ".ipynb"


def code_cells(path: str) -> list[str]:
    """The code cells of the notebook at ``path``, in order."""
    with open(path, encoding="utf-8") as f:
        return ["".join(c["source"]) for c in json.load(f)["cells"] if c["cell_type"] == "code"]


def run_notebook(path: str) -> dict:
    """Run the notebook's code cells top to bottom in one namespace, as Jupyter's kernel would."""
    return run_blocks(code_cells(path), path, "__main__")


def chapters() -> list[str]:
    return sorted(glob.glob(os.path.join(HERE, "[0-9][0-9]_*.md")))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for chapter in chapters():
        with open(chapter, encoding="utf-8") as f:
            text = notebook_text(f.read())
        path = notebook_path(chapter)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current == text:
            continue
        if check:
            stale.append(path)
        else:
            def write(tmp: str, text: str = text) -> None:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(text)

            atomic_write_bytes(path, write)
            print(f"wrote {os.path.relpath(path)}")
    for path in stale:
        print(f"{os.path.relpath(path)}: differs from its chapter; run python tutorials/make_notebooks.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
