"""Optional real-voice backend: espeak-ng, when it is installed (``synth.backend=espeak``).

The built-in numpy synthesizer (synth.py) is deterministic, needs nothing, and knows exactly when
each character is spoken. espeak-ng speaks real English phonemes instead, which makes the toy
world sound like language; install it with ``apt-get install espeak-ng`` (or your OS's package)
and train with ``python train.py --stage 0 synth.backend=espeak``. Each vita-mini speaker maps
to an espeak voice variant with its own pitch and speed. espeak gives no character timing, so
``text_stays_ahead`` cannot be checked for this backend; its default speeds (140-175 words per
minute) keep roughly 70-90 ms per character.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np
import torch
import torchaudio

from vita_mini.audio.wav import read_wav
from vita_mini.errors import VitaError

# (espeak voice, pitch 0-99, words per minute) for speakers 0..5
ESPEAK_VOICES = [("en-us+f3", 60, 150), ("en-us+m3", 30, 140), ("en+m1", 45, 160),
                 ("en-us+f4", 75, 165), ("en+m7", 35, 155), ("en+f2", 55, 145)]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize_espeak(text: str, speaker: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """Speak ``text`` with espeak-ng; returns float32 mono audio at ``sample_rate``."""
    if not espeak_available():
        raise VitaError("synth.backend=espeak needs espeak-ng on PATH (apt-get install espeak-ng)")
    voice, pitch, speed = ESPEAK_VOICES[speaker % len(ESPEAK_VOICES)]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", path, text],
                       check=True, capture_output=True)
        audio, rate = read_wav(path)
    wav = torch.from_numpy(audio.mean(axis=0))
    if rate != sample_rate:
        wav = torchaudio.functional.resample(wav, rate, sample_rate)
    wav = wav / wav.abs().max().clamp_min(1e-4) * 0.5
    return wav.numpy().astype(np.float32)
