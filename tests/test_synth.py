import numpy as np
import pytest

from vita_mini.data.synth import SAMPLE_RATE, SPEAKERS, synthesize, text_stays_ahead
from vita_mini.data.world import build_world

TEXT = "the red cat sleeps in rome"


def f0_estimate(wav: np.ndarray) -> float:
    """Autocorrelation pitch of the loudest 100 ms (an independent, crude pitch tracker)."""
    n = int(0.1 * SAMPLE_RATE)
    energy = np.convolve(wav ** 2, np.ones(n), mode="valid")
    seg = wav[int(energy.argmax()):int(energy.argmax()) + n]
    ac = np.correlate(seg, seg, mode="full")[n - 1:]
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 70
    return SAMPLE_RATE / (lo + int(ac[lo:hi].argmax()))


def spectral_centroid(wav: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(wav)) ** 2
    freqs = np.fft.rfftfreq(len(wav), 1 / SAMPLE_RATE)
    return float((spec * freqs).sum() / spec.sum())


def test_deterministic():
    a, b = synthesize(TEXT, 2), synthesize(TEXT, 2)
    assert np.array_equal(a.wav, b.wav) and np.array_equal(a.boundaries, b.boundaries)
    other_take = synthesize(TEXT, 2, seed=99)
    assert not np.array_equal(a.wav, other_take.wav)


def test_output_format_and_alignment():
    u = synthesize(TEXT, 0)
    assert u.wav.dtype == np.float32 and u.wav.ndim == 1
    assert np.abs(u.wav).max() <= 1.0 and np.abs(u.wav).max() > 0.1
    assert len(u.boundaries) == len(TEXT) + 1
    assert np.all(np.diff(u.boundaries) > 0)  # monotonic, every character has a duration
    assert u.boundaries[-1] < len(u.wav)


def test_speakers_differ_in_pitch_rate_and_timbre():
    assert len(SPEAKERS) >= 4
    utts = [synthesize("aaaa eeee oooo", s) for s in range(len(SPEAKERS))]
    pitches = [f0_estimate(u.wav) for u in utts]
    for s, p in enumerate(pitches):  # the measured pitch follows the voice's f0 (declination aside)
        assert abs(p - SPEAKERS[s].f0) / SPEAKERS[s].f0 < 0.2, (s, p)
    assert max(pitches) > 1.8 * min(pitches)
    lengths = [u.boundaries[-1] - u.boundaries[0] for u in utts]
    assert max(lengths) > 1.1 * min(lengths)  # speaking rates differ
    centroids = [spectral_centroid(u.wav) for u in utts]
    assert len({round(c, -1) for c in centroids}) == len(SPEAKERS)  # timbres differ


def test_characters_sound_different():
    centroids = {ch: spectral_centroid(synthesize(ch * 6, 0).wav) for ch in "aisfmt"}
    assert centroids["s"] > 2 * centroids["a"]  # hiss is bright, vowels are dark
    assert len({round(c, -2) for c in centroids.values()}) >= 5


def test_faster_than_real_time_on_a_short_text():
    import time
    t0 = time.perf_counter()
    u = synthesize("a quick check of the speed of the synth", 1)
    assert (len(u.wav) / SAMPLE_RATE) / (time.perf_counter() - t0) > 5  # loose; benchmark says 50x+


def test_text_stays_ahead_of_audio_for_the_whole_world():
    world = build_world(n_people=8, n_general_sentences=120, max_chars=28, n_val=16, n_test=16)
    sentences = world.speech_sentences["train"][:40] + [f.text for f in world.facts[:8]]
    for i, text in enumerate(sentences):
        u = synthesize(text, i % len(SPEAKERS))
        assert text_stays_ahead(u.boundaries), text


def test_text_stays_ahead_can_fail():
    too_fast = synthesize("abcdefghijklmnopqrstuvwxyz abcdefgh", 3, char_seconds=0.04, lead_seconds=0.0)
    assert not text_stays_ahead(too_fast.boundaries)


def test_rejects_characters_outside_the_alphabet():
    with pytest.raises(ValueError, match="not in the toy alphabet"):
        synthesize("Hello!", 0)


@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="espeak-ng not installed")
def test_espeak_backend_speaks_every_voice():
    from vita_mini.data.espeak import ESPEAK_VOICES, synthesize_espeak
    for speaker in range(len(ESPEAK_VOICES)):
        wav = synthesize_espeak("ana lives in rome", speaker)
        assert wav.dtype == np.float32 and 0.5 < len(wav) / SAMPLE_RATE < 3.0
        assert np.abs(wav).max() > 0.1


def test_espeak_backend_missing_is_a_clear_error(monkeypatch):
    from vita_mini.data import espeak
    from vita_mini.errors import VitaError
    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
    with pytest.raises(VitaError, match="needs espeak-ng on PATH"):
        espeak.synthesize_espeak("ana", 0)
