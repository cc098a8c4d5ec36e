"""python -m vita_mini.eval.gallery: the pictures and sounds of README and the chapters, from a
trained run, by one command.

    python -m vita_mini.eval.gallery                      # runs/toy -> tutorials/figures, tutorials/sounds
    python -m vita_mini.eval.gallery --preset tiny --run-dir /tmp/run --out /tmp/gallery

Pictures (``OUT/figures``, drawn by eval/figures.py):

    waveform_mel.png     a test sentence of the toy world, spoken and resynthesized by the codec
    codebook_usage.png   how often each audio code occurs in the corpus
    packed_mask.png      one packed training row and who attends to whom in it
    token_map.png        a spoken answer in Boost and in Turbo: who wrote each token
    loss_curves.png      every stage's training loss
    mctp_accuracy.png    teacher-forced accuracy by offset on the test sentences read aloud
                         (beside Medusa and DeepSeek-V3)
    speed.png            tokens/s and time to the first audio chunk per mode, on this machine
    speed_quality.png    every decoding setting's speed against its quality: drawn from
                         RUN_DIR/speed_quality.json (python -m vita_mini.eval.speed_quality, 20 min
                         at toy) if it exists, else from a small run of that command here
                         (at most 8 prompts of each task: noisy, and said so in the log)

Sounds (``OUT/sounds``, 16 kHz 16-bit mono WAV, at most ``MAX_SECONDS`` each):

    utterance.wav, utterance_resynth.wav    the sentence of waveform_mel.png, and through the codec
    tts_vanilla.wav ... tts_turbo.wav       the model reading that sentence aloud in each mode
    question.wav, answer.wav                a spoken test question and the model's spoken answer
                                            (in the mode its training interleave names)

Everything is greedy and deterministic except the speed figures, which time this machine.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict

import numpy as np
import torch

from vita_mini.audio.wav import write_wav
from vita_mini.checkpoint import load_json
from vita_mini.cli import add_run_arguments, run_config, run_main
from vita_mini.config import Config
from vita_mini.data.corpus import speak
from vita_mini.data.samples import asr_sample, copy_sample, pack, tts_sample
from vita_mini.data.spoken_qa import question_voices
from vita_mini.errors import VitaError
from vita_mini.eval import figures
from vita_mini.eval.figures import loss_histories
from vita_mini.eval.mctp_accuracy import module_accuracy
from vita_mini.eval.speed_quality import Setting, cpu_name, draw, run_round, speed_quality
from vita_mini.eval.suite import MODE_NAMES, SuiteData, load_suite_data
from vita_mini.eval.tasks import read_aloud
from vita_mini.infer.engine import Engine
from vita_mini.infer.schedule import own_mode
from vita_mini.runs import pick_device
from vita_mini.vocab import (BOA, EOA, PAD, SPOKEN_ANSWER_INSTRUCTION, decode_audio, decode_text, is_audio, is_text,
                             prompt_tokens)

MAX_SECONDS = 6.0  # longer sounds are cut: the committed gallery stays small
SAMPLE_RATE = 16000


def pcm(wav: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Any waveform -> float [N] in [-1, 1], cut at MAX_SECONDS."""
    wav = torch.as_tensor(wav)
    if wav.dtype == torch.int16:
        wav = wav.float() / 32768
    return wav.float().clamp(-1, 1)[:int(MAX_SECONDS * SAMPLE_RATE)]


def write_sound(folder: str, name: str, wav) -> str:
    path = os.path.join(folder, name)
    write_wav(path, pcm(wav), SAMPLE_RATE)
    return path


def token_label(token: int) -> str:
    if is_text(token):
        return bytes([token]).decode("utf-8", errors="replace")
    return {BOA: "[", EOA: "]"}.get(token, "" if is_audio(token) else "*")


def position_kind(token: int) -> str:
    return "text" if is_text(token) else "audio" if is_audio(token) else "pad" if token == PAD else "special"


