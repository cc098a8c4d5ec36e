"""Corpora as audio codes: every utterance encoded once by the run's codec (tutorials/paper.md §2).

Stages 1 to 4 never touch audio again: they train on the 25 Hz codes of the speech corpus and of
the spoken-QA corpus. The first stage that needs them encodes each corpus into a token shard set
in stage 0's folder (``codes-<corpus>/``, vita_mini/shards.py: memory-mapped codes plus an index,
resumable), keyed by the corpus file and a digest of the codec's weights. Training stage 0 again
removes its shard sets (train/run_stage.py), so they are always the current codec's; a set
made by another codec is refused with one line.

A consumer that only reads a run (the evaluation suite) passes ``write=False``: it uses the
shards if they are there, and otherwise encodes in memory, never writing into the run folder.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from vita_mini.audio.codec import AudioCodec, pad_mels
from vita_mini.audio.features import LogMel
from vita_mini.config import Config
from vita_mini.data.alignment import AlignmentData
from vita_mini.data.corpus import Corpus, corpus_path, load_corpus
from vita_mini.data.spoken_qa import SpokenQAData, load_spoken_qa_corpus, spoken_qa_corpus_path
from vita_mini.runs import load_audio_models, stage_dir
from vita_mini.shards import CODE_DTYPE, TokenShards, open_shards, write_shards


@torch.no_grad()
def encode_corpus(codec: AudioCodec, corpus: Corpus, start: int = 0, stop: int | None = None,
                  batch_size: int = 32) -> list[list[int]]:
    """25 Hz codes of corpus utterances start .. stop-1 (all by default), batched (the same
    result as codec.encode per utterance)."""
    device = next(codec.parameters()).device
    logmel = LogMel(codec.audio).to(device)
    stop = len(corpus) if stop is None else stop
    codes = []
    for first in range(start, stop, batch_size):
        wavs = [torch.from_numpy(corpus.wav(u)) for u in range(first, min(first + batch_size, stop))]
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


def corpus_tokens(cfg: Config, codec: AudioCodec, corpus_file: str, load, write: bool = True,
                  log=print) -> TokenShards:
    """The corpus cached at ``corpus_file`` as codes: its shard set in stage 0's folder if there
    is a finished one, else encoded (``load()`` gives the corpus) into one, or, without
    ``write``, in memory."""
    name = os.path.splitext(os.path.basename(corpus_file))[0]
    folder = os.path.join(stage_dir(cfg, 0), f"codes-{name}")
    digest = weights_digest(codec)
    shards = open_shards(folder, name, digest)
    if shards is not None:
        return shards
    corpus = load()
    if not write:
        rows = encode_corpus(codec, corpus)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        flat = np.array([c for r in rows for c in r], dtype=CODE_DTYPE)
        return TokenShards(list(corpus.texts), np.asarray(corpus.speakers), np.asarray(corpus.splits),
                           flat, offsets)
    log(f"tokenizing {len(corpus)} utterances with stage 0's codec into {folder}")
    return write_shards(folder, corpus, name, digest,
                        lambda start, stop: encode_corpus(codec, corpus, start, stop), log=log)


def spoken_qa_data(cfg: Config, codec: AudioCodec, log=print, write: bool = True) -> SpokenQAData:
    """The spoken-QA corpus (synthesized once into the shared cache folder) as samples and test
    questions, through its codes (``write``: as ``corpus_codes``)."""
    tokens = corpus_tokens(cfg, codec, spoken_qa_corpus_path(cfg), lambda: load_spoken_qa_corpus(cfg, log),
                           write, log)
    return SpokenQAData(cfg, tokens, tokens.code_lists())


def alignment_data(cfg: Config, device: torch.device, log=print, mix=None):
    """(codec, judge, AlignmentData): stage 0's models and the speech corpus turned into stage 1's
    samples through its codes (``mix``: as ``AlignmentData``). Stages 1 to 4 start here."""
    codec, judge = load_audio_models(cfg, device)
    tokens = corpus_tokens(cfg, codec, corpus_path(cfg), lambda: load_corpus(cfg, log), log=log)
    data = AlignmentData(cfg, tokens, tokens.code_lists(), mix)
    if data.too_long:
        log(f"left out {data.too_long} ASR/TTS samples longer than llm.max_seq_len={cfg.llm.max_seq_len}")
    return codec, judge, data
