"""Read and write WAV files without torchcodec.

Since torchaudio 2.9, ``torchaudio.load``/``save`` go through torchcodec, which this project does
not use. WAV is simple enough to handle ourselves: a RIFF file is a 12-byte header
(``RIFF <size> WAVE``) followed by chunks, each ``<4-byte id> <uint32 size> <payload>`` plus a pad
byte when the size is odd. We need two of them: ``fmt `` (sample format) and ``data`` (the
interleaved samples). torchaudio is used only for DSP (resampling).

Every problem with a user's file raises :class:`~vita_mini.errors.VitaError` with a one-line
message that names the file as given and says what is wrong.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import wave
from pathlib import Path

import numpy as np
import torch
import torchaudio

from vita_mini.errors import VitaError

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# An EXTENSIBLE sub-format GUID is the old 2-byte format tag followed by this fixed suffix.
_GUID_SUFFIX = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_TAG_NAMES = {0x0002: "Microsoft ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM",
              0x0050: "MPEG", 0x0055: "MP3"}
MIN_RATE, MAX_RATE = 8000, 48000
SILENCE_PEAK = 1e-4


def _fail(path: str | os.PathLike, problem: str) -> VitaError:
    return VitaError(f"audio file {str(path)!r} {problem}")


def _decode(raw: bytes, tag: int, bits: int, channels: int) -> np.ndarray:
    """Turn interleaved little-endian sample bytes into float32 [channels, samples]."""
    if tag == IEEE_FLOAT:
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    elif bits == 8:  # 8-bit WAV is unsigned, centred on 128
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 24:  # no numpy dtype: place the 3 bytes in the top of an int32
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)).astype(np.float32) / 2.0**31
    else:
        x = np.frombuffer(raw, dtype="<i2" if bits == 16 else "<i4").astype(np.float32)
        x /= 2.0 ** (bits - 1)
    return np.ascontiguousarray(x.reshape(-1, channels).T)


def _find_chunks(buf: bytes, path) -> tuple[bytes, bytes]:
    """The bodies of the ``fmt `` and ``data`` chunks of a RIFF/WAVE file; other chunks skipped."""
    fmt = data = None
    pos = 12
    while pos + 8 <= len(buf) and (fmt is None or data is None):
        cid, size = struct.unpack_from("<4sI", buf, pos)
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + size > len(buf):
                raise _fail(path, "is corrupt: fmt chunk is truncated")
            fmt = buf[body: body + size]
        elif cid == b"data":
            if body + size > len(buf):
                raise _fail(path, f"is truncated: data chunk declares {size} bytes "
                                  f"but only {len(buf) - body} are present")
            data = buf[body: body + size]
        pos = body + size + (size & 1)  # chunks are padded to an even size
    if fmt is None:
        raise _fail(path, "is corrupt: no fmt chunk")
    if data is None:
        raise _fail(path, "is corrupt: no data chunk")
    return fmt, data


def _read_format(fmt: bytes, path) -> tuple[int, int, int, int]:
    """(format tag, channels, sample rate, bits per sample) of a fmt chunk we can decode."""
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _GUID_SUFFIX:
            raise _fail(path, "is corrupt: bad WAVE_FORMAT_EXTENSIBLE header")
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if tag not in (PCM, IEEE_FLOAT):
        name = _TAG_NAMES.get(tag, "unknown")
        raise _fail(path, f"uses an unsupported sample format: tag {tag} ({name}); "
                          "only PCM and IEEE float are supported")
    if (tag == PCM and bits not in (8, 16, 24, 32)) or (tag == IEEE_FLOAT and bits not in (32, 64)):
        kind = "PCM" if tag == PCM else "float"
        raise _fail(path, f"uses an unsupported sample format: {bits}-bit {kind}")
    if channels == 0:
        raise _fail(path, "is corrupt: it declares 0 channels")
    if rate == 0:
        raise _fail(path, "is corrupt: it declares a sample rate of 0 Hz")
    return tag, channels, rate, bits


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 ``[channels, samples]`` in [-1, 1], plus its sample rate.

    Supports PCM 8 (unsigned) / 16 / 24 / 32-bit, IEEE float 32 / 64-bit, and
    WAVE_FORMAT_EXTENSIBLE wrapping either. Unknown chunks (LIST, fact, ...) are skipped.
    """
    p = Path(path)
    if p.is_dir():
        raise _fail(path, "is a directory, not a WAV file")
    if not p.exists():
        raise _fail(path, "does not exist")
    try:
        buf = p.read_bytes()
    except OSError as e:
        raise _fail(path, f"cannot be read: {e.strerror or e}") from None
    if not buf:
        raise _fail(path, "is empty (0 bytes)")
    if buf[:4] != b"RIFF"[: len(buf[:4])] or (len(buf) >= 12 and buf[8:12] != b"WAVE"):
        raise _fail(path, "is not a WAV file (no RIFF/WAVE header)")
    if len(buf) < 12:
        raise _fail(path, f"is truncated: header cut short ({len(buf)} bytes)")

    fmt, data = _find_chunks(buf, path)
    tag, channels, rate, bits = _read_format(fmt, path)
    frame = channels * bits // 8
    if len(data) % frame:
        raise _fail(path, f"is corrupt: data size {len(data)} is not a whole number "
                          f"of {frame}-byte frames")
    wav = _decode(data, tag, bits, channels)
    if not np.isfinite(wav).all():
        raise _fail(path, "contains NaN or infinite samples")
    return wav, rate


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, min_samples: int = 1) -> torch.Tensor:
    """Read a WAV file as a mono float32 1-D tensor at ``sample_rate`` Hz.

    The file's own rate must be within 8000..48000 Hz; channels are averaged. Audio shorter than
    ``min_samples`` (at ``sample_rate``; the audio tokenizer needs one token's worth) is refused.
    """
    wav, rate = read_wav(path)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise _fail(path, f"has sample rate {rate} Hz; supported: {MIN_RATE}..{MAX_RATE} Hz")
    if wav.shape[1] == 0:
        raise _fail(path, "contains no audio samples")
    mono = torch.from_numpy(wav.mean(axis=0, dtype=np.float32))
    if mono.abs().max().item() < SILENCE_PEAK:
        raise _fail(path, f"is silent (peak amplitude below {SILENCE_PEAK:g})")
    if rate != sample_rate:
        mono = torchaudio.functional.resample(mono, orig_freq=rate, new_freq=sample_rate)
    if mono.numel() < min_samples:
        raise _fail(path, f"is {mono.numel()} samples long ({mono.numel() / sample_rate * 1000:.1f} ms); "
                          f"the shortest audio it can hear is one audio token, {min_samples} samples "
                          f"({min_samples / sample_rate * 1000:.0f} ms)")
    return mono.float().contiguous()


