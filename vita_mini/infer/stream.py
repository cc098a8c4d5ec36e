"""Streaming: text as it is written, and an audio chunk at every end-of-audio marker.

An interleaved answer (vocab.py) looks like ``text BOA codes EOA text BOA codes EOA ... END``.
``stream_events`` turns the token stream of the engine into events:

    TextPiece(text)        new text, as soon as its bytes form whole UTF-8 characters
    AudioChunk(codes, wav) the codes between a BOA and its EOA, decoded to a waveform right
                           away (the previous chunk's last codes are decoded with it as left
                           context, then cut off, so chunks join without a click)

Each event carries ``seconds``: the time since generation started, so the time to the first
audio chunk is simply the first AudioChunk's ``seconds``.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from vita_mini.vocab import AUDIO_OFFSET, BOA, EOA, is_audio, is_text

LEFT_CONTEXT = 4  # codes of the previous chunk decoded again in front of the next one


@dataclass
class TextPiece:
    text: str
    seconds: float


@dataclass
class AudioChunk:
    codes: list[int]  # codec codes (0 .. codebook_size - 1)
    wav: torch.Tensor | None  # [len(codes) * 640] at 16 kHz, or None without a codec
    seconds: float


class ChunkDecoder:
    """Codes -> waveform, one chunk at a time, with a little left context from the last chunk.
    ``voice``: what ``codec.decode`` takes, a voice id or a speaker embedding [1, C]."""

    def __init__(self, codec, voice: int | torch.Tensor = 0):
        self.codec, self.voice, self.previous = codec, voice, []

    def __call__(self, codes: list[int]) -> torch.Tensor:
        context = self.previous[-LEFT_CONTEXT:]
        wav = self.codec.decode(torch.tensor(context + codes), self.voice)
        self.previous = codes
        return wav[len(context) * self.codec.samples_per_token:]


def stream_events(tokens: Iterable, codec=None, voice: int | torch.Tensor = 0,
                  start: float | None = None) -> Iterator[TextPiece | AudioChunk]:
    """tokens: the engine's Token objects (or plain ids) -> TextPiece / AudioChunk events."""
    start = time.perf_counter() if start is None else start
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    decode = ChunkDecoder(codec, voice) if codec is not None else None
    codes: list[int] | None = None  # inside BOA .. EOA
    for token in tokens:
        t = getattr(token, "id", token)
        if t == BOA:
            codes = []
        elif t == EOA and codes is not None:
            wav = decode(codes) if decode is not None and codes else None
            yield AudioChunk(codes, wav, time.perf_counter() - start)
            codes = None
        elif is_audio(t) and codes is not None:
            codes.append(t - AUDIO_OFFSET)
        elif is_text(t):
            piece = text.decode(bytes([t]))
            if piece:
                yield TextPiece(piece, time.perf_counter() - start)
