"""Stages 2 and 3 end to end at the tiny preset, and generate.py with the modes."""

import json

import pytest
import torch

import generate
import train
from vita_mini.config import get_config
from vita_mini.errors import VitaError
from vita_mini.checkpoint import load_checkpoint
from vita_mini.runs import load_speech_lm
from vita_mini.train.mctp_stages import report_modes
from vita_mini.vocab import BALANCE_RATIO, BOOST_RATIO


@pytest.fixture(scope="module")
def stage3_run(tmp_path_factory, copy_tiny_run):
    """`train.py --stage 3` on a folder that has stages 0 and 1 (copied from the session's tiny
    run): builds the missing stage 2 first, in its own process, then trains stage 3."""
    run = tmp_path_factory.mktemp("stage3")
    copy_tiny_run(run, (0, 1))
    common = ["--preset", "tiny", "--device", "cpu", "--run-dir", str(run / "run"),
              f"cache_dir={run / 'cache'}"]
    assert train.main(["--stage", "3", *common]) == 0
    return run, common


def test_stage3_builds_the_missing_earlier_stage_and_reports(stage3_run):
    run, _ = stage3_run
    for stage in ("stage0", "stage1", "stage2", "stage3"):
        assert load_checkpoint(str(run / "run" / stage / "checkpoint.pt"))["finished"]
    m2 = json.loads((run / "run" / "stage2" / "metrics.json").read_text())
    m3 = json.loads((run / "run" / "stage3" / "metrics.json").read_text())
    assert [r["offset"] for r in m2["accuracy"]] == [1, 2]
    assert [r["offset"] for r in m3["accuracy"]] == list(range(1, 12))  # the LLM and 10 modules
    assert set(m3["tts"]) == {"vanilla", "boost", "turbo"}
    assert set(m3["tts"]["boost"]) == {"judge_cer", "copy_cer", "self_cer"}


def test_stage3_reports_the_models_own_mode_first():
    assert report_modes(BOOST_RATIO) == ("boost", "turbo")
    assert report_modes(BALANCE_RATIO) == ("balance", "boost", "turbo")
    assert report_modes((2, 7)) == ("2,7", "boost", "turbo")  # any interleave runs as its own schedule
    # a shorter cascade (mctp.n_modules=4: chapter 2, exercise 1) reports what it can run
    assert report_modes(BOOST_RATIO, 4) == ("1,4",)
    assert report_modes((2, 3), 4) == ("2,3", "1,4")
    assert report_modes(BOOST_RATIO, 10) == ("boost", "turbo")


def test_stages_2_and_3_leave_the_llm_alone(stage3_run):
    run, _ = stage3_run
    llm1 = load_checkpoint(str(run / "run" / "stage1" / "checkpoint.pt"))["model"]
    for stage in ("stage2", "stage3"):
        state = load_checkpoint(str(run / "run" / stage / "checkpoint.pt"))["model"]
        for name, tensor in llm1.items():
            assert torch.equal(state[f"llm.{name}"], tensor), (stage, name)


def test_loading_modules_names_the_stage_to_run(tmp_path):
    cfg = get_config("tiny")
    cfg.run_dir = str(tmp_path)
    with pytest.raises(VitaError, match="--stage 3"):
        load_speech_lm(cfg, 3)


def test_generate_tts_in_every_mode(stage3_run, tmp_path, capsys):
    run, common = stage3_run
    flags = [f for f in common if not f.startswith("cache_dir") and f not in ("--device", "cpu")]
    for mode in ("vanilla", "boost", "turbo", "1,3"):
        out = tmp_path / f"{mode}.wav"
        try:  # the tiny model, trained for seconds, may write no audio at all
            assert generate.main(["--task", "tts", "--text", "a red cat", "--out", str(out),
                                  "--mode", mode, *flags]) == 0
            assert out.exists() and "tokens/s" in capsys.readouterr().out
        except VitaError as err:
            assert "no audio tokens" in str(err) and not out.exists()


def test_generate_rejects_a_bad_mode(stage3_run, capsys):
    _, common = stage3_run
    flags = [f for f in common if not f.startswith("cache_dir") and f not in ("--device", "cpu")]
    with pytest.raises(VitaError, match="vanilla, balance, boost, turbo"):
        generate.main(["--task", "tts", "--text", "a cat", "--out", "x.wav", "--mode", "warp", *flags])


def test_stages_2_and_3_draw_their_own_sample_shares(tiny_cfg):
    """Stage 1 draws its samples by cfg.alignment_data's shares; stages 2 and 3 by cfg.mctp_data's
    (mostly TTS), from the same samples."""
    from collections import Counter

    from vita_mini.data.corpus import load_corpus
    from vita_mini.data.alignment import AlignmentData

    corpus = load_corpus(tiny_cfg, log=lambda *_: None)
    codes = [[1, 2, 3, 4]] * len(corpus)  # any codes: only the sample kinds are counted
    tiny_cfg.mctp_data.mix_asr, tiny_cfg.mctp_data.mix_tts, tiny_cfg.mctp_data.mix_text = 0.1, 0.8, 0.1
    stage1 = AlignmentData(tiny_cfg, corpus, codes)
    modules = AlignmentData(tiny_cfg, corpus, codes, mix=tiny_cfg.mctp_data)
    assert modules.samples == stage1.samples
    for data, shares in ((stage1, tiny_cfg.alignment_data), (modules, tiny_cfg.mctp_data)):
        counts = Counter(kind for kind, _ in data.order)
        total = sum(counts.values())
        for kind in ("asr", "tts", "text"):
            assert counts[kind] / total == pytest.approx(getattr(shares, f"mix_{kind}"), abs=0.01), kind