def utterance_pictures_and_sounds(data: SuiteData, figures_dir: str, sounds_dir: str, log) -> list[str]:
    """waveform_mel.png, utterance(_resynth).wav and tts_<mode>.wav, all of the first test sentence."""
    cfg, codec, judge = data.cfg, data.codec, data.judge
    text = data.test_texts[0]
    original = pcm(speak(text, cfg.synth.assistant_voice, asdict(cfg.synth)))
    resynth = pcm(codec.decode(codec.encode(original), data.voice))
    clips = []
    for title, wav in (("spoken by the synthesizer", original), ("resynthesized: encoded to codes, decoded", resynth)):
        heard = judge.transcribe(wav).strip()
        clips.append((f'{title}\nthe judge hears: "{heard}"', wav, codec.logmel(wav[None])[0].detach()))
    paths = [figures.draw_waveform_mel(clips, os.path.join(figures_dir, "waveform_mel.png")),
             write_sound(sounds_dir, "utterance.wav", original),
             write_sound(sounds_dir, "utterance_resynth.wav", resynth)]
    for mode in MODE_NAMES:
        codes = decode_audio(read_aloud(data.llm, text, mctp=data.mctp, schedule=mode))
        if codes:
            paths.append(write_sound(sounds_dir, f"tts_{mode}.wav", codec.decode(torch.tensor(codes), data.voice)))
        else:
            log(f"{mode}: the model wrote no audio for {text!r}; tts_{mode}.wav not written")
    log(f'sentence: "{text}"')
    return paths


def codebook_counts(data: SuiteData) -> np.ndarray:
    """How often each code occurs in the whole corpus (every utterance's codes)."""
    codes = np.concatenate([np.asarray(c, dtype=np.int64) for c in data.corpus_codes])
    return np.bincount(codes, minlength=data.cfg.codec.codebook_size)


def packed_row_picture(data: SuiteData, path: str) -> str:
    """packed_mask.png: an ASR, a TTS, a copy and a spoken-answer sample (of the shortest test
    sentences) packed into one row, as stages 1 to 4 pack their batches (those that fit one row)."""
    shortest = sorted(range(len(data.test_texts)), key=lambda u: len(data.test_codes[u]))
    asr, tts, copy = shortest[:3]
    candidates = [("ASR", asr_sample(data.test_codes[asr], data.test_texts[asr])),
                  ("TTS", tts_sample(data.test_codes[tts], data.test_texts[tts], data.interleave)),
                  ("copy", copy_sample(data.test_texts[copy]))]
    candidates += [("spoken answer", s) for s in data.sqa.test_seen_samples[:1]]
    row_len, samples = data.cfg.llm.max_seq_len, []
    for name, sample in candidates:  # as many as fit one row
        if sum(len(s) for _, s in samples) + len(sample) <= row_len:
            samples.append((name, sample))
    samples.sort(key=lambda named: len(named[1]), reverse=True)  # the order pack() lays them out in
    batch = pack([s for _, s in samples], row_len)  # one row: every sample fits
    kinds = [position_kind(t) for t in batch.tokens[0].tolist()]
    return figures.draw_packed_mask(batch.doc_ids[0], kinds, [name for name, _ in samples], path)


def spoken_answers(data: SuiteData, figures_dir: str, sounds_dir: str, log) -> list[str]:
    """token_map.png (Boost and Turbo answers to the first seen-fact question), question.wav and
    answer.wav (the answer in the model's own mode)."""
    cfg, codec = data.cfg, data.codec
    question = data.sqa.test_seen[0]
    prompt = prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, question.user)
    own = own_mode(data.interleave)
    answers, own_ids = [], []
    for mode in dict.fromkeys(["boost", "turbo", own]):
        tokens = list(Engine(data.llm, data.mctp).generate(prompt, cfg.llm.max_seq_len, mode))
        ids = [t.id for t in tokens]
        if mode == own:
            own_ids = ids
        if mode in ("boost", "turbo"):
            answers.append((f'"{question.question}" answered in {mode}: "{decode_text(ids).strip()}"',
                            [token_label(t) for t in ids], [t.source for t in tokens]))
    paths = [figures.draw_token_map(answers, os.path.join(figures_dir, "token_map.png"))]
    n_speakers, n_train = cfg.synth.n_speakers, cfg.spoken_qa.train_voices
    voice = question_voices(question.question, n_speakers, n_train)[1]
    paths.append(write_sound(sounds_dir, "question.wav", speak(question.question, voice, asdict(cfg.synth))))
    codes = decode_audio(own_ids)
    if codes:
        paths.append(write_sound(sounds_dir, "answer.wav", codec.decode(torch.tensor(codes), data.voice)))
    else:
        log(f"the model answered {question.question!r} without audio; answer.wav not written")
    log(f'question: "{question.question}", answer ({own}): "{decode_text(own_ids).strip()}"')
    return paths


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name() if device.type == "cpu" else device.type


