"""Corpora as audio codes: every utterance encoded once by the run's codec (tutorials/paper.md §2).

Stages 1 to 4 never touch audio again: they train on the 25 Hz codes of the speech corpus and of
the spoken-QA corpus. Encoding the toy corpus takes about 10 s, so training caches the codes in
stage 0's folder (``codes-<corpus>.pt``), keyed by the corpus file and a digest of the codec's
weights: if either changes (stage 0 retrained, another world), the corpus is encoded again.

A consumer that only reads a run (the evaluation suite) passes ``write=False``: it uses the cache
if it is there and right, and otherwise encodes in memory, never writing into the run folder.
"""

from __future__ import annotations

import hashlib
import os

import torch

from vita_mini.audio.codec import AudioCodec, pad_mels
from vita_mini.audio.features import LogMel
from vita_mini.checkpoint import atomic_write_bytes
from vita_mini.config import Config
from vita_mini.data.alignment import AlignmentData
from vita_mini.data.corpus import Corpus, corpus_path, load_corpus
from vita_mini.data.spoken_qa import SpokenQAData, load_spoken_qa_corpus, spoken_qa_corpus_path
from vita_mini.runs import load_audio_models, stage_dir


@torch.no_grad()
def encode_corpus(codec: AudioCodec, corpus: Corpus, batch_size: int = 32) -> list[list[int]]:
    """25 Hz codes of every corpus utterance, batched (same result as codec.encode per utterance)."""
    device = next(codec.parameters()).device
    logmel = LogMel(codec.audio).to(device)
    codes = []
    for start in range(0, len(corpus), batch_size):
        wavs = [torch.from_numpy(corpus.wav(u)) for u in range(start, min(start + batch_size, len(corpus)))]
        mels = [logmel(codec.pad_wav(w).to(device)[None])[0].cpu() for w in wavs]  # [n_mels, F_u] each
        mel, frames = pad_mels(mels, codec.cfg.downsample)  # [B, n_mels, F_max], [B]
        n_tokens = frames // codec.cfg.downsample
        _, batch_codes, _ = codec.quantize(mel.to(device), n_tokens.to(device))  # [B, N_max]
        codes += [batch_codes[i, :n].tolist() for i, n in enumerate(n_tokens.tolist())]
    return codes


def weights_digest(module: torch.nn.Module) -> str:
    """A short hash of every tensor in ``module``'s state: equal digests, equal weights."""
    h = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def corpus_codes(cfg: Config, codec: AudioCodec, corpus: Corpus, corpus_file: str,
                 write: bool = True) -> list[list[int]]:
    """The codes of every utterance of ``corpus`` (cached at ``corpus_file``), from the cache in
    stage 0's folder when it matches; else encoded, and cached if ``write``."""
    name = os.path.splitext(os.path.basename(corpus_file))[0]
    path = os.path.join(stage_dir(cfg, 0), f"codes-{name}.pt")
    key = f"{name} {weights_digest(codec)}"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["key"] == key:
            return [row.tolist() for row in saved["codes"].split(saved["lengths"].tolist())]
    except Exception:  # missing, truncated or foreign: a cache is simply made again
        pass
    codes = encode_corpus(codec, corpus)
    if write:
        flat = torch.tensor([c for row in codes for c in row], dtype=torch.int32)
        lengths = torch.tensor([len(row) for row in codes])
        atomic_write_bytes(path, lambda tmp: torch.save({"key": key, "codes": flat, "lengths": lengths}, tmp))
    return codes


def spoken_qa_data(cfg: Config, codec: AudioCodec, log=print, write: bool = True) -> SpokenQAData:
    """The spoken-QA corpus (synthesized once into the shared cache folder) as samples and test
    questions, through its codes (``write``: as ``corpus_codes``)."""
    corpus = load_spoken_qa_corpus(cfg, log)
    return SpokenQAData(cfg, corpus, corpus_codes(cfg, codec, corpus, spoken_qa_corpus_path(cfg), write))


def alignment_data(cfg: Config, device: torch.device, log=print, mix=None):
    """(codec, judge, AlignmentData): stage 0's models and the speech corpus turned into stage 1's
    samples through its codes (``mix``: as ``AlignmentData``). Stages 1 to 4 start here."""
    codec, judge = load_audio_models(cfg, device)
    corpus = load_corpus(cfg, log)
    return codec, judge, AlignmentData(cfg, corpus, corpus_codes(cfg, codec, corpus, corpus_path(cfg)), mix)
