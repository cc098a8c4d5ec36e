"""A deterministic numpy speech synthesizer for the toy world.

VITA-Audio trains on thousands of hours of real speech. vita-mini has to run without any download,
so the project makes its own speech: every character of the toy world's alphabet
(`` abcdefghijklmnopqrstuvwxyz``) is a small "phone" - a vowel-like sound with formants, a hiss, a
burst or a pause - spoken one after another in a voice that has its own pitch, speaking rate and
timbre. The result is not English, but it has what the rest of the pipeline needs from speech:

* content that a recognizer must learn to read (each character has its own spectral shape,
  neighbouring characters blend into each other),
* speaker variation the tokenizer has to see through (pitch 100-240 Hz, rate, vocal-tract
  length, spectral tilt, breathiness),
* small random variation (durations, pitch jitter, loudness) and background noise,
* a known, monotonic text-audio alignment (``Utterance.boundaries``), which is how we choose the
  speaking rate: text must stay ahead of its audio under the [1, 10, 4, 10] interleave
  (see ``text_stays_ahead``).

How it works, per utterance (all vectorized numpy, far faster than real time on one core):
1. each character gets a duration; their sum plus a lead and a tail silence is the length;
2. per 5 ms frame we look up the current character's formants, voicing and noise band, and smooth
   the tracks so characters glide into each other (coarticulation);
3. the voiced part is additive synthesis: harmonics of a wavering f0, each weighted by the formant
   envelope at its frequency; the noise part is white noise shaped frame by frame in the STFT
   domain; the two are mixed, normalized, and background noise is added.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from vita_mini.vocab import CHARSET

SAMPLE_RATE = 16000
FRAME = 80  # 5 ms control frames at 16 kHz


@dataclass(frozen=True)
class Phone:
    """How one character sounds: formants of its voiced part and the band of its noise part."""

    formants: tuple = (500.0, 1500.0, 2500.0)  # F1, F2, F3 in Hz
    voiced: float = 1.0  # amplitude of the harmonic (voiced) part
    noise: float = 0.0  # amplitude of the noise part
    noise_hz: float = 4000.0  # centre of the noise band
    noise_bw: float = 1500.0  # width of the noise band
    closure: float = 0.0  # share of the duration that is silent before a burst (stops)
    length: float = 1.0  # duration relative to the speaker's character duration


_V, _C = 1.0, 0.55  # loudness of vowels and of voiced consonants
PHONES = {
    " ": Phone(voiced=0.0, noise=0.0),
    "a": Phone((750, 1250, 2600), _V),
    "e": Phone((450, 1950, 2650), _V),
    "i": Phone((300, 2350, 3050), _V),
    "o": Phone((520, 880, 2500), _V),
    "u": Phone((320, 720, 2300), _V),
    "y": Phone((360, 1650, 2150), _V),
    "w": Phone((300, 600, 2200), _C),
    "l": Phone((400, 1100, 2800), _C),
    "r": Phone((480, 1350, 1650), _C),
    "m": Phone((260, 1000, 2300), 0.45),
    "n": Phone((260, 1700, 2700), 0.45),
    "j": Phone((280, 2150, 2950), 0.5, noise=0.3, noise_hz=2900, noise_bw=900),
    "b": Phone((300, 800, 2200), 0.35, noise=0.3, noise_hz=700, noise_bw=500, closure=0.5),
    "d": Phone((300, 1700, 2600), 0.35, noise=0.3, noise_hz=3200, noise_bw=900, closure=0.5),
    "g": Phone((300, 2000, 2400), 0.35, noise=0.3, noise_hz=1900, noise_bw=600, closure=0.5),
    "p": Phone(voiced=0.0, noise=0.6, noise_hz=1000, noise_bw=700, closure=0.5),
    "t": Phone(voiced=0.0, noise=0.6, noise_hz=4200, noise_bw=1200, closure=0.5),
    "k": Phone(voiced=0.0, noise=0.6, noise_hz=2200, noise_bw=700, closure=0.5),
    "q": Phone((320, 720, 2300), 0.25, noise=0.5, noise_hz=1500, noise_bw=500, closure=0.35),
    "c": Phone(voiced=0.0, noise=0.55, noise_hz=2800, noise_bw=600),
    "s": Phone(voiced=0.0, noise=0.6, noise_hz=6200, noise_bw=1400),
    "z": Phone((300, 1500, 2500), 0.4, noise=0.45, noise_hz=5600, noise_bw=1400),
    "f": Phone(voiced=0.0, noise=0.35, noise_hz=4500, noise_bw=4000),
    "v": Phone((300, 1100, 2400), 0.4, noise=0.3, noise_hz=4000, noise_bw=3500),
    "h": Phone(voiced=0.0, noise=0.4, noise_hz=1500, noise_bw=1200),
    "x": Phone(voiced=0.0, noise=0.55, noise_hz=3600, noise_bw=800, closure=0.3),
}
assert set(PHONES) == set(CHARSET), "every character of the world must have a phone"


@dataclass(frozen=True)
class Speaker:
    """A voice: pitch, speaking rate, vocal-tract length (formant scale), tilt, breathiness."""

    name: str
    f0: float  # mean pitch in Hz
    rate: float  # characters per second relative to the base (1.0 = base duration)
    formant_scale: float  # >1: shorter vocal tract, higher formants
    tilt: float  # harmonic amplitude falls as h ** -tilt
    breath: float  # noise mixed into voiced sounds


SPEAKERS = [
    Speaker("alto", f0=190.0, rate=1.00, formant_scale=1.08, tilt=0.9, breath=0.05),
    Speaker("bass", f0=100.0, rate=0.92, formant_scale=0.90, tilt=0.7, breath=0.02),
    Speaker("tenor", f0=135.0, rate=1.08, formant_scale=0.97, tilt=1.1, breath=0.08),
    Speaker("soprano", f0=235.0, rate=1.12, formant_scale=1.14, tilt=0.8, breath=0.04),
    Speaker("baritone", f0=115.0, rate=1.04, formant_scale=0.94, tilt=1.3, breath=0.10),
    Speaker("mezzo", f0=210.0, rate=0.96, formant_scale=1.04, tilt=1.0, breath=0.12),
]


@dataclass
class Utterance:
    """A synthesized utterance: 16 kHz float32 audio and where each character starts and ends."""

    text: str
    speaker: int
    wav: np.ndarray  # [N] float32 in [-1, 1]
    boundaries: np.ndarray  # [len(text) + 1] sample index where each character starts (+ end)


def utterance_seed(text: str, speaker: int) -> int:
    """A stable seed for (text, speaker): the same inputs always sound the same. (The "0" is
    kept from an older version that numbered takes, so every corpus sounds as it did.)"""
    return zlib.crc32(f"{speaker}|0|{text}".encode()) & 0x7FFFFFFF


def synthesize(text: str, speaker: int = 0, seed: int | None = None, char_seconds: float = 0.11,
               lead_seconds: float = 0.25, tail_seconds: float = 0.15,
               snr_db: float = 35.0) -> Utterance:
    """Speak ``text`` (characters of CHARSET) in voice ``SPEAKERS[speaker]``, deterministically."""
    bad = sorted(set(text) - set(CHARSET))
    if bad or not text:
        raise ValueError(f"cannot speak {text!r}: characters {bad} are not in the toy alphabet")
    voice = SPEAKERS[speaker % len(SPEAKERS)]
    rng = np.random.default_rng(utterance_seed(text, speaker) if seed is None else seed)
    phones = [PHONES[ch] for ch in text]

    # 1. durations -> character boundaries in samples
    base = char_seconds / voice.rate
    lengths = np.array([p.length for p in phones]) * base * rng.uniform(0.88, 1.12, len(text))
    starts = lead_seconds + np.concatenate([[0.0], np.cumsum(lengths)])
    boundaries = np.round(starts * SAMPLE_RATE).astype(np.int64)  # [L + 1]
    n_samples = int(boundaries[-1] + tail_seconds * SAMPLE_RATE)
    n_frames = n_samples // FRAME + 2

    # 2. per-frame control tracks: which character is sounding, and its parameters
    frame_pos = np.arange(n_frames) * FRAME  # sample index of each frame
    char_of_frame = np.searchsorted(boundaries, frame_pos, side="right") - 1  # -1 / L: silence
    inside = (char_of_frame >= 0) & (char_of_frame < len(text))
    idx = np.clip(char_of_frame, 0, len(text) - 1)
    table = np.array([[*p.formants, p.voiced, p.noise, p.noise_hz, p.noise_bw, p.closure]
                      for p in phones], dtype=np.float64)  # [L, 8]
    tracks = table[idx]  # [F, 8]
    tracks[~inside, 3:5] = 0.0  # no sound outside the text
    # stops: silent closure, then the burst (noise) and any voicing
    progress = (frame_pos - boundaries[idx]) / np.maximum(boundaries[idx + 1] - boundaries[idx], 1)
    closed = inside & (progress < tracks[:, 7])
    tracks[closed, 3:5] = 0.0
    formants = _smooth(tracks[:, 0:3], 7) * voice.formant_scale  # coarticulation: ~35 ms glide
    voiced_amp = _smooth(tracks[:, 3], 3)
    noise_amp = _smooth(tracks[:, 4], 3)
    noise_hz, noise_bw = tracks[:, 5] * voice.formant_scale, tracks[:, 6]

    # pitch: declination over the utterance plus a slow random wander
    wander = np.cumsum(rng.normal(0.0, 0.004, n_frames))
    f0 = voice.f0 * rng.uniform(0.95, 1.05) * np.linspace(1.06, 0.9, n_frames) * np.exp(wander)

    # 3a. voiced part: additive synthesis (no randomness in it)
    voiced = _voiced(f0, formants, voiced_amp, frame_pos, n_samples, voice)

    # 3b. noise part: white noise shaped per frame by a band-pass (and breath for voiced frames)
    noise = _shaped_noise(rng, n_samples, noise_amp, noise_hz, noise_bw,
                          voice.breath * voiced_amp, formants[:, 1])
    wav = voiced / (np.abs(voiced).max() + 1e-9) * 0.6 + noise * 0.25
    wav = wav / (np.abs(wav).max() + 1e-9) * 0.5 * 10 ** (rng.uniform(-3, 3) / 20)
    rms = np.sqrt(np.mean(wav ** 2))
    wav = wav + rng.normal(0.0, rms * 10 ** (-snr_db / 20), n_samples)
    return Utterance(text, speaker, np.clip(wav, -1, 1).astype(np.float32), boundaries)


def _voiced(f0: np.ndarray, formants: np.ndarray, voiced_amp: np.ndarray, frame_pos: np.ndarray,
            n_samples: int, voice) -> np.ndarray:
    """The voiced part of an utterance [N]: harmonic h of the per-frame pitch ``f0`` [F],
    weighted by the formant envelope [F, 3] at h * f0 and by ``voiced_amp`` [F]."""
    f0_samples = np.interp(np.arange(n_samples), frame_pos, f0)
    phase = 2 * np.pi * np.cumsum(f0_samples) / SAMPLE_RATE  # [N]
    n_harm = int(5500 // voice.f0)
    harm_hz = f0[:, None] * np.arange(1, n_harm + 1)[None, :]  # [F, H]
    envelope = np.zeros_like(harm_hz)
    for k, bw in enumerate((90.0, 120.0, 180.0)):
        envelope += (1.0, 0.7, 0.4)[k] / (1.0 + ((harm_hz - formants[:, k:k + 1]) / bw) ** 2)
    envelope *= np.arange(1, n_harm + 1)[None, :] ** -voice.tilt * (harm_hz < 7000)
    envelope *= voiced_amp[:, None]  # [F, H]
    # linear interpolation of the per-frame harmonic amplitudes to samples
    pos = np.arange(n_samples) / FRAME
    lo = pos.astype(np.int64)
    w = (pos - lo)[:, None]
    amps = (envelope[lo] * (1 - w) + envelope[lo + 1] * w).astype(np.float32)  # [N, H]
    harmonics = np.sin(phase[:, None] * np.arange(1, n_harm + 1)[None, :]).astype(np.float32)
    return (amps * harmonics).sum(axis=1)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 (edges padded with their own values)."""
    kernel = np.ones(width) / width
    pad = width // 2
    x2 = x if x.ndim == 2 else x[:, None]
    padded = np.pad(x2, ((pad, pad), (0, 0)), mode="edge")
    out = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(x2.shape[1])], 1)
    return out if x.ndim == 2 else out[:, 0]


