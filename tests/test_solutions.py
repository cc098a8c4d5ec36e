"""The worked solutions of the tutorial exercises (tutorials/solutions/): one file per chapter,
one section per exercise of the chapter, and every section runs at the tiny preset.

Sections run as tests/test_tutorials.py runs chapters: in a fresh folder holding a copy of the
session's tiny run (conftest.py), with VITA_MINI_PRESET=tiny and VITA_MINI_RUN_DIR pointing at the
copy. A section marked ``<!-- slow -->`` becomes a slow test (``-m slow``)."""

import glob
import os
import re
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(ROOT, "tutorials", "solutions")
sys.path.insert(0, SOLUTIONS)
from run_solution import exercise_sections, run_section  # noqa: E402

CHAPTERS = sorted(glob.glob(os.path.join(ROOT, "tutorials", "[0-9]*.md")))


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def chapter_exercises(markdown: str) -> list[int]:
    """The numbers of the numbered list under a chapter's ``## Exercises`` heading."""
    match = re.search(r"^## Exercises[ \t]*$(.*?)(?=^## |\Z)", markdown, flags=re.S | re.M)
    assert match, "the chapter has no '## Exercises' section"
    return [int(n) for n in re.findall(r"^(\d+)\. ", match.group(1), flags=re.M)]


def solution_of(chapter: str) -> str:
    return os.path.join(SOLUTIONS, os.path.basename(chapter))


def all_sections():
    """pytest params (solution file, exercise number), slow ones marked, ids like 00-ex1."""
    params = []
    for chapter in CHAPTERS:
        path = solution_of(chapter)
        if not os.path.exists(path):
            continue  # test_every_chapter_has_its_solutions says so
        for section in exercise_sections(read(path)):
            marks = [pytest.mark.slow] if section.slow else []
            params.append(pytest.param(path, section.number, marks=marks,
                                       id=f"{os.path.basename(path)[:2]}-ex{section.number}"))
    return params


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=os.path.basename)
def test_every_chapter_has_its_solutions(chapter):
    path = solution_of(chapter)
    assert os.path.exists(path), f"no worked solutions for {os.path.basename(chapter)}"
    exercises = chapter_exercises(read(chapter))
    assert exercises == list(range(1, len(exercises) + 1))
    assert [s.number for s in exercise_sections(read(path))] == exercises


@pytest.mark.parametrize("chapter", CHAPTERS, ids=os.path.basename)
def test_every_solution_has_code(chapter):
    for section in exercise_sections(read(solution_of(chapter))):
        assert section.blocks, f"exercise {section.number} has no python block"
        assert section.title, f"exercise {section.number} does not restate the exercise"


def test_the_parser_reads_slow_marks_and_section_ends():
    markdown = ("# T\n\n## Exercise 1\n\n> one\n\n```python\nx = 1\n```\n\n"
                "## Exercise 2\n<!-- slow -->\n\n> two\n\n```bash\nls\n```\n\n```python\ny = 2\n```\n\n"
                "## Notes\n\n```python\nz = 3\n```\n")
    one, two = exercise_sections(markdown)
    assert (one.number, one.title, one.blocks, one.slow) == (1, "one", ["x = 1\n"], False)
    assert (two.number, two.title, two.blocks, two.slow) == (2, "two", ["y = 2\n"], True)


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread, here and in the processes a section starts: the sections' models are
    tiny, and two threads on a machine that is busy with other work can be ten times slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("path, number", all_sections())
def test_solution_runs_at_tiny_preset(path, number, tmp_path, monkeypatch, copy_tiny_run, one_thread):
    copy_tiny_run(tmp_path, range(5))  # every trained tiny stage; solutions write beside them
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITA_MINI_PRESET", "tiny")
    monkeypatch.setenv("VITA_MINI_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.syspath_prepend(ROOT)
    namespace = run_section(path, number)
    assert namespace["PRESET"] == "tiny"
