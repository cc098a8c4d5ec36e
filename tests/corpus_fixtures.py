"""Small speech corpora in the exact layouts of the published ones, for tests/test_real_corpora.py.

Every recording is the project's own synthesizer (vita_mini.data.synth, 16 kHz) speaking a
sentence, resampled and written as the corpus publishes it:

    LibriSpeech  LibriSpeech/<subset>/<speaker>/<chapter>/<s>-<c>-<nnnn>.flac (16 kHz FLAC) and
                 <s>-<c>.trans.txt, transcripts in capitals
    LibriTTS     LibriTTS/<subset>/<speaker>/<chapter>/<s>_<c>_<p>_<n>.wav (24 kHz) with
                 .normalized.txt and .original.txt
    LJSpeech     LJSpeech-1.1/wavs/LJ001-<nnnn>.wav (22050 Hz) and a 3-column metadata.csv
    folder       alice/*.wav, bob/*.wav and top-level WAVs (16 kHz) with a 2-column metadata.csv

Each builder writes the 12 ``SENTENCES`` under ``root``. FLAC needs soundfile (the dev extra).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from vita_mini.audio.audio_file import resampler
from vita_mini.audio.wav import write_wav
from vita_mini.data.synth import SAMPLE_RATE, synthesize

# (as a corpus publishes it, as the synthesizer speaks it: what normalisation must give back)
SENTENCES = [
    ("Bob's cat is old.", "bobs cat is old"),
    ("Anna has a red car!", "anna has a red car"),
    ("It's a well-known café.", "its a well known cafe"),
    ("Carl, come to Cairo?", "carl come to cairo"),
    ("The dog eats rice", "the dog eats rice"),
    ("Hans likes green tea.", "hans likes green tea"),
    ("We sing; they dance.", "we sing they dance"),
    ("Naïve owls hoot at night", "naive owls hoot at night"),
    ("Lisa reads a big book.", "lisa reads a big book"),
    ("Tom — the cook — bakes", "tom the cook bakes"),
    ("A fox ran past Ôlaf", "a fox ran past olaf"),
    ("Ed sells blue pens.", "ed sells blue pens"),
]


def speech(text: str, speaker: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """``text`` spoken by the synthesizer's voice ``speaker``: float32 [N] at ``rate`` Hz."""
    wav = synthesize(text, speaker).wav  # [N] at 16 kHz
    if rate != SAMPLE_RATE:
        with torch.no_grad():
            wav = resampler(SAMPLE_RATE, rate)(torch.from_numpy(wav)).numpy()
    return wav.astype(np.float32)


def _write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def make_librispeech(root: str) -> None:
    """Two speakers (19 and 103), one chapter each, FLAC and .trans.txt in capitals."""
    import soundfile

    for k, (speaker, chapter) in enumerate([("19", "198"), ("103", "1240")]):
        folder = os.path.join(root, "LibriSpeech", "train-clean-100", speaker, chapter)
        os.makedirs(folder, exist_ok=True)
        lines = []
        for n, (published, said) in enumerate(SENTENCES[k::2]):
            uid = f"{speaker}-{chapter}-{n:04d}"
            soundfile.write(os.path.join(folder, f"{uid}.flac"), speech(said, k), SAMPLE_RATE,
                            format="FLAC", subtype="PCM_16")
            lines.append(f"{uid} {published.upper()}\n")
        _write_text(os.path.join(folder, f"{speaker}-{chapter}.trans.txt"), "".join(lines))


def make_libritts(root: str) -> None:
    """Two speakers (84 and 1034), 24 kHz WAV with .normalized.txt and .original.txt."""
    for k, (speaker, chapter) in enumerate([("84", "121123"), ("1034", "121119")]):
        folder = os.path.join(root, "LibriTTS", "train-clean-100", speaker, chapter)
        for n, (published, said) in enumerate(SENTENCES[k::2]):
            uid = f"{speaker}_{chapter}_{n:06d}_{n:06d}"
            write_wav(os.path.join(folder, f"{uid}.wav"), speech(said, k + 1, 24000), 24000)
            _write_text(os.path.join(folder, f"{uid}.normalized.txt"), published)
            _write_text(os.path.join(folder, f"{uid}.original.txt"), published.replace("-", " - "))


def make_ljspeech(root: str) -> None:
    """One voice, 22050 Hz WAVs, metadata.csv of id|transcript|normalized transcript."""
    folder = os.path.join(root, "LJSpeech-1.1")
    lines = []
    for n, (published, said) in enumerate(SENTENCES, 1):
        uid = f"LJ001-{n:04d}"
        write_wav(os.path.join(folder, "wavs", f"{uid}.wav"), speech(said, 2, 22050), 22050)
        raw = published.replace("a ", "1 ", 1) if n % 3 == 0 else published  # digits in the raw column
        lines.append(f"{uid}|{raw}|{published}\n")
    _write_text(os.path.join(folder, "metadata.csv"), "".join(lines))


FOLDER_FILES = ["alice/001", "alice/002.wav", "bob/001.wav", "bob/002", "intro.wav", "outro"]


def make_folder(root: str) -> None:
    """Your own recordings: alice/ and bob/ and two files at the top (the folder's own speaker),
    16 kHz WAV, metadata.csv of file|transcript (some files named without .wav)."""
    lines = []
    for n, (published, said) in enumerate(SENTENCES):
        name = FOLDER_FILES[n] if n < len(FOLDER_FILES) else f"take{n:02d}"
        path = os.path.join(root, name if name.endswith(".wav") else f"{name}.wav")
        write_wav(path, speech(said, n % 3))
        lines.append(f"{name}|{published}\n")
    _write_text(os.path.join(root, "metadata.csv"), "".join(lines))
