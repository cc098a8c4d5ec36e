"""Use what vita-mini has trained so far.

    python generate.py --task speak --text "ana lives in rome" --out ana.wav   # the synthesizer
    python generate.py --task tokenize --audio ana.wav                          # wav -> audio tokens
    python generate.py --task resynth --audio ana.wav --out ana_resynth.wav     # tokens -> wav
    python generate.py --task judge --audio ana.wav                             # the judge ASR
    python generate.py --task asr --audio ana.wav                  # the LLM transcribes (stage 1)
    python generate.py --task tts --text "bob has a cat" --out bob.wav   # the LLM speaks (stage 1)
    python generate.py --task text --text "where does ana live"          # the LLM answers (stage 1)
    python generate.py --task tts --text "bob has a cat" --out bob.wav --mode turbo   # MCTP (stage 3)
    python generate.py --task chat --audio question.wav --out answer.wav  # spoken QA (stage 4), in
                                                                          # the model's own mode
    python generate.py --task chat --text "what pet does hans have" --mode boost
    python generate.py --task chat --text "what pet does hans have" --mode turbo --verify  # drafts checked
    python generate.py --task tts --text "bob has a cat" --out bob.wav --voice-wav me.wav codec.voice=reference
    python generate.py --benchmark                 # speed of the four modes, random weights
    python generate.py --benchmark --tokens 256 --json speed.json
    python generate.py --benchmark --dtype bfloat16   # as the paper measures (fast on CPUs with AMX)
    python generate.py --eval [--json results.json] [--modes vanilla turbo] [--figures figs]

``tokenize``, ``resynth`` and ``judge`` need stage 0 (python train.py --stage 0); ``asr``,
``tts`` and ``text`` use stage 1 (python train.py --stage 1); ``tts`` in any mode but vanilla
uses the MCTP modules of stage 3; ``chat`` and ``--eval`` need stage 4. ``--stage N`` picks
another trained stage's model (``--stage 4`` for the fine-tuned one). ``chat`` prints the answer's
text as it is written, decodes its audio chunk by chunk, writes the WAV at the end, and reports
the time to the first audio chunk and tokens/s. Decoding is greedy unless --temperature is set.
A model with MCTP modules (stage 3 or 4) runs, unless --mode says otherwise, the mode that matches
the interleave it was trained on (boost, or balance for a model trained with
alignment_data.ratio=balance); a --mode out of step with it is run, with a note saying so.

The tasks that speak (``resynth``, ``tts``, ``chat``) decode in a voice. A run whose codec was
trained with ``codec.voice=id`` (the default) knows only the built-in voice ids: ``--speaker``
for resynth, the assistant's voice for tts and chat. A run trained with
``codec.voice=reference`` (pass the override, as every override the run was trained with) speaks
in the voice of a recording, ``--voice-wav FILE`` (its first ``codec.reference_seconds``; at least
0.5 s of sound); without it, resynth keeps the input's own voice, and tts and chat speak in the
assistant's, as the stages' reports do.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from vita_mini.audio.speaker import MIN_REFERENCE_SECONDS
from vita_mini.audio.wav import SILENCE_PEAK, WavWriter, load_audio, write_wav
from vita_mini.cli import run_main, split_modes, threshold_arg
from vita_mini.config import PRESETS, get_config
from vita_mini.data.synth import SPEAKERS, synthesize
from vita_mini.errors import VitaError
from vita_mini.eval.suite import MODE_NAMES, evaluate_and_report
from vita_mini.eval.tasks import answer_text, llm_transcribe
from vita_mini.infer.benchmark import run_benchmark
from vita_mini.infer.engine import Engine
from vita_mini.infer.sampling import Sampling
from vita_mini.infer.schedule import describe, own_mode, parse_schedule, step_note
from vita_mini.infer.stream import TextPiece, stream_events
from vita_mini.infer.verified import VerifiedEngine
from vita_mini.runs import load_audio_models, load_speech_lm, pick_device, report_voice, trained_interleave
from vita_mini.vocab import (CHARSET, SPOKEN_ANSWER_INSTRUCTION, TTS_INSTRUCTION, prompt_tokens, text_ids,
                             user_audio, vocab_size)

TASKS = ["speak", "tokenize", "resynth", "judge", "asr", "tts", "text", "chat"]
LLM_TASKS = ["asr", "tts", "text", "chat"]
SPEAKING_TASKS = ["resynth", "tts", "chat"]  # their output goes through the codec's decoder


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", help=f"one of {', '.join(TASKS)}")
    parser.add_argument("--benchmark", action="store_true",
                        help="time Vanilla/Balance/Boost/Turbo on random weights at three sizes")
    parser.add_argument("--tokens", type=int, default=1024, help="new tokens per benchmark run")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="weights and activations of the benchmark models (bfloat16 as in the paper)")
    parser.add_argument("--json", help="also write the benchmark rows (or --eval results) to this JSON file")
    parser.add_argument("--eval", action="store_true",
                        help="the evaluation suite on the test split (python -m vita_mini.eval)")
    parser.add_argument("--modes", nargs="+", default=list(MODE_NAMES), help="modes of --eval")
    parser.add_argument("--figures", help="--eval also draws its figures into this folder")
    parser.add_argument("--stage", type=int, choices=[1, 2, 3, 4],
                        help="whose LLM to use (default: 1 for asr, text and vanilla tts; 3 for "
                             "tts with MCTP; 4 for chat)")
    parser.add_argument("--mode", default=None,
                        help="vanilla, balance, boost, turbo, or a schedule like 1,10,4,10 (tasks tts, "
                             "chat; default: a model with MCTP modules runs the mode of its training "
                             "interleave, boost or balance; stage 1 runs vanilla)")
    parser.add_argument("--verify", action="store_true",
                        help="tasks tts, chat: the MCTP tokens are drafts the LLM checks (greedy; the "
                             "output is Vanilla's, faster when the drafts are right)")
    parser.add_argument("--min-confidence", type=threshold_arg, default=0.0,
                        help="tasks tts, chat: adaptive depth: a module writes only when its top "
                             "probability reaches this, else the LLM takes the turn (0 = never); "
                             "text,audio (e.g. 0.9,0.5) sets one per kind of token")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (tasks tts, chat)")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--text", help="text to speak, read or answer (tasks speak, tts, text, chat)")
    parser.add_argument("--audio", help="input WAV file (tasks tokenize, resynth, judge, asr, chat)")
    parser.add_argument("--out", help="output WAV file (tasks speak, resynth, tts; optional for chat)")
    parser.add_argument("--speaker", type=int, default=None,
                        help=f"voice 0..{len(SPEAKERS) - 1} (tasks speak and resynth; default 0)")
    parser.add_argument("--voice-wav", help="speak in the voice of this recording (tasks resynth, tts, "
                                            "chat; a run trained with codec.voice=reference)")
    parser.add_argument("--preset", default="toy", choices=list(PRESETS))
    parser.add_argument("--run-dir", default=None, help="where the checkpoints are (default: runs/<preset>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("overrides", nargs="*", metavar="section.field=value",
                        help="config overrides the run was trained with, e.g. world.n_people=32")
    return parser.parse_intermixed_args(argv)


def require(value, flag: str, task: str):
    if not value:
        raise VitaError(f"--task {task} needs {flag}")
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    split_modes(args)
    cfg = get_config(args.preset, args.overrides)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.eval:
        evaluate_and_report(cfg, pick_device(args.device), args.modes, args.json, args.figures)
        return 0
    if args.benchmark:
        if args.tokens < 11:
            raise VitaError(f"--tokens {args.tokens}: the benchmark needs at least 11 (one audio chunk)")
        run_benchmark(vocab_size(cfg.codec.codebook_size), args.tokens, json_path=args.json,
                      dtype=getattr(torch, args.dtype), device=pick_device(args.device))
        return 0
    if not args.task:
        raise VitaError(f"give --task ({', '.join(TASKS)}), --eval or --benchmark")
    if args.task not in TASKS:
        raise VitaError(f"unknown task {args.task!r}; choose one of {', '.join(TASKS)}")
    if args.voice_wav and args.task not in SPEAKING_TASKS:
        raise VitaError(f"--voice-wav is for the tasks that speak ({', '.join(SPEAKING_TASKS)}), not {args.task}")
    if args.task in LLM_TASKS:
        return run_llm_task(args, cfg)
    if args.task == "speak":
        text = require(args.text, "--text", args.task).strip().lower()
        out = require(args.out, "--out", args.task)
        bad = sorted(set(text) - set(CHARSET))
        if not text or bad:
            raise VitaError(f"--text: the toy voice speaks only lowercase letters and spaces; "
                            f"cannot speak {bad or 'an empty text'}")
        speaker = args.speaker or 0
        if not 0 <= speaker < len(SPEAKERS):
            raise VitaError(f"--speaker {speaker}: choose 0..{len(SPEAKERS) - 1}")
        write_wav(out, synthesize(" ".join(text.split()), speaker).wav)
        print(f"wrote {out}")
        return 0

    wav = read_input_audio(require(args.audio, "--audio", args.task), cfg)
    out = require(args.out, "--out", args.task) if args.task == "resynth" else None
    voice = pick_voice(args, cfg, args.speaker or 0, own=(args.audio, wav)) if args.task == "resynth" else None
    if args.task == "resynth" and cfg.codec.voice == "id" and not 0 <= voice < cfg.codec.n_voices:
        raise VitaError(f"--speaker {voice}: the decoder knows voices 0..{cfg.codec.n_voices - 1}")
    device = pick_device(args.device)
    codec, judge = load_audio_models(cfg, device)
    with torch.no_grad():
        if args.task == "tokenize":
            codes = codec.encode(wav.to(device)).tolist()
            print(f"{len(codes)} tokens at {codec.token_hz:g} Hz:")
            print(" ".join(map(str, codes)))
        elif args.task == "resynth":
            write_wav(out, codec.decode(codec.encode(wav.to(device)), decoder_voice(codec, voice, cfg, device)))
            print(f"wrote {out}")
        else:
            print(judge.transcribe(wav.to(device)))
    return 0


def read_input_audio(path: str, cfg):
    """The WAV at ``path`` at the codec's rate; at least one audio token long (else one line)."""
    return load_audio(path, cfg.audio.sample_rate, min_samples=cfg.audio.hop_length * cfg.codec.downsample)