def measure_speed(data: SuiteData, n_prompts: int) -> dict[str, dict]:
    """tokens/s and mean time to the first audio chunk per mode over the first ``n_prompts``
    seen-fact questions, the modes taking turns prompt by prompt (speed_quality.run_round, as
    the suite's speed table, on fewer prompts)."""
    prompts = [(prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, q.user), data.cfg.llm.max_seq_len)
               for q in data.sqa.test_seen[:n_prompts]]
    tallies = run_round(data, prompts, [Setting(mode) for mode in MODE_NAMES], log=lambda *_: None)
    return {s.schedule: {"tokens_per_s": t.tokens / t.seconds,
                         "first_audio_ms": 1000 * float(np.mean(t.first_audio)) if t.first_audio else None}
            for s, t in tallies.items()}


def speed_quality_picture(data: SuiteData, folder: str, n_prompts: int, log) -> str:
    """speed_quality.png from RUN_DIR/speed_quality.json, or from a small run here (at most 8
    prompts of each task, and no more than the speed figure times)."""
    path = os.path.join(data.cfg.resolved_run_dir(), "speed_quality.json")
    if os.path.exists(path):
        results = load_json(path)
        log(f"speed_quality.png: from {path} ({results['n_tts']} TTS sentences, {results['n_questions']} questions)")
    else:
        log(f"speed_quality.png: {path} does not exist (python -m vita_mini.eval.speed_quality makes it); "
            f"measuring {min(8, n_prompts)} prompts of each task here instead")
        results = speed_quality(data, [(0.9, 0.3)], limit=min(8, n_prompts), log=lambda *_: None)
    return draw(results, folder)


def make_gallery(cfg: Config, device: torch.device, out: str, speed_prompts: int = 16, log=print) -> list[str]:
    """Every picture and sound into ``out``/figures and ``out``/sounds; their paths."""
    figures.pyplot()  # without matplotlib, say so before any work
    figures_dir, sounds_dir = os.path.join(out, "figures"), os.path.join(out, "sounds")
    data = load_suite_data(cfg, device, log)
    if data.mctp is None:
        raise VitaError(f"{cfg.resolved_run_dir()}: the stage-4 checkpoint has no MCTP modules; "
                        "the gallery shows the modes, which need them")
    paths = utterance_pictures_and_sounds(data, figures_dir, sounds_dir, log)
    paths.append(figures.draw_codebook_usage(codebook_counts(data),
                                             os.path.join(figures_dir, "codebook_usage.png")))
    paths.append(packed_row_picture(data, os.path.join(figures_dir, "packed_mask.png")))
    paths += spoken_answers(data, figures_dir, sounds_dir, log)
    histories = {s: h for s, h in loss_histories(cfg).items() if h}
    paths.append(figures.draw_loss_curves(histories, os.path.join(figures_dir, "loss_curves.png")))
    # held-out sentences read aloud (the seen-fact answers of the suite's table are learned by heart)
    samples = [tts_sample(c, t, data.interleave) for c, t in zip(data.test_codes, data.test_texts)]
    with torch.no_grad():
        table = module_accuracy(data.llm, data.mctp, pack(samples, cfg.llm.max_seq_len).to(device))
    paths.append(figures.draw_mctp_accuracy(table, os.path.join(figures_dir, "mctp_accuracy.png"),
                                            f"on the {len(samples)} test sentences read aloud (TTS samples)"))
    speed = measure_speed(data, speed_prompts)
    for mode, s in speed.items():
        first = "-" if s["first_audio_ms"] is None else f"{s['first_audio_ms']:.0f} ms"
        log(f"{mode:>8}: {s['tokens_per_s']:6.0f} tokens/s, first audio chunk {first}")
    machine = (f"{cfg.preset} model, {min(speed_prompts, len(data.sqa.test_seen))} spoken questions, greedy, "
               f"{device_name(device)}, {torch.get_num_threads()} threads")
    paths.append(figures.draw_speed(speed, os.path.join(figures_dir, "speed.png"), machine))
    paths.append(speed_quality_picture(data, figures_dir, speed_prompts, log))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vita_mini.eval.gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--out", default="tutorials", help="write OUT/figures and OUT/sounds (default: tutorials)")
    parser.add_argument("--speed-prompts", type=int, default=16,
                        help="spoken questions the speed figure times in every mode (default 16)")
    args = parser.parse_intermixed_args(argv)
    if args.speed_prompts < 1:
        raise VitaError(f"--speed-prompts {args.speed_prompts}: must be at least 1")
    paths = make_gallery(run_config(args), pick_device(args.device), args.out, args.speed_prompts)
    size = sum(os.path.getsize(p) for p in paths)
    for p in paths:
        print(f"wrote {p} ({os.path.getsize(p) / 1024:.0f} KB)")
    print(f"{len(paths)} files, {size / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    run_main(main)
