"""Every tutorial chapter runs, top to bottom, at the tiny preset."""

import glob
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tutorials"))
from run_chapter import python_blocks, run_chapter  # noqa: E402

CHAPTERS = sorted(glob.glob(os.path.join(ROOT, "tutorials", "[0-9]*.md")))


def test_there_are_chapters_with_code():
    assert CHAPTERS
    for chapter in CHAPTERS:
        with open(chapter) as f:
            assert python_blocks(f.read()), chapter


@pytest.mark.parametrize("chapter", CHAPTERS, ids=os.path.basename)
def test_chapter_runs_at_tiny_preset(chapter, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITA_MINI_PRESET", "tiny")
    monkeypatch.setenv("VITA_MINI_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.syspath_prepend(ROOT)
    namespace = run_chapter(chapter)
    assert namespace["PRESET"] == "tiny"
