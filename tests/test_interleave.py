"""The training interleave as a first-class choice: named in the config and on train.py's command
line, recorded by every checkpoint of stages 1-4, kept by the stages that build on each other,
and the default mode of generate.py and the evaluation suite (a mode out of step says so)."""

import shutil

import pytest
import torch

import generate
import train
from vita_mini.checkpoint import load_checkpoint, save_checkpoint
from vita_mini.config import get_config
from vita_mini.data.samples import tts_sample
from vita_mini.errors import VitaError
from vita_mini.eval import suite
from vita_mini.infer.schedule import MODES, in_step, own_mode, step_note
from vita_mini.runs import (build_model, checkpoint_path, require_same_interleave, stage_name,
                            trained_interleave)
from vita_mini.train.mctp_stages import start_cascade
from vita_mini.vocab import BALANCE_RATIO, BOA, BOOST_RATIO, EOA, text_ids

BOOST, BALANCE = list(BOOST_RATIO), list(BALANCE_RATIO)


@pytest.mark.parametrize("mode, boost_model, balance_model", [
    ("vanilla", True, True),  # the LLM writes everything: never out of step
    ("boost", True, False),
    ("balance", False, True),
    ("turbo", False, False),  # its modules write text too
])
def test_which_modes_are_in_step_with_which_model(mode, boost_model, balance_model):
    assert in_step(MODES[mode], BOOST_RATIO) == boost_model
    assert in_step(MODES[mode], BALANCE_RATIO) == balance_model


def test_in_step_reads_the_repeating_last_pair_and_each_position():
    assert in_step((1, 10, 4, 10, 4, 10), BOOST_RATIO)  # the same pattern, written longer
    assert not in_step((1, 10, 4, 9), BOOST_RATIO)  # one module step short per cycle
    assert not in_step((2, 10), (1, 10))
    assert in_step((2, 7, 3, 5), (2, 7, 3, 5))


def test_own_mode_and_the_note_for_a_mode_out_of_step():
    assert own_mode(BOOST_RATIO) == "boost" and own_mode(BALANCE_RATIO) == "balance"
    assert own_mode((2, 7)) == "2,7"  # no named mode matches: the interleave itself
    assert step_note("boost", BOOST_RATIO) is None and step_note("vanilla", BALANCE_RATIO) is None
    note = step_note("turbo", BOOST_RATIO)
    assert note.startswith("note: mode turbo [1, 10] is out of step") and "its own mode: boost" in note
    assert "its own mode: balance" in step_note("boost", BALANCE_RATIO)


def test_the_interleave_by_name_in_the_config_and_on_the_command_line():
    assert get_config("tiny").alignment_data.ratio == BOOST_RATIO
    assert get_config("tiny", ["alignment_data.ratio=balance"]).alignment_data.ratio == BALANCE_RATIO
    assert get_config("tiny", ["alignment_data.ratio=2,7"]).alignment_data.ratio == (2, 7)
    with pytest.raises(VitaError, match="alignment_data.ratio"):
        get_config("tiny", ["alignment_data.ratio=1,2"])
    args = train.parse_args(["--stage", "1", "--interleave", "balance"])
    assert args.interleave == "balance"


def test_balance_samples_follow_the_balance_interleave():
    text, codes = "ana lives in rome", list(range(30))
    ids = tts_sample(codes, text, BALANCE_RATIO).ids
    answer = ids[ids.index(BOA) - 1:]  # from the answer's first text token
    t = text_ids(text)
    # chunks: 1 text, BOA 2 codes EOA, 3 text, BOA 6 codes EOA, 4 text, BOA 8 codes EOA, ...
    assert answer[:1] == t[:1] and answer[1] == BOA and answer[4] == EOA
    assert answer[5:8] == t[1:4] and answer[8] == BOA and answer[15] == EOA
    assert answer[16:20] == t[4:8] and answer[20] == BOA and answer[29] == EOA


def _finished(cfg, stage: int, ratio) -> str:
    """A finished checkpoint of ``stage`` (fresh weights) whose config records ``ratio``."""
    config = cfg.to_dict()
    if ratio is None:
        del config["alignment_data"]["ratio"]  # a checkpoint from before the field existed
    else:
        config["alignment_data"]["ratio"] = list(ratio)
    path = checkpoint_path(cfg, stage)
    save_checkpoint(path, {"stage": stage_name(stage), "step": 1, "finished": True,
                           "model": build_model(cfg, stage).state_dict(), "config": config})
    return path