def _pcm16(wav: torch.Tensor | np.ndarray) -> bytes:
    """Mono audio ``[N]`` or ``[1, N]`` as 16-bit PCM bytes: clipped to [-1, 1], x * 32767 rounded."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().float().numpy()
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"write_wav expects shape [N] or [1, N], got {list(x.shape)}")
    return np.round(np.clip(np.nan_to_num(x), -1.0, 1.0) * 32767).astype("<i2").tobytes()


class WavWriter:
    """Write mono 16-bit PCM piece by piece (``write``), atomically: inside ``with WavWriter(path)
    as w:`` the pieces go to a hidden temporary file in the target directory, renamed over ``path``
    when the block ends without an error and deleted when it raises, so readers never see a
    half-written file and a failed run leaves none behind. Parent directories are created."""

    def __init__(self, path: str | os.PathLike, sample_rate: int = 16000):
        self.path, self.sample_rate = path, int(sample_rate)
        self.target = Path(path)
        self.tmp = self.target.with_name(f".{self.target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        self._file = self._wave = None

    def _fail(self, e: OSError) -> VitaError:
        return VitaError(f"cannot write audio file {str(self.path)!r}: {e.strerror or e}")

    def __enter__(self) -> WavWriter:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            # os.open with mode 0o666 honours the umask, unlike tempfile's private 0o600.
            self._file = open(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
            self._wave = wave.open(self._file, "wb")
            self._wave.setnchannels(1)
            self._wave.setsampwidth(2)
            self._wave.setframerate(self.sample_rate)
        except OSError as e:
            self._close()
            raise self._fail(e) from None
        return self

    def write(self, wav: torch.Tensor | np.ndarray) -> None:
        """Append mono audio ([N] or [1, N], float in [-1, 1])."""
        self.write_pcm(_pcm16(wav))

    def write_pcm(self, pcm: bytes) -> None:
        try:
            self._wave.writeframes(pcm)
        except OSError as e:
            raise self._fail(e) from None

    def _close(self) -> None:
        for f in (self._wave, self._file):
            if f is not None:
                with contextlib.suppress(OSError):  # after a failure: the temporary file goes anyway
                    f.close()
        self._wave = self._file = None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._wave.close()  # writes the final sizes into the header
                self._wave = None
                self._file.flush()
                os.fsync(self._file.fileno())
                self._close()
                os.replace(self.tmp, self.target)
        except OSError as e:
            raise self._fail(e) from None
        finally:
            self._close()
            self.tmp.unlink(missing_ok=True)  # no-op after a successful rename


def write_wav(path: str | os.PathLike, wav: torch.Tensor | np.ndarray, sample_rate: int = 16000) -> None:
    """Write mono audio (shape ``[N]`` or ``[1, N]``) as 16-bit PCM, atomically (``WavWriter``).

    Samples are clipped to [-1, 1] and rounded to the nearest ``x * 32767``."""
    pcm = _pcm16(wav)  # a bad shape fails before any file exists
    with WavWriter(path, sample_rate) as w:
        w.write_pcm(pcm)
