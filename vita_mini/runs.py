"""A run: the folder where every stage keeps its checkpoint, and the one way to load what a
finished stage made. Everything that uses a trained model (train.py, generate.py, the evaluation
suite, a stage that builds on an earlier one) comes through here.

    runs/<preset>/                     cfg.resolved_run_dir() (or --run-dir)
        stage0/  checkpoint.pt  config.json  metrics.json  samples/*.wav  codes-*/ (token shards)
        stage1/  checkpoint.pt  config.json  metrics.json
        ...
        stage4/

A stage is an int, 0 to 4, everywhere in the code. ``stage_name(2)`` = "stage2" names its folder,
its training section of the config (``cfg.stage2``) and the ``stage`` field of its checkpoint.
What each stage's checkpoint holds (``build_model``):

    0   AudioModels: the codec (audio tokenizer + detokenizer) and the judge ASR
    1   the LLM
    2   SpeechLM: the LLM and one MCTP module
    3   SpeechLM: the LLM and cfg.mctp.n_modules MCTP modules
    4   the same, fine-tuned on spoken question answering

Every checkpoint of stages 1 to 4 records, in its config, the text/audio interleave its spoken
answers were trained on (``alignment_data.ratio``; ``trained_interleave``). A stage that builds
on an earlier one must use the same (``require_same_interleave``), and generate.py and the
evaluation suite run a model in the mode that matches it unless told otherwise.

Loading only reads the run folder, so a read-only or shared run folder works.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from vita_mini.audio.codec import AudioCodec
from vita_mini.audio.judge import JudgeASR
from vita_mini.checkpoint import check_saved_config, load_checkpoint, load_state_strict
from vita_mini.config import Config
from vita_mini.data.synth import synthesize
from vita_mini.errors import VitaError
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.vocab import BOOST_RATIO, vocab_size

STAGES = (0, 1, 2, 3, 4)
STAGE_TITLES = {0: "audio tokenizer", 1: "audio-text alignment", 2: "one MCTP module",
                3: "ten MCTP modules", 4: "spoken question answering"}

# the config sections a stage's model must agree on to be loaded (its training settings need not)
MODEL_SECTIONS = {0: ["audio", "codec", "judge"], 1: ["codec", "llm"], 2: ["codec", "llm"],
                  3: ["codec", "llm", "mctp"], 4: ["codec", "llm", "mctp"]}


def stage_name(stage: int) -> str:
    """2 -> "stage2": the stage's folder, config section and checkpoint tag."""
    return f"stage{stage}"


def stage_dir(cfg: Config, stage: int) -> str:
    return os.path.join(cfg.resolved_run_dir(), stage_name(stage))


def checkpoint_path(cfg: Config, stage: int) -> str:
    return os.path.join(stage_dir(cfg, stage), "checkpoint.pt")


def train_command(cfg: Config, stage: int) -> str:
    """The command that trains ``stage`` of this run, for error messages."""
    run_dir = f" --run-dir {cfg.run_dir}" if cfg.run_dir else ""
    return f"python train.py --stage {stage} --preset {cfg.preset}{run_dir}"


