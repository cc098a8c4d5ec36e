"""Run the worked solution of one tutorial exercise: the ```python blocks of its section, in
order, in one fresh namespace (as tutorials/run_chapter.py runs a chapter).

    python tutorials/solutions/run_solution.py tutorials/solutions/00_speech_and_tokens.md 2
    VITA_MINI_PRESET=tiny python tutorials/solutions/run_solution.py tutorials/solutions/00_speech_and_tokens.md

Without an exercise number it runs every section of the file, each in its own namespace. A
solution file has one section per exercise, headed ``## Exercise N``; a section whose heading is
directly followed by the line ``<!-- slow -->`` takes more than about 2.5 s at the tiny preset on
a 2-core CPU (tests/test_solutions.py marks it slow, so that the default tests stay within their
10 minutes; ``python -m pytest -m slow tests/test_solutions.py`` runs those).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tutorials/
from run_chapter import python_blocks, run_blocks  # noqa: E402

EXERCISE = re.compile(r"^## Exercise (\d+)[ \t]*$", re.M)
NEXT_SECTION = re.compile(r"^## ", re.M)
SLOW = "<!-- slow -->"


@dataclass
class Section:
    number: int  # the exercise's number in its chapter
    title: str  # the exercise restated: the section's first line of prose
    blocks: list[str]  # its ```python blocks, in order
    slow: bool  # marked <!-- slow --> directly under the heading


def exercise_sections(markdown: str) -> list[Section]:
    """The ``## Exercise N`` sections of a solution file, in the order they appear. A section
    runs to the next level-2 heading (or the end of the file)."""
    sections = []
    for match in EXERCISE.finditer(markdown):
        following = NEXT_SECTION.search(markdown, match.end())
        body = markdown[match.end():following.start() if following else len(markdown)]
        lines = [line.strip() for line in body.strip().splitlines()]
        slow = bool(lines) and lines[0] == SLOW
        prose = [line for line in lines if line and line != SLOW]
        title = prose[0].lstrip("> ").strip() if prose else ""
        sections.append(Section(int(match.group(1)), title, python_blocks(body), slow))
    return sections


def find_section(path: str, number: int) -> Section:
    with open(path, encoding="utf-8") as f:
        sections = exercise_sections(f.read())
    for section in sections:
        if section.number == number:
            return section
    raise KeyError(f"{path} has no '## Exercise {number}' (it has {[s.number for s in sections]})")


def run_section(path: str, number: int) -> dict:
    """Run exercise ``number``'s blocks of the solution file ``path`` in one fresh namespace;
    return the namespace."""
    return run_blocks(find_section(path, number).blocks, f"{path}[exercise {number}]", "__solution__")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python tutorials/solutions/run_solution.py tutorials/solutions/<chapter>.md [N]")
    solution = sys.argv[1]
    if len(sys.argv) == 3:
        run_section(solution, int(sys.argv[2]))
    else:
        with open(solution, encoding="utf-8") as f:
            numbers = [s.number for s in exercise_sections(f.read())]
        for n in numbers:
            print(f"== exercise {n} ==", flush=True)
            run_section(solution, n)
