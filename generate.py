"""Use what vita-mini has trained so far.

    python generate.py --task speak --text "ana lives in rome" --out ana.wav   # the synthesizer
    python generate.py --task tokenize --audio ana.wav                          # wav -> audio tokens
    python generate.py --task resynth --audio ana.wav --out ana_resynth.wav     # tokens -> wav
    python generate.py --task judge --audio ana.wav                             # the judge ASR
    python generate.py --task asr --audio ana.wav                  # the LLM transcribes (stage 1)
    python generate.py --task tts --text "bob has a cat" --out bob.wav   # the LLM speaks (stage 1)
    python generate.py --task text --text "where does ana live"          # the LLM answers (stage 1)
    python generate.py --task tts --text "bob has a cat" --out bob.wav --mode turbo   # MCTP (stage 3)
    python generate.py --benchmark                 # speed of the four modes, random weights
    python generate.py --benchmark --tokens 256 --json speed.json

``tokenize``, ``resynth`` and ``judge`` need stage 0 (python train.py --stage 0); ``asr``,
``tts`` and ``text`` need stage 1 (python train.py --stage 1); ``tts`` in any mode but vanilla
needs the MCTP modules of stage 3. Decoding is greedy unless --temperature is set.
"""

from __future__ import annotations

import argparse
import time

import torch

from vita_mini.audio.wav import load_audio, write_wav
from vita_mini.cli import run_main
from vita_mini.config import PRESETS, get_config
from vita_mini.data.synth import SPEAKERS, synthesize
from vita_mini.data.world import CHARSET
from vita_mini.errors import VitaError
from vita_mini.train.loop import pick_device
from vita_mini.eval.tasks import answer_text, transcribe
from vita_mini.infer.benchmark import run_benchmark
from vita_mini.infer.engine import Engine
from vita_mini.infer.sampling import Sampling
from vita_mini.infer.schedule import describe, parse_schedule
from vita_mini.infer.stream import TextPiece, stream_events
from vita_mini.train.mctp_stages import load_speech_lm
from vita_mini.train.stage0 import load_stage0
from vita_mini.train.stage1 import load_stage1
from vita_mini.vocab import TTS_INSTRUCTION, prompt_tokens, text_ids, vocab_size

TASKS = ["speak", "tokenize", "resynth", "judge", "asr", "tts", "text"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS)
    parser.add_argument("--benchmark", action="store_true",
                        help="time Vanilla/Balance/Boost/Turbo on random weights at three sizes")
    parser.add_argument("--tokens", type=int, default=1024, help="new tokens per benchmark run")
    parser.add_argument("--json", help="also write the benchmark rows to this JSON file")
    parser.add_argument("--mode", default="vanilla",
                        help="vanilla, balance, boost, turbo, or a schedule like 1,10,4,10 (task tts)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (task tts)")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--text", help="text to speak (task speak)")
    parser.add_argument("--audio", help="input WAV file (tasks tokenize, resynth, judge)")
    parser.add_argument("--out", help="output WAV file (tasks speak, resynth)")
    parser.add_argument("--speaker", type=int, default=0, help=f"voice 0..{len(SPEAKERS) - 1} (tasks speak and resynth)")
    parser.add_argument("--preset", default="toy", choices=list(PRESETS))
    parser.add_argument("--run-dir", default=None, help="where the checkpoints are (default: runs/<preset>)")
    parser.add_argument("--device", default="auto")
    return parser.parse_args(argv)


def require(value, flag: str, task: str):
    if not value:
        raise VitaError(f"--task {task} needs {flag}")
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = get_config(args.preset)
    if args.benchmark:
        if args.tokens < 11:
            raise VitaError(f"--tokens {args.tokens}: the benchmark needs at least 11 (one audio chunk)")
        run_benchmark(vocab_size(cfg.codec.codebook_size), args.tokens, json_path=args.json)
        return 0
    if not args.task:
        raise VitaError(f"give --task ({', '.join(TASKS)}) or --benchmark")
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.task in ("tts", "text"):
        return run_llm_text_task(args, cfg)
    if args.task == "speak":
        text = require(args.text, "--text", args.task).strip().lower()
        out = require(args.out, "--out", args.task)
        bad = sorted(set(text) - set(CHARSET))
        if not text or bad:
            raise VitaError(f"--text: the toy voice speaks only lowercase letters and spaces; "
                            f"cannot speak {bad or 'an empty text'}")
        if not 0 <= args.speaker < len(SPEAKERS):
            raise VitaError(f"--speaker {args.speaker}: choose 0..{len(SPEAKERS) - 1}")
        write_wav(out, synthesize(" ".join(text.split()), args.speaker).wav)
        print(f"wrote {out}")
        return 0

    wav = load_audio(require(args.audio, "--audio", args.task), cfg.audio.sample_rate)
    out = require(args.out, "--out", args.task) if args.task == "resynth" else None
    if args.task == "resynth" and not 0 <= args.speaker < cfg.codec.n_voices:
        raise VitaError(f"--speaker {args.speaker}: the decoder knows voices 0..{cfg.codec.n_voices - 1}")
    device = pick_device(args.device)
    codec, judge = load_stage0(cfg, device)
    with torch.no_grad():
        if args.task == "tokenize":
            codes = codec.encode(wav.to(device)).tolist()
            print(f"{len(codes)} tokens at {codec.token_hz:g} Hz:")
            print(" ".join(map(str, codes)))
        elif args.task == "resynth":
            write_wav(out, codec.decode(codec.encode(wav.to(device)), args.speaker))
            print(f"wrote {out}")
        elif args.task == "asr":
            model = load_stage1(cfg, device)
            print(transcribe(model, codec.encode(wav.to(device)).tolist()))
        else:
            print(judge.transcribe(wav.to(device)))
    return 0


def record(tokens, into: list):
    """Pass tokens through, keeping a copy in ``into``."""
    for token in tokens:
        into.append(token)
        yield token


def run_llm_text_task(args, cfg) -> int:
    text = " ".join(require(args.text, "--text", args.task).split())
    if not text:
        raise VitaError("--text is empty")
    out = require(args.out, "--out", args.task) if args.task == "tts" else None
    device = pick_device(args.device)
    schedule = parse_schedule(args.mode)
    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed)
    codec, _ = load_stage0(cfg, device)
    if args.task == "text":
        print(answer_text(load_stage1(cfg, device), text))
        return 0
    if max(schedule[1::2]) > 0:
        model, mctp = load_speech_lm(cfg, "stage3", device)
    else:
        model, mctp = load_stage1(cfg, device), None
    prompt = prompt_tokens(TTS_INSTRUCTION, text_ids(text))
    start = time.perf_counter()
    tokens = []  # every generated token, also while streaming
    stream = stream_events(record(Engine(model, mctp).generate(prompt, model.cfg.max_seq_len, schedule,
                                                              sampling), tokens),
                           codec, cfg.synth.assistant_voice, start)
    chunks = []
    print("text: ", end="", flush=True)
    for event in stream:  # text as it is written; audio decoded chunk by chunk
        if isinstance(event, TextPiece):
            print(event.text, end="", flush=True)
        else:
            chunks.append(event)
    seconds = time.perf_counter() - start
    print()
    if not chunks:
        raise VitaError("the model produced no audio tokens; no file written")
    print(f"{len(tokens)} tokens in {seconds:.2f} s ({len(tokens) / seconds:.0f} tokens/s, mode "
          f"{describe(schedule)}); {len(chunks)} audio chunks, the first after "
          f"{chunks[0].seconds * 1000:.0f} ms")
    write_wav(out, torch.cat([c.wav for c in chunks]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