def pick_voice(args, cfg, voice_id: int, own: tuple[str, torch.Tensor] | None = None) -> int | torch.Tensor | None:
    """The voice a speaking task decodes in, checked before any model is loaded. codec.voice=id:
    ``voice_id`` (--voice-wav refused); codec.voice=reference: the waveform of --voice-wav, else
    ``own`` (resynth: the input's (path, waveform)), else None: the reports' voice (runs.py)."""
    if cfg.codec.voice == "id":
        if args.voice_wav:
            raise VitaError(f"--voice-wav {args.voice_wav}: this run's decoder knows only voice ids "
                            f"(codec.voice=id); a run trained with codec.voice=reference takes a recording")
        return voice_id
    if args.speaker is not None:
        raise VitaError(f"--speaker {args.speaker}: this run's decoder takes its voice from a recording "
                        f"(codec.voice=reference), not a voice id; give --voice-wav FILE")
    if args.voice_wav:
        return voice_reference(args.voice_wav, load_audio(args.voice_wav, cfg.audio.sample_rate), cfg)
    if own is None:
        return None
    return voice_reference(*own, cfg, note=" (without --voice-wav, resynth keeps its input's voice)")


def voice_reference(path: str, wav: torch.Tensor, cfg, note: str = "") -> torch.Tensor:
    """``wav``, read from ``path``, if it can give a voice: at least MIN_REFERENCE_SECONDS long and
    not silent in the first codec.reference_seconds that the speaker encoder hears (else one line)."""
    rate = cfg.audio.sample_rate
    if wav.numel() < MIN_REFERENCE_SECONDS * rate:
        raise VitaError(f"audio file {path!r} is {wav.numel() / rate:.2f} s long; a voice reference "
                        f"needs at least {MIN_REFERENCE_SECONDS:g} s{note}")
    if wav[:int(cfg.codec.reference_seconds * rate)].abs().max().item() < SILENCE_PEAK:
        raise VitaError(f"audio file {path!r} is silent in its first {cfg.codec.reference_seconds:g} s, "
                        f"the part a voice reference is taken from (peak below {SILENCE_PEAK:g})")
    return wav