def _shaped_noise(rng, n_samples, amp, centre_hz, bw_hz, breath_amp, breath_hz) -> np.ndarray:
    """White noise, shaped frame by frame in the STFT domain (window 2*FRAME, hop FRAME)."""
    win = 2 * FRAME
    n_frames = len(amp)
    white = rng.normal(0.0, 1.0, (n_frames - 1) * FRAME + win)
    frames = np.lib.stride_tricks.sliding_window_view(white, win)[::FRAME][:n_frames]  # [F, 2W]
    window = np.hanning(win)
    spec = np.fft.rfft(frames * window, axis=1)  # [F, W + 1]
    freqs = np.fft.rfftfreq(win, 1.0 / SAMPLE_RATE)[None, :]
    band = amp[:, None] * np.exp(-0.5 * ((freqs - centre_hz[:, None]) / (bw_hz[:, None] / 2)) ** 2)
    breath = breath_amp[:, None] * np.exp(-0.5 * ((freqs - breath_hz[:, None]) / 1200.0) ** 2)
    shaped = np.fft.irfft(spec * (band + breath), n=win, axis=1) * window  # [F, 2W]
    out = np.zeros((n_frames + 1) * FRAME)
    for half in range(2):  # overlap-add: hop FRAME, window 2*FRAME = two halves
        out[half * FRAME:(n_frames + half) * FRAME] += shaped[:, half * FRAME:(half + 1) * FRAME].reshape(-1)
    return out[:n_samples] / 4.0


