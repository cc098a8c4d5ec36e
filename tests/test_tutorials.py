"""Every tutorial chapter runs, top to bottom, at the tiny preset, as its notebook: each notebook
is what tutorials/make_notebooks.py makes of its chapter (so the two never differ), and its code
cells are the chapter's ```python blocks after one setup cell."""

import glob
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tutorials"))
from make_notebooks import chapter_cells, code_cells, notebook_path, notebook_text, run_notebook  # noqa: E402
from run_chapter import python_blocks  # noqa: E402

CHAPTERS = sorted(glob.glob(os.path.join(ROOT, "tutorials", "[0-9]*.md")))
# the first stage each chapter trains itself; the stages before it come from the session's tiny
# run (conftest.py), as they would from the chapters before it
TRAINS_FROM = {"00": 0, "01": 1, "02": 2, "03": 4, "04": 0}


def test_there_are_chapters_with_code():
    assert CHAPTERS
    for chapter in CHAPTERS:
        with open(chapter) as f:
            assert python_blocks(f.read()), chapter


def test_every_chapter_says_which_stage_it_trains():
    assert sorted(os.path.basename(chapter)[:2] for chapter in CHAPTERS) == sorted(TRAINS_FROM)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=os.path.basename)
def test_every_chapter_has_its_notebook_as_make_notebooks_makes_it(chapter):
    with open(chapter, encoding="utf-8") as f:
        markdown = f.read()
    with open(notebook_path(chapter), encoding="utf-8") as f:
        assert f.read() == notebook_text(markdown), "run python tutorials/make_notebooks.py"
    # the notebook runs exactly the chapter's code: its blocks, in order, after the setup cell
    assert [c.rstrip("\n") for c in python_blocks(markdown)] == code_cells(notebook_path(chapter))[1:]
    assert sum(kind == "code" for kind, _ in chapter_cells(markdown)) == len(python_blocks(markdown)) + 1


@pytest.mark.parametrize("chapter", CHAPTERS, ids=os.path.basename)
def test_chapter_notebook_runs_at_tiny_preset(chapter, tmp_path, monkeypatch, copy_tiny_run):
    copy_tiny_run(tmp_path, range(TRAINS_FROM[os.path.basename(chapter)[:2]]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITA_MINI_PRESET", "tiny")
    monkeypatch.setenv("VITA_MINI_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.syspath_prepend(ROOT)
    namespace = run_notebook(notebook_path(chapter))
    assert namespace["PRESET"] == "tiny"
