"""python -m vita_mini.eval.gallery makes every picture and sound that README and the chapters
show, and the committed ones stay small."""

import glob
import os
import re

import pytest

from vita_mini.audio.wav import read_wav

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "tutorials", "*.md")))]
CHAPTERS = sorted(glob.glob(os.path.join(ROOT, "tutorials", "[0-9][0-9]_*.md")))
MEDIA = re.compile(r"(figures/[\w.-]+\.png|sounds/[\w.-]+\.wav)")
COMMITTED = sorted(glob.glob(os.path.join(ROOT, "tutorials", "figures", "*.png"))
                   + glob.glob(os.path.join(ROOT, "tutorials", "sounds", "*.wav")))


def referenced(page: str) -> set[str]:
    with open(page, encoding="utf-8") as f:
        return set(MEDIA.findall(f.read()))


def pictures_shown(page: str) -> set[str]:
    """The pictures a page shows: ![...](...figures/x.png)."""
    with open(page, encoding="utf-8") as f:
        return set(re.findall(r"!\[[^\]]*\]\([^)]*(figures/[\w.-]+\.png)\)", f.read()))


def test_readme_shows_three_pictures_and_every_chapter_one():
    assert len(pictures_shown(PAGES[0])) >= 3
    for chapter in CHAPTERS:
        assert pictures_shown(chapter), os.path.basename(chapter)


def test_the_committed_pictures_and_sounds_are_small_and_referenced():
    assert sum(os.path.getsize(p) for p in COMMITTED) < 3_000_000
    everywhere = set().union(*map(referenced, PAGES))
    for path in COMMITTED:
        name = os.path.relpath(path, os.path.join(ROOT, "tutorials"))
        assert name in everywhere, f"{name} is committed but no page shows it"
        if path.endswith(".wav"):
            wav, rate = read_wav(path)
            assert rate == 16000 and len(wav) <= 6.0 * rate, name


def test_the_gallery_makes_every_file_the_pages_reference(tiny_full_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from vita_mini.eval.gallery import main

    run, _, _ = tiny_full_run
    out = tmp_path / "gallery"
    assert main(["--preset", "tiny", "--device", "cpu", "--run-dir", str(run / "run"), "--out", str(out),
                 "--speed-prompts", "1", f"cache_dir={run / 'cache'}"]) == 0
    wanted = set().union(*map(referenced, PAGES))
    assert wanted, "the pages reference no picture or sound"
    for name in sorted(wanted):
        path = out / name
        assert path.exists(), f"{name} is referenced but the gallery did not make it"
        head = path.read_bytes()[:4]
        assert head == (b"\x89PNG" if name.endswith(".png") else b"RIFF"), name
    for name in wanted:
        if name.endswith(".wav"):
            wav, rate = read_wav(out / name)
            assert rate == 16000 and 0 < len(wav) <= 6.0 * rate, name
    assert "MB in all" in capsys.readouterr().out


def test_bad_arguments_are_one_line(tmp_path, capsys):
    from vita_mini.eval.gallery import main

    with pytest.raises(Exception, match="--speed-prompts 0: must be at least 1"):
        main(["--speed-prompts", "0", "--run-dir", str(tmp_path)])
