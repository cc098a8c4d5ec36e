"""Tests for vita_mini.audio.wav: every fixture is fabricated byte by byte in tmp_path."""

import struct

import numpy as np
import pytest
import torch

from vita_mini.audio.wav import load_audio, read_wav, write_wav
from vita_mini.errors import VitaError

GUID_SUFFIX = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


# ---------------------------------------------------------------- fixture helpers
def chunk(cid: bytes, payload: bytes) -> bytes:
    """One RIFF chunk, with the pad byte for odd sizes."""
    return cid + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def fmt_payload(tag, channels, rate, bits, extensible=False):
    block = channels * bits // 8
    head = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits)
    if not extensible:
        return head
    return head + struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + GUID_SUFFIX


def encode(x: np.ndarray, tag: int, bits: int) -> bytes:
    """Interleave float [channels, samples] into little-endian sample bytes."""
    x = x.T.reshape(-1)
    if tag == 3:
        return x.astype("<f4" if bits == 32 else "<f8").tobytes()
    scale = 2 ** (bits - 1) - 1
    q = np.round(x * scale).astype(np.int64)
    if bits == 8:
        return (q + 128).astype(np.uint8).tobytes()
    if bits == 24:
        return b"".join(int(v).to_bytes(3, "little", signed=True) for v in q)
    return q.astype("<i2" if bits == 16 else "<i4").tobytes()