def stage_state(cfg: Config, stage: int) -> bool | None:
    """True if ``stage`` finished, False if it started and did not finish, None if never started."""
    path = checkpoint_path(cfg, stage)
    if not os.path.exists(path):
        return None
    return bool(load_checkpoint(path, lazy=True).get("finished"))


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda > mps > cpu; an explicit device that is not available is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VitaError(f"--device {name!r} is not a device name (try auto, cpu, cuda, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VitaError(f"--device {name!r}: CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise VitaError(f"--device {name!r}: MPS is not available on this machine")
    return device


class AudioModels(nn.Module):
    """Stage 0's checkpoint: the codec and the judge ASR (keys codec.* and judge.*)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.codec = AudioCodec(cfg.codec, cfg.audio, cfg.corpus.alphabet)
        self.judge = JudgeASR(cfg.judge, cfg.audio, cfg.corpus.alphabet)


class SpeechLM(nn.Module):
    """The LLM and its MCTP cascade, saved together (keys llm.* and mctp.*): stages 2 to 4."""

    def __init__(self, llm: LLM, mctp: MCTP):
        super().__init__()
        self.llm, self.mctp = llm, mctp


def build_model(cfg: Config, stage: int) -> nn.Module:
    """A fresh (untrained) model of the kind ``stage``'s checkpoint holds."""
    if stage == 0:
        return AudioModels(cfg)
    llm = LLM(cfg.llm, vocab_size(cfg.codec.codebook_size))
    if stage == 1:
        return llm
    return SpeechLM(llm, MCTP(cfg.llm, 1 if stage == 2 else cfg.mctp.n_modules))


def load_stage(cfg: Config, stage: int, device: torch.device | str = "cpu") -> nn.Module:
    """The model of a finished ``stage`` of this run, in eval mode on ``device``. Anything else
    (no checkpoint, an unfinished one, another stage's, another config's) is one line that says
    which command to run."""
    path = checkpoint_path(cfg, stage)
    if not os.path.exists(path):
        raise VitaError(f"no stage {stage} checkpoint ({STAGE_TITLES[stage]}) at '{path}'; "
                        f"run: {train_command(cfg, stage)}")
    payload = load_checkpoint(path)
    if payload.get("stage") != stage_name(stage):
        raise VitaError(f"checkpoint '{path}' is a {payload.get('stage')} checkpoint, not {stage_name(stage)}")
    if not payload.get("finished"):
        raise VitaError(f"stage {stage} in '{path}' stopped at step {payload.get('step')}; finish it: "
                        f"{train_command(cfg, stage)} --resume")
    check_saved_config(payload, cfg.to_dict(), MODEL_SECTIONS[stage], path)
    model = build_model(cfg, stage)
    load_state_strict(model, payload["model"], path)
    return model.to(device).eval()


def load_audio_models(cfg: Config, device: torch.device | str = "cpu") -> tuple[AudioCodec, JudgeASR]:
    """Stage 0's trained codec and judge."""
    models = load_stage(cfg, 0, device)
    return models.codec, models.judge


def load_speech_lm(cfg: Config, stage: int, device: torch.device | str = "cpu") -> tuple[LLM, MCTP | None]:
    """The LLM of a finished stage 1 to 4 and its MCTP cascade (None for stage 1)."""
    if stage not in STAGES[1:]:
        raise VitaError(f"stage {stage} has no LLM; choose a stage from 1 to 4")
    model = load_stage(cfg, stage, device)
    return (model, None) if stage == 1 else (model.llm, model.mctp)


def trained_interleave(cfg: Config, stage: int) -> tuple:
    """The interleave [t1, a1, ...] a finished stage 1 to 4 was trained on, as its checkpoint
    records it (checkpoints from before the field existed were all trained on Boost's)."""
    payload = load_checkpoint(checkpoint_path(cfg, stage), lazy=True)  # only its config is read
    saved = payload["config"].get("alignment_data", {}).get("ratio", BOOST_RATIO)
    return tuple(int(x) for x in saved)


def require_same_interleave(cfg: Config, stage: int) -> None:
    """Training on top of ``stage``: the run must keep the interleave that stage was trained on
    (its modules learned to write audio chunks of those lengths), else one line saying how."""
    saved, asked = trained_interleave(cfg, stage), tuple(cfg.alignment_data.ratio)
    if saved != asked:
        was, now = ",".join(map(str, saved)), ",".join(map(str, asked))
        raise VitaError(f"stage {stage} in '{checkpoint_path(cfg, stage)}' was trained on the interleave "
                        f"alignment_data.ratio={was}, this run asks for {now}: pass "
                        f"alignment_data.ratio={was}, or use another --run-dir for the new one")


REPORT_VOICE_TEXT = "ana lives in rome and bob has a cat"  # any sentence: only its voice is used


def report_voice(cfg: Config, codec: AudioCodec) -> int | torch.Tensor:
    """The voice the stages' reports and the evaluation suite speak in: the assistant's voice id
    (codec.voice=id), or, for a decoder told the voice by a recording (codec.voice=reference),
    the speaker embedding [1, C] of a sentence the synthesizer speaks in that voice (the same
    voice stage 4's answers are recorded in; generate.py --voice-wav picks any other)."""
    if cfg.codec.voice == "id":
        return cfg.synth.assistant_voice
    wav = torch.from_numpy(synthesize(REPORT_VOICE_TEXT, cfg.synth.assistant_voice).wav).float()
    with torch.no_grad():
        return codec.speaker_embedding(wav)
