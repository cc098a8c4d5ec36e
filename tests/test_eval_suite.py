"""Edit-distance metrics against hand-computed cases, and the evaluation suite end to end."""

import json
import shutil
import sys

import pytest

import generate
from vita_mini.errors import VitaError
from vita_mini.eval.__main__ import main as eval_main
from vita_mini.eval.metrics import cer, edit_distance, error_rate, wer


@pytest.mark.parametrize("ref, hyp, distance", [
    ("kitten", "sitting", 3),  # 2 substitutions, 1 insertion
    ("abc", "abc", 0),
    ("", "abc", 3),  # insertions only
    ("abc", "", 3),  # deletions only
    ("", "", 0),
    ("ac", "abc", 1),  # one insertion
    ("abcd", "acd", 1),  # one deletion
    ("abc", "cab", 2),  # a rotation: delete c at the end, insert it in front
    ("flaw", "lawn", 2),
])
def test_edit_distance_by_hand(ref, hyp, distance):
    assert edit_distance(ref, hyp) == distance
    assert edit_distance(hyp, ref) == distance  # symmetric


def test_error_rates_are_corpus_level():
    assert cer(["abc"], ["abd"]) == pytest.approx(1 / 3)
    # total edits / total reference length, not the mean of 1/2 and 0/4
    assert cer(["ab", "cdef"], ["a", "cdef"]) == pytest.approx(1 / 6)
    assert wer(["the cat sat"], ["the cat sat down"]) == pytest.approx(1 / 3)  # one inserted word
    assert wer(["the cat sat", "a dog"], ["the sat", "a dog runs"]) == pytest.approx(2 / 5)
    assert cer(["ana lives in rome"], [""]) == 1.0  # an empty answer misses every character
    assert cer([""], ["x"]) == 1.0  # no reference characters: edits counted over 1, not divided by 0
    assert error_rate([["a", "b"]], [["a", "c"]]) == 0.5
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        cer(["a", "b"], ["a"])


def snapshot(folder) -> dict:
    """{relative path: (size, modification time)} of every file below ``folder``."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_suite_prints_every_table_and_writes_json(tiny_full_run, tmp_path, capsys):
    run, _, _ = tiny_full_run
    # a copy of the run without the corpus-codes caches training left beside stage 0: the suite
    # encodes in memory and writes nothing into the run folder (a read-only or shared run works)
    shutil.copytree(run / "run", tmp_path / "run", ignore=shutil.ignore_patterns("codes-*"))
    before = snapshot(tmp_path / "run")
    path = tmp_path / "results.json"
    # the override comes after --modes on purpose: it must not be taken for a mode
    assert eval_main(["--preset", "tiny", "--device", "cpu", "--run-dir", str(tmp_path / "run"), "--json",
                      str(path), "--modes", "vanilla", "turbo", f"cache_dir={run / 'cache'}"]) == 0
    assert snapshot(tmp_path / "run") == before
    printed = capsys.readouterr().out
    for title in ("ASR, 16 test utterances", "TTS, 16 test sentences", "Spoken QA accuracy", "S2T", "S2S",
                  "text-only facts (8)", "MCTP teacher-forced", "module 9", "tokens/s", "first audio ms"):
        assert title in printed, title
    # the model's own mode, from the interleave its checkpoint records, and Turbo out of step with it
    assert "trained on the interleave [1, 10, 4, 10]: its own mode is boost (*)" in printed
    assert "note: mode turbo [1, 10] is out of step" in printed
    results = json.loads(path.read_text())
    assert results["modes"] == ["vanilla", "turbo"]
    assert results["own_mode"] == "boost" and list(results["out_of_step"]) == ["turbo"]
    for mode in ("vanilla", "turbo"):  # every metric for Turbo beside Vanilla
        assert set(results["tts"][mode]) == {"judge_cer", "copy_cer", "self_cer"}
        for facts in ("seen", "text_only"):
            assert {"s2t", "s2s"} <= set(results["spoken_qa"][mode][facts])
        assert results["speed"][mode]["tokens_per_s"] > 0
    assert [r["offset"] for r in results["mctp_accuracy"]] == list(range(1, 12))


def test_generate_eval_checks_modes_and_stage(tiny_full_run, tiny_run_without_stage4):
    run, _, _ = tiny_full_run
    flags = ["--preset", "tiny", "--device", "cpu", f"cache_dir={run / 'cache'}"]
    with pytest.raises(VitaError, match="vanilla, balance, boost, turbo"):
        generate.main(["--eval", "--modes", "vanilla", "warp", "--run-dir", str(run / "run"), *flags])
    with pytest.raises(VitaError, match="--modes needs at least one mode"):
        generate.main(["--eval", "--modes", "world.seed=0", "--run-dir", str(run / "run"), *flags])
    with pytest.raises(VitaError, match="no stage 4 checkpoint .* run: python train.py --stage 4 --preset tiny"):
        generate.main(["--eval", "--run-dir", tiny_run_without_stage4, *flags])


def test_figures_without_matplotlib_say_how_to_install(monkeypatch):
    from vita_mini.eval.figures import pyplot
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(VitaError, match=r'pip install -e "\.\[figures\]"'):
        pyplot()


def test_figures_are_drawn(tiny_full_run, tmp_path):
    pytest.importorskip("matplotlib")
    from vita_mini.config import get_config
    from vita_mini.eval.figures import make_figures
    run, _, _ = tiny_full_run
    cfg = get_config("tiny")
    cfg.run_dir = str(run / "run")
    results = {"mctp_accuracy": [{"name": "llm", "offset": 1, "audio_acc": 0.5, "text_acc": 0.9},
                                 {"name": "module 0", "offset": 2, "audio_acc": 0.4, "text_acc": 0.8}],
               "speed": {"vanilla": {"tokens_per_s": 100.0, "first_audio_ms": 50.0},
                         "turbo": {"tokens_per_s": 300.0, "first_audio_ms": None}}}
    paths = make_figures(cfg, results, str(tmp_path / "figs"))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["loss_curves.png", "mctp_accuracy.png", "speed.png"]
    for p in paths:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
