"""Use what vita-mini has trained so far.

    python generate.py --task speak --text "ana lives in rome" --out ana.wav   # the synthesizer
    python generate.py --task tokenize --audio ana.wav                          # wav -> audio tokens
    python generate.py --task resynth --audio ana.wav --out ana_resynth.wav     # tokens -> wav
    python generate.py --task judge --audio ana.wav                             # the judge ASR
    python generate.py --task asr --audio ana.wav                  # the LLM transcribes (stage 1)
    python generate.py --task tts --text "bob has a cat" --out bob.wav   # the LLM speaks (stage 1)
    python generate.py --task text --text "where does ana live"          # the LLM answers (stage 1)

``tokenize``, ``resynth`` and ``judge`` need stage 0 (python train.py --stage 0); ``asr``,
``tts`` and ``text`` need stage 1 (python train.py --stage 1). Decoding is greedy.
"""

from __future__ import annotations

import argparse

import torch

from vita_mini.audio.wav import load_audio, write_wav
from vita_mini.cli import run_main
from vita_mini.config import PRESETS, get_config
from vita_mini.data.synth import SPEAKERS, synthesize
from vita_mini.data.world import CHARSET
from vita_mini.errors import VitaError
from vita_mini.train.loop import pick_device
from vita_mini.eval.tasks import answer_text, speak, transcribe
from vita_mini.train.stage0 import load_stage0
from vita_mini.train.stage1 import load_stage1
from vita_mini.vocab import decode_audio, decode_text

TASKS = ["speak", "tokenize", "resynth", "judge", "asr", "tts", "text"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--text", help="text to speak (task speak)")
    parser.add_argument("--audio", help="input WAV file (tasks tokenize, resynth, judge)")
    parser.add_argument("--out", help="output WAV file (tasks speak, resynth)")
    parser.add_argument("--speaker", type=int, default=0, help=f"voice 0..{len(SPEAKERS) - 1} (task speak)")
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
    device = pick_device(args.device)
    codec, judge = load_stage0(cfg, device)
    with torch.no_grad():
        if args.task == "tokenize":
            codes = codec.encode(wav.to(device)).tolist()
            print(f"{len(codes)} tokens at {codec.token_hz:g} Hz:")
            print(" ".join(map(str, codes)))
        elif args.task == "resynth":
            write_wav(out, codec.decode(codec.encode(wav.to(device))))
            print(f"wrote {out}")
        elif args.task == "asr":
            model = load_stage1(cfg, device)
            print(transcribe(model, codec.encode(wav.to(device)).tolist()))
        else:
            print(judge.transcribe(wav.to(device)))
    return 0


def run_llm_text_task(args, cfg) -> int:
    text = " ".join(require(args.text, "--text", args.task).split())
    if not text:
        raise VitaError("--text is empty")
    out = require(args.out, "--out", args.task) if args.task == "tts" else None
    device = pick_device(args.device)
    codec, _ = load_stage0(cfg, device)
    model = load_stage1(cfg, device)
    if args.task == "text":
        print(answer_text(model, text))
        return 0
    answer = speak(model, text)
    codes = decode_audio(answer)
    print(f"text: {decode_text(answer)!r}; {len(codes)} audio tokens")
    if not codes:
        raise VitaError("the model produced no audio tokens; no file written")
    write_wav(out, codec.decode(torch.tensor(codes)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