def decoder_voice(codec, voice: int | torch.Tensor | None, cfg, device) -> int | torch.Tensor:
    """What ``codec.decode`` is told: the voice id, or the speaker embedding [1, C] of the reference
    (None: the reports' voice), computed once here rather than again for every chunk."""
    if voice is None:
        return report_voice(cfg, codec)
    if not torch.is_tensor(voice):
        return voice
    with torch.no_grad():
        return codec.speaker_embedding(voice.to(device))


def record(tokens, into: list):
    """Pass tokens through, keeping a copy in ``into``."""
    for token in tokens:
        into.append(token)
        yield token


def pick_stage(args, schedule) -> int:
    """Whose LLM runs the task: --stage, or the task's own stage; a stage that cannot do the
    task is refused with the command that trains one that can."""
    uses_mctp = max(schedule[1::2]) > 0
    default = 4 if args.task == "chat" else 3 if uses_mctp else 1
    stage = args.stage or default
    if args.task == "chat" and stage != 4:
        raise VitaError(f"--task chat needs the spoken-QA model of stage 4, not stage {stage}; "
                        f"train it: python train.py --stage 4 --preset {args.preset}")
    if uses_mctp and stage == 1:
        raise VitaError(f"--mode {args.mode} needs MCTP modules, which stage 1 does not have; use "
                        f"--stage 3 or 4 (python train.py --stage 3 --preset {args.preset}) or --mode vanilla")
    return stage