def make_wav(path, x, rate=16000, tag=1, bits=16, extensible=False, before_data=b"", fmt=None, data=None):
    """Write a WAV built from float signal x ([samples] or [channels, samples])."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    fmt = fmt_payload(tag, x.shape[0], rate, bits, extensible) if fmt is None else fmt
    data = encode(x, tag, bits) if data is None else data
    body = b"WAVE" + chunk(b"fmt ", fmt) + before_data + chunk(b"data", data)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def sine(freq=440.0, rate=16000, seconds=0.25, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


# ---------------------------------------------------------------- reading and writing
def test_write_read_round_trip(tmp_path):
    x = sine()
    target = tmp_path / "sub" / "dir" / "out.wav"
    write_wav(target, torch.tensor(x, dtype=torch.float32).unsqueeze(0))
    got, rate = read_wav(target)
    assert rate == 16000 and got.shape == (1, len(x)) and got.dtype == np.float32
    assert np.abs(got[0] - x).max() < 1 / 32767
    assert [p.name for p in target.parent.iterdir()] == ["out.wav"]  # no temp file left behind


def test_write_clips(tmp_path):
    write_wav(tmp_path / "c.wav", np.array([2.0, -2.0, 0.0]), sample_rate=8000)
    got, rate = read_wav(tmp_path / "c.wav")
    assert rate == 8000 and np.allclose(got[0], [1.0, -1.0, 0.0], atol=1e-4)


@pytest.mark.parametrize("tag,bits,ext,tol", [
    (1, 8, False, 1 / 100), (1, 16, False, 1e-4), (1, 24, False, 1e-6), (1, 32, False, 1e-7),
    (3, 32, False, 1e-7), (3, 64, False, 1e-7), (1, 24, True, 1e-6), (3, 32, True, 1e-7),
])
def test_formats(tmp_path, tag, bits, ext, tol):
    x = np.stack([sine(), sine(300, amp=0.9)])  # stereo
    got, rate = read_wav(make_wav(tmp_path / "f.wav", x, 22050, tag, bits, ext))
    assert rate == 22050 and got.shape == x.shape and got.dtype == np.float32
    assert np.abs(got - x).max() < tol


def test_stereo_is_averaged(tmp_path):
    left, right = sine(440), sine(300, amp=0.3)
    out = load_audio(make_wav(tmp_path / "s.wav", np.stack([left, right])))
    assert out.shape == (len(left),)
    assert np.abs(out.numpy() - (left + right) / 2).max() < 1e-4


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_load_audio_resamples(tmp_path, rate):
    x = sine(rate=rate, seconds=1.0)
    out = load_audio(make_wav(tmp_path / "r.wav", x, rate))
    assert out.dtype == torch.float32 and out.ndim == 1
    assert abs(len(out) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(out.numpy()))
    peak_hz = np.argmax(spectrum) * 16000 / len(out)
    assert abs(peak_hz - 440) <= 2


def test_unknown_chunks_skipped(tmp_path):
    x = sine()
    extra = chunk(b"LIST", b"INFOISFT" + b"abc") + chunk(b"junk", b"x" * 7)  # odd sizes, padded
    got, _ = read_wav(make_wav(tmp_path / "l.wav", x, before_data=extra))
    assert np.abs(got[0] - x).max() < 1e-4


# ---------------------------------------------------------------- errors
def expect_error(path, phrase, fn=read_wav):
    with pytest.raises(VitaError) as info:
        fn(path)
    msg = str(info.value)
    assert path.name in msg and phrase in msg and "\n" not in msg, msg


def test_error_missing(tmp_path):
    expect_error(tmp_path / "nope.wav", "does not exist")


def test_error_directory(tmp_path):
    (tmp_path / "d.wav").mkdir()
    expect_error(tmp_path / "d.wav", "is a directory")


def test_error_empty(tmp_path):
    (tmp_path / "e.wav").write_bytes(b"")
    expect_error(tmp_path / "e.wav", "is empty (0 bytes)")


@pytest.mark.parametrize("content", [b"hello, this is text\n", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb" * 50])
def test_error_not_wav(tmp_path, content):
    (tmp_path / "song.mp3").write_bytes(content)
    expect_error(tmp_path / "song.mp3", "is not a WAV file")


def test_error_truncated_header(tmp_path):
    whole = make_wav(tmp_path / "w.wav", sine()).read_bytes()
    (tmp_path / "t.wav").write_bytes(whole[:10])
    expect_error(tmp_path / "t.wav", "truncated")
    (tmp_path / "t2.wav").write_bytes(whole[:30])  # cut inside the fmt chunk
    expect_error(tmp_path / "t2.wav", "fmt chunk is truncated")


def test_error_no_data_chunk(tmp_path):
    body = b"WAVE" + chunk(b"fmt ", fmt_payload(1, 1, 16000, 16)) + chunk(b"LIST", b"INFO")
    (tmp_path / "n.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    expect_error(tmp_path / "n.wav", "no data chunk")


def test_error_truncated_data(tmp_path):
    whole = make_wav(tmp_path / "w.wav", sine()).read_bytes()
    (tmp_path / "t.wav").write_bytes(whole[:-100])
    expect_error(tmp_path / "t.wav", "truncated")


def test_error_partial_frame(tmp_path):
    make_wav(tmp_path / "p.wav", sine(), data=b"\x00" * 7)
    expect_error(tmp_path / "p.wav", "whole number")


def test_error_alaw(tmp_path):
    make_wav(tmp_path / "a.wav", sine(), tag=6, bits=8)
    expect_error(tmp_path / "a.wav", "A-law")


def test_error_12_bit(tmp_path):
    make_wav(tmp_path / "b.wav", sine(), fmt=fmt_payload(1, 1, 16000, 12), data=b"\x00" * 100)
    expect_error(tmp_path / "b.wav", "12-bit")


def test_error_zero_channels(tmp_path):
    make_wav(tmp_path / "z.wav", sine(), fmt=fmt_payload(1, 0, 16000, 16), data=b"")
    expect_error(tmp_path / "z.wav", "0 channels")


@pytest.mark.parametrize("rate", [96000, 4000])
def test_error_sample_rate(tmp_path, rate):
    make_wav(tmp_path / "h.wav", sine(rate=rate), rate)
    expect_error(tmp_path / "h.wav", f"{rate} Hz", fn=load_audio)


def test_error_silent(tmp_path):
    make_wav(tmp_path / "q.wav", np.zeros(1600))
    expect_error(tmp_path / "q.wav", "is silent", fn=load_audio)


def test_audio_shorter_than_min_samples_is_refused(tmp_path):
    make_wav(tmp_path / "s.wav", sine()[:100])
    expect_error(tmp_path / "s.wav", "is 100 samples long", fn=lambda p: load_audio(p, min_samples=640))
    assert load_audio(tmp_path / "s.wav", min_samples=100).shape == (100,)  # exactly enough is fine


def test_error_no_samples(tmp_path):
    make_wav(tmp_path / "o.wav", np.zeros((1, 0)))
    expect_error(tmp_path / "o.wav", "contains no audio samples", fn=load_audio)


def test_wav_writer_streams_pieces_and_leaves_nothing_on_error(tmp_path):
    from vita_mini.audio.wav import WavWriter
    x = np.sin(np.linspace(0, 60, 3000)).astype(np.float32) * 0.5
    with WavWriter(tmp_path / "out" / "a.wav") as w:
        for piece in (x[:1000], torch.from_numpy(x[1000:2500]), x[2500:][None]):
            w.write(piece)
        assert not (tmp_path / "out" / "a.wav").exists()  # only once the block ends
    write_wav(tmp_path / "b.wav", x)
    assert (tmp_path / "out" / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    with pytest.raises(RuntimeError, match="interrupted"):
        with WavWriter(tmp_path / "c.wav") as w:
            w.write(x)
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.wav", "out"]  # no c.wav, no temporary file
