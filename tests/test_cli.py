"""The command lines: bad input gets one clear line naming the file and the problem."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import generate
import train
from vita_mini.audio.wav import write_wav
from vita_mini.errors import VitaError
from vita_mini.checkpoint import load_checkpoint, save_checkpoint
from vita_mini.runs import load_audio_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, copy_tiny_run):
    """A finished tiny stage 0 (the session's, copied) and its run folder."""
    run = tmp_path_factory.mktemp("cli")
    copy_tiny_run(run, (0,))
    args = ["--stage", "0", "--preset", "tiny", "--device", "cpu", "--run-dir", str(run / "run"),
            f"cache_dir={run / 'cache'}"]
    return run, args


def test_speak_then_tokenize_resynth_and_judge(trained, tmp_path, capsys):
    run, _ = trained
    common = ["--preset", "tiny", "--run-dir", str(run / "run"), "--device", "cpu"]
    wav = str(tmp_path / "ana.wav")
    assert generate.main(["--task", "speak", "--text", "Ana lives in Rome", "--out", wav]) == 0
    assert generate.main(["--task", "tokenize", "--audio", wav, *common]) == 0
    assert "tokens at 25 Hz" in capsys.readouterr().out
    out = str(tmp_path / "resynth.wav")
    assert generate.main(["--task", "resynth", "--audio", wav, "--out", out, *common]) == 0
    assert os.path.getsize(out) > 1000
    assert generate.main(["--task", "judge", "--audio", wav, *common]) == 0


@pytest.mark.parametrize("make, phrase", [
    (lambda p: None, "does not exist"),
    (lambda p: open(p, "wb").close(), "is empty"),
    (lambda p: open(p, "wb").write(b"ID3\x03\x00" + b"\x00" * 200), "is not a WAV file"),
    (lambda p: open(p, "wb").write(b"RIFF\x24\x00\x00\x00WAVEfmt "), "is corrupt"),
    (lambda p: write_wav(p, torch.zeros(16000)), "is silent"),
    (lambda p: write_wav(p, torch.tensor([0.5])), "is 1 samples long (0.1 ms); the shortest audio it can hear is "
                                                  "one audio token, 640 samples (40 ms)"),
    (lambda p: write_wav(p, torch.randn(639) * 0.1), "is 639 samples long"),
])
def test_bad_audio_is_one_clear_line_without_traceback(tmp_path, make, phrase):
    path = str(tmp_path / "in.wav")
    make(path)
    result = run_cli(os.path.join(ROOT, "generate.py"), "--task", "judge", "--audio", path, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and path in result.stderr and phrase in result.stderr


def test_missing_stage0_says_which_command_to_run(tmp_path):
    wav = str(tmp_path / "a.wav")
    write_wav(wav, torch.randn(8000) * 0.1)
    with pytest.raises(VitaError, match="run: python train.py --stage 0"):
        generate.main(["--task", "judge", "--audio", wav, "--run-dir", str(tmp_path / "none")])


def test_existing_checkpoint_needs_resume_or_restart(trained):
    _, args = trained
    with pytest.raises(VitaError, match="already exists: pass --resume"):
        train.main(args)


def test_resume_with_another_config_is_refused(trained):
    _, args = trained
    with pytest.raises(VitaError, match="codec.codebook_size: 64 -> 32"):
        train.main([*args, "--resume", "codec.codebook_size=32"])


def test_corrupt_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    with pytest.raises(VitaError, match="is corrupt or not a vita-mini checkpoint"):
        load_checkpoint(str(path))
    path.write_bytes(b"")
    with pytest.raises(VitaError, match="is empty"):
        load_checkpoint(str(path))


def test_partial_state_dict_is_refused_not_loaded_silently(trained, tmp_path):
    run, _ = trained
    from vita_mini.config import get_config
    cfg = get_config("tiny")
    cfg.run_dir = str(tmp_path / "run")
    os.makedirs(f"{cfg.run_dir}/stage0")
    payload = load_checkpoint(str(run / "run" / "stage0" / "checkpoint.pt"))
    payload["model"].pop(next(iter(payload["model"])))
    save_checkpoint(f"{cfg.run_dir}/stage0/checkpoint.pt", payload)
    with pytest.raises(VitaError, match="does not fit the model"):
        load_audio_models(cfg)


def test_bad_overrides_and_device():
    with pytest.raises(VitaError, match="no field 'codebook'"):
        train.main(["--stage", "0", "--preset", "tiny", "codec.codebook=3"])
    with pytest.raises(VitaError, match="expected an integer"):
        train.main(["--stage", "0", "--preset", "tiny", "codec.codebook_size=many"])
    if not torch.cuda.is_available():
        with pytest.raises(VitaError, match="CUDA is not available"):
            train.main(["--stage", "0", "--preset", "tiny", "--device", "cuda"])


def test_cli_error_exit_code_and_single_line(tmp_path):
    result = run_cli(os.path.join(ROOT, "train.py"), "--stage", "0", "--preset", "tiny",
                     "codec.nope=1", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_more_speakers_than_decoder_voices_is_refused(tmp_path):
    with pytest.raises(VitaError, match="needs codec.n_voices >= 6"):
        train.main(["--stage", "0", "--preset", "tiny", "--run-dir", str(tmp_path / "r"),
                    f"cache_dir={tmp_path / 'c'}", "synth.n_speakers=6", "codec.n_voices=4"])


def test_an_earlier_stage_that_fails_in_its_own_process_stops_the_later_one(tmp_path, capfd):
    """`--stage 1` trains stage 0 first, in a child process; its error reaches the user once,
    and the parent stops with a line that names the stage."""
    if shutil.which("espeak-ng"):
        pytest.skip("needs a machine without espeak-ng: its absence is the child's error here")
    with pytest.raises(VitaError, match="stage 0 did not finish \\(exit code 2\\)"):
        train.main(["--stage", "1", "--preset", "tiny", "--device", "cpu", "--run-dir", str(tmp_path / "r"),
                    f"cache_dir={tmp_path / 'c'}", "synth.backend=espeak"])
    assert "needs espeak-ng on PATH" in capfd.readouterr().err  # the child's own one-line error
    assert not os.path.exists(tmp_path / "r" / "stage1")
