"""generate.py end to end on the tiny stage-4 run: chat by voice and by text, every LLM task,
and bad input (one clear line, no traceback, no output file)."""

import os
import subprocess
import sys

import pytest
import torch

import generate
from vita_mini.audio.wav import write_wav
from vita_mini.errors import VitaError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def flags(tiny_full_run):
    run, _, _ = tiny_full_run
    return ["--preset", "tiny", "--device", "cpu", "--run-dir", str(run / "run")]


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("q") / "question.wav")
    assert generate.main(["--task", "speak", "--text", "where does ana live", "--speaker", "1", "--out", path]) == 0
    return path


def run_or_no_audio(argv, out, capsys):
    """The tiny model, trained for seconds, may write no audio: then the error says so and no
    file is left. Either way the text streamed and the speed report came first."""
    try:
        assert generate.main(argv) == 0
        assert out is None or os.path.getsize(out) > 44
    except VitaError as err:
        assert "no audio tokens" in str(err) and not os.path.exists(out)
    printed = capsys.readouterr().out  # (a line on the mode may come first)
    assert "\ntext: " in "\n" + printed and "tokens/s" in printed and "audio chunks" in printed


def test_chat_by_voice(flags, question_wav, tmp_path, capsys):
    out = str(tmp_path / "answer.wav")
    run_or_no_audio(["--task", "chat", "--audio", question_wav, "--out", out, *flags], out, capsys)


@pytest.mark.parametrize("mode", ["vanilla", "turbo", "1,4"])
def test_chat_by_text_in_modes(flags, tmp_path, capsys, mode):
    out = str(tmp_path / "answer.wav")
    run_or_no_audio(["--task", "chat", "--text", "Where does Ana live?", "--mode", mode, "--out", out,
                     "--temperature", "0.8", "--top-k", "20", *flags], out, capsys)


def test_verified_chat_prints_vanillas_answer_and_the_acceptance(flags, capsys):
    question = ["--task", "chat", "--text", "what pet does bob have", *flags]
    assert generate.main([*question, "--mode", "vanilla"]) == 0
    vanilla = capsys.readouterr().out
    assert generate.main([*question, "--mode", "turbo", "--verify", "--min-confidence", "0.3"]) == 0
    verified = capsys.readouterr().out
    answer = [line for line in vanilla.splitlines() if line.startswith("text: ")]
    assert answer and answer == [line for line in verified.splitlines() if line.startswith("text: ")]
    assert "MCTP drafts accepted" in verified


def test_chat_without_out_only_prints(flags, capsys):
    assert generate.main(["--task", "chat", "--text", "what pet does bob have", *flags]) == 0
    assert "tokens/s" in capsys.readouterr().out


def test_other_llm_tasks_on_the_stage4_model(flags, question_wav, tmp_path, capsys):
    assert generate.main(["--task", "asr", "--audio", question_wav, "--stage", "4", *flags]) == 0
    assert generate.main(["--task", "text", "--text", "where does ana live", "--stage", "4", *flags]) == 0
    capsys.readouterr()
    out = str(tmp_path / "tts.wav")
    run_or_no_audio(["--task", "tts", "--text", "a red cat", "--out", out, "--stage", "4", "--mode", "boost",
                     *flags], out, capsys)


@pytest.mark.parametrize("argv, phrase", [
    (["--task", "chat", "--audio", "{tmp}/missing.wav"], "does not exist"),
    (["--task", "chat", "--audio", "{tmp}/notwav.wav"], "is not a WAV file"),
    (["--task", "chat", "--text", "   "], "--text is empty"),
    (["--task", "chat", "--text", "?"], "--text is empty"),
    (["--task", "tts", "--text", ""], "--text is empty"),
    (["--task", "chat"], "needs --audio or --text"),
    (["--task", "chat", "--audio", "{tmp}/notwav.wav", "--text", "hi"], "not both"),
    (["--task", "sing"], "unknown task 'sing'"),
    (["--task", "chat", "--text", "hi", "--stage", "3"], "needs the spoken-QA model of stage 4"),
    (["--task", "tts", "--text", "hi", "--stage", "1", "--mode", "turbo"], "needs MCTP modules"),
    (["--task", "chat", "--text", "hi", "--mode", "warp"], "vanilla, balance, boost, turbo"),
])
def test_bad_input_is_one_clear_error_and_no_file(flags, tmp_path, argv, phrase):
    (tmp_path / "notwav.wav").write_bytes(b"ID3\x03\x00" + b"\x00" * 200)
    out = tmp_path / "answer.wav"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(VitaError, match=phrase.replace("?", r"\?")):
        generate.main([*argv, "--out", str(out), *flags])
    assert not out.exists()


def test_chat_on_a_run_without_stage4_names_the_command(tiny_run_without_stage4, tmp_path):
    out = tmp_path / "a.wav"
    with pytest.raises(VitaError, match="no stage 4 checkpoint .* run: python train.py --stage 4 --preset tiny"):
        generate.main(["--task", "chat", "--text", "hi", "--out", str(out), "--preset", "tiny",
                       "--run-dir", tiny_run_without_stage4])
    assert not out.exists()


def test_errors_are_one_line_without_traceback_from_the_command_line(tmp_path):
    for argv in (["--task", "sing"], ["--task", "chat", "--audio", str(tmp_path / "none.wav")]):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "generate.py"), *argv,
                                 "--out", str(tmp_path / "a.wav")], cwd=tmp_path, capture_output=True,
                                text=True, env={**os.environ, "PYTHONPATH": ROOT})
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert not (tmp_path / "a.wav").exists()