def test_checkpoints_record_the_interleave_and_later_stages_keep_it(tiny_cfg):
    _finished(tiny_cfg, 1, BALANCE_RATIO)
    assert trained_interleave(tiny_cfg, 1) == BALANCE_RATIO
    with pytest.raises(VitaError, match=r"stage 1 in .* was trained on the interleave "
                                        r"alignment_data.ratio=1,4,3,8,4,10, this run asks for 1,10,4,10"):
        start_cascade(tiny_cfg, 2, torch.device("cpu"))  # stage 2 of a Boost run on a Balance LLM
    tiny_cfg.alignment_data.ratio = BALANCE_RATIO
    llm, mctp = start_cascade(tiny_cfg, 2, torch.device("cpu"))
    assert len(mctp) == 1
    _finished(tiny_cfg, 3, None)
    assert trained_interleave(tiny_cfg, 3) == BOOST_RATIO  # older checkpoints: all trained on Boost's
    with pytest.raises(VitaError, match="pass alignment_data.ratio=1,10,4,10, or use another --run-dir"):
        require_same_interleave(tiny_cfg, 3)


def test_a_real_run_records_its_interleave(tiny_full_run):
    run, _, _ = tiny_full_run
    for stage in (1, 2, 3, 4):
        saved = load_checkpoint(str(run / "run" / stage_name(stage) / "checkpoint.pt"))["config"]
        assert tuple(saved["alignment_data"]["ratio"]) == BOOST_RATIO


def _balance_copy(tiny_full_run, tmp_path) -> str:
    """A copy of the tiny run's stages 0 and 4 whose stage-4 checkpoint records the Balance
    interleave (the weights stay the Boost model's: only what is recorded matters here)."""
    run, _, _ = tiny_full_run
    for stage in (0, 4):
        shutil.copytree(run / "run" / stage_name(stage), tmp_path / "balance" / stage_name(stage))
    path = str(tmp_path / "balance" / "stage4" / "checkpoint.pt")
    payload = load_checkpoint(path)
    payload["config"]["alignment_data"]["ratio"] = BALANCE
    save_checkpoint(path, payload)
    return str(tmp_path / "balance")


def test_generate_runs_the_models_own_mode_unless_told(tiny_full_run, tmp_path, capsys):
    run, _, _ = tiny_full_run
    flags = ["--preset", "tiny", "--device", "cpu", f"cache_dir={run / 'cache'}"]
    assert generate.main(["--task", "chat", "--text", "where does ana live", "--run-dir", str(run / "run"),
                          *flags]) == 0
    printed = capsys.readouterr().out
    assert "mode boost [1, 10, 4, 10]: this model's own" in printed and "mode [1, 10, 4, 10])" in printed
    assert generate.main(["--task", "chat", "--text", "where does ana live", "--mode", "turbo",
                          "--run-dir", str(run / "run"), *flags]) == 0
    printed = capsys.readouterr().out
    assert "note: mode turbo [1, 10] is out of step" in printed and "mode [1, 10])" in printed
    balance = _balance_copy(tiny_full_run, tmp_path)
    assert generate.main(["--task", "chat", "--text", "where does ana live", "--run-dir", balance, *flags]) == 0
    assert "mode balance [1, 4, 3, 8, 4, 10]: this model's own" in capsys.readouterr().out
    # stage 1 has no modules: Vanilla, and no note (the tiny model may write no audio: then it says so)
    try:
        generate.main(["--task", "tts", "--text", "a red cat", "--out", str(tmp_path / "a.wav"),
                       "--run-dir", str(run / "run"), *flags])
    except VitaError as err:
        assert "no audio tokens" in str(err)
    printed = capsys.readouterr().out
    assert "mode [inf, 0])" in printed and "this model's own" not in printed


def test_the_suite_lays_answers_out_as_the_model_was_trained(tiny_full_run, tmp_path, monkeypatch):
    """The teacher-forced table reads the seen-fact answers: a Balance model's must be interleaved
    the Balance way even when the command line's config (the preset's) names Boost."""
    run, _, _ = tiny_full_run
    asked = []

    class Enough(Exception):
        pass

    def spy(cfg, *args, **kwargs):
        asked.append(tuple(cfg.alignment_data.ratio))
        raise Enough  # what comes after is the suite's own test's business

    monkeypatch.setattr(suite, "spoken_qa_data", spy)
    cfg = get_config("tiny", [f"cache_dir={run / 'cache'}"])
    cfg.run_dir = _balance_copy(tiny_full_run, tmp_path)
    with pytest.raises(Enough):
        suite.run_suite(cfg, torch.device("cpu"), modes=("vanilla",))
    assert asked == [BALANCE_RATIO] and tuple(cfg.alignment_data.ratio) == BOOST_RATIO  # the caller's is untouched