def text_stays_ahead(boundaries: np.ndarray, ratio: tuple = (1, 10, 4, 10), token_hz: float = 25.0,
                     sample_rate: int = SAMPLE_RATE) -> bool:
    """Does the text of each interleaved chunk come before the audio that speaks it?

    Under the ratio list [t1, a1, t2, a2, ...] (tutorials/paper.md §4) the answer is
    written as t1 text tokens, (a1 - 2) audio codes, t2 text tokens, ... After chunk n the model has
    written T_n characters and A_n audio codes. The audio must not speak a character that has not
    been written yet: every character that *starts* before A_n / token_hz seconds must be among
    the first T_n characters. One text token = one character (UTF-8 byte) here.
    """
    n_chars = len(boundaries) - 1
    written_text, written_codes, i = 0, 0, 0
    while written_text < n_chars:
        t, a = ratio[min(i, len(ratio) - 2)], ratio[min(i, len(ratio) - 2) + 1]
        i += 2
        written_text = min(n_chars, written_text + t)
        written_codes += a - 2
        audio_end = written_codes / token_hz * sample_rate
        spoken = int(np.searchsorted(boundaries[:-1], audio_end, side="left"))  # chars started
        if written_text < n_chars and spoken > written_text:
            return False
    return True


def benchmark(n: int = 40, seconds: float = 3.0) -> float:
    """Synthesize n utterances; return the real-time factor (audio seconds / wall seconds)."""
    import time

    rng = np.random.default_rng(0)
    letters = list(CHARSET[1:])
    texts = [" ".join("".join(rng.choice(letters, 4)) for _ in range(6)) for _ in range(n)]
    t0 = time.perf_counter()
    total = sum(len(synthesize(t, i % len(SPEAKERS)).wav) for i, t in enumerate(texts))
    return total / SAMPLE_RATE / (time.perf_counter() - t0)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="speak toy-world text, or time the synthesizer")
    parser.add_argument("--benchmark", action="store_true", help="print the real-time factor")
    parser.add_argument("--text", default="the red cat sleeps in rome")
    parser.add_argument("--speaker", type=int, default=0)
    parser.add_argument("--out", default="synth.wav")
    args = parser.parse_args()
    if args.benchmark:
        import torch

        torch.set_num_threads(1)
        print(f"synthesizer: {benchmark():.0f}x faster than real time (one core)")
    else:
        from vita_mini.audio.wav import write_wav

        write_wav(args.out, synthesize(args.text, args.speaker).wav)
        print(f"wrote {args.out}")