def clean_text(text: str | None, task: str) -> str:
    if text is None:
        raise VitaError(f"--task {task} needs --text")
    text = " ".join(text.split())
    if not text:
        raise VitaError("--text is empty")
    return text


def run_llm_task(args, cfg) -> int:
    """asr, text, tts and chat: check every input first, then load the models and run."""
    schedule = parse_schedule(args.mode or "vanilla")
    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed)
    stage = pick_stage(args, schedule)
    wav = text = None
    if args.task == "chat" and args.audio and args.text is not None:
        raise VitaError("--task chat takes --audio or --text, not both")
    if args.task == "asr" or (args.task == "chat" and args.text is None):
        wav = read_input_audio(require(args.audio, "--audio" if args.task == "asr" else "--audio or --text",
                                       args.task), cfg)
    else:
        text = clean_text(args.text, args.task)
        if args.task == "chat":  # as the toy world asks: lowercase, no question mark
            text = clean_text(text.lower().rstrip("?.!"), args.task)
    out = require(args.out, "--out", args.task) if args.task == "tts" else args.out
    voice = pick_voice(args, cfg, cfg.synth.assistant_voice) if args.task in SPEAKING_TASKS else None
    device = pick_device(args.device)
    codec, _ = load_audio_models(cfg, device)
    model, mctp = load_speech_lm(cfg, stage, device)
    if args.task == "asr":
        with torch.no_grad():
            print(llm_transcribe(model, codec.encode(wav.to(device)).tolist()))
        return 0
    if args.task == "text":
        print(answer_text(model, text))
        return 0
    if args.task == "tts":
        prompt = prompt_tokens(TTS_INSTRUCTION, text_ids(text))
    elif wav is not None:
        with torch.no_grad():
            prompt = prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, user_audio(codec.encode(wav.to(device)).tolist()))
    else:
        prompt = prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, text_ids(text))
    if mctp is not None:  # the mode that matches the model's training interleave, unless told
        interleave = trained_interleave(cfg, stage)
        if args.mode is None:
            mode = own_mode(interleave)
            schedule = parse_schedule(mode)
            print(f"mode {mode} {describe(schedule)}: this model's own, its training interleave "
                  f"(--mode picks another)")
        elif note := step_note(args.mode, interleave):
            print(note)
    voice = decoder_voice(codec, voice, cfg, device)
    engine = VerifiedEngine(model, mctp) if args.verify else Engine(model, mctp)
    stream_answer(engine, prompt, schedule, sampling, codec, voice, out, args.min_confidence)
    return 0


def stream_answer(engine: Engine, prompt: list[int], schedule, sampling: Sampling, codec,
                  voice: int | torch.Tensor, out: str | None,
                  min_confidence: float | tuple[float, float] = 0.0) -> None:
    """Generate by ``schedule``: print the text as it is written, decode and write the audio chunk
    by chunk, report the speed; the WAV (if ``out``) appears only once the answer is complete."""
    start = time.perf_counter()
    tokens = []  # every generated token, also while streaming
    stream = stream_events(record(engine.generate(prompt, engine.llm.cfg.max_seq_len, schedule, sampling,
                                                  min_confidence=min_confidence), tokens), codec, voice, start)
    chunks = []
    with WavWriter(out) if out else contextlib.nullcontext() as wav_file:  # renamed onto out at the end
        print("text: ", end="", flush=True)
        for event in stream:  # text as it is written; audio decoded and written chunk by chunk
            if isinstance(event, TextPiece):
                print(event.text, end="", flush=True)
            elif event.wav is not None:  # (a BOA EOA with no codes in between is no sound)
                chunks.append(event)
                if wav_file:
                    wav_file.write(event.wav)
        seconds = time.perf_counter() - start
        print()
        first = f"the first after {chunks[0].seconds * 1000:.0f} ms" if chunks else "no audio"
        print(f"{len(tokens)} tokens in {seconds:.2f} s ({len(tokens) / seconds:.0f} tokens/s, mode "
              f"{describe(schedule)}); {len(chunks)} audio chunks, {first}")
        if isinstance(engine, VerifiedEngine):
            drafted, accepted = (sum(x) for x in zip(*engine.acceptance))
            print(f"verified: {accepted} of {drafted} MCTP drafts accepted, {len(engine.acceptance)} LLM "
                  f"forwards ({len(tokens) / max(1, len(engine.acceptance)):.2f} tokens each)")
        if out and not chunks:
            raise VitaError("the model produced no audio tokens; no file written")
    if out:
        print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
