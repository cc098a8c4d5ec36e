"""Token shards: a corpus as audio codes on disk, made once by the stage-0 codec.

Stages 1 to 4 never touch audio (tutorials/paper.md §2: the LLM reads and writes the tokenizer's
codes). So once stage 0 has trained the codec, every utterance of the corpus is encoded once
and written as a shard set, a folder beside stage 0's checkpoint:

    index.json   what made it (the corpus file, a digest of the codec's weights, the code dtype)
                 and how far encoding got ("done": utterances encoded so far, of "total")
    meta.npz     every utterance's text, speaker and split (written first, in full)
    codes.bin    the codes of utterances 0 .. done-1 laid end to end (int16: codebooks up to
                 32768 codes), read back memory-mapped
    offsets.npy  [done + 1] where each utterance's codes start in codes.bin

Encoding appends a chunk of utterances to codes.bin, then replaces offsets.npy and index.json
atomically (temporary file, rename). An interrupted run leaves a consistent prefix: the next
one cuts codes.bin back to the last recorded offset and goes on from there. For a corpus of
hundreds of hours the stages then hold only the codes (25 per second, 2 bytes each: 180 kB an
hour) and the texts in memory, never the audio.

A shard set made by another codec (another stage 0's weights) cannot be used: its codes mean
other sounds. ``open_shards`` says so in one line instead of training on them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from vita_mini.checkpoint import atomic_write_bytes
from vita_mini.errors import VitaError

SHARD_VERSION = 1
CODE_DTYPE = np.int16


@dataclass
class TokenShards:
    """A corpus as codes: what stages 1-4 read (the same fields as a Corpus, codes for audio)."""

    texts: list[str]
    speakers: np.ndarray  # [U] int
    splits: np.ndarray  # [U] str: train / val / test
    codes: np.ndarray  # [sum T_u] int16 (memory-mapped), utterances laid end to end
    offsets: np.ndarray  # [U + 1] int64

    def __len__(self) -> int:
        return len(self.texts)

    def indices(self, split: str) -> list[int]:
        return [u for u in range(len(self)) if self.splits[u] == split]

    def code_lists(self) -> list[list[int]]:
        """Every utterance's codes as a list of ints, in corpus order."""
        flat = np.asarray(self.codes, dtype=np.int64)
        return [flat[self.offsets[u]:self.offsets[u + 1]].tolist() for u in range(len(self))]


def _read_index(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, "index.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_index(folder: str, index: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(index, f, indent=1)
    atomic_write_bytes(os.path.join(folder, "index.json"), write)


def _save_atomic(path: str, save) -> None:
    """``save(f)`` into an open binary file, renamed onto ``path`` when complete (a file object,
    because numpy would add its own suffix to the temporary file's name)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            save(f)
    atomic_write_bytes(path, write)


def _write_offsets(folder: str, offsets: np.ndarray) -> None:
    _save_atomic(os.path.join(folder, "offsets.npy"), lambda f: np.save(f, offsets))


def open_shards(folder: str, corpus_name: str, codec_digest: str) -> TokenShards | None:
    """The complete shard set in ``folder``; None if there is none yet or it is unfinished.
    A set made from another corpus or by another codec is refused with one line."""
    index = _read_index(folder)
    if index is None:
        return None
    if index.get("version") != SHARD_VERSION or index.get("corpus") != corpus_name:
        raise VitaError(f"token shards '{folder}' were made from {index.get('corpus')!r}, not "
                        f"{corpus_name!r}: delete the folder to tokenize this corpus again")
    if index.get("codec") != codec_digest:
        raise VitaError(f"token shards '{folder}' were made by another codec (weights "
                        f"{index.get('codec')}, this run's stage 0 has {codec_digest}): delete "
                        f"the folder to tokenize the corpus again with this codec")
    if index["done"] < index["total"]:
        return None
    return _load(folder, index["done"])


def _load(folder: str, done: int) -> TokenShards:
    with np.load(os.path.join(folder, "meta.npz"), allow_pickle=False) as meta:
        texts, speakers, splits = [str(t) for t in meta["texts"]], meta["speakers"], meta["splits"].astype(str)
    offsets = np.load(os.path.join(folder, "offsets.npy"))
    path = os.path.join(folder, "codes.bin")
    n_codes = int(offsets[done])
    codes = (np.memmap(path, dtype=CODE_DTYPE, mode="r", shape=(n_codes,)) if n_codes
             else np.zeros(0, dtype=CODE_DTYPE))
    return TokenShards(texts[:done], speakers[:done], splits[:done], codes, offsets[:done + 1])


def write_shards(folder: str, corpus, corpus_name: str, codec_digest: str,
                 encode: Callable[[int, int], list[list[int]]], chunk: int = 256,
                 log=print) -> TokenShards:
    """Encode ``corpus`` (a data/corpus_store.py Corpus) into a shard set in ``folder``,
    continuing an unfinished one made by the same codec. ``encode(start, stop)`` returns the
    codes of utterances start .. stop-1."""
    os.makedirs(folder, exist_ok=True)
    total = len(corpus)
    index = _read_index(folder)
    if index is not None and (index.get("codec") != codec_digest or index.get("corpus") != corpus_name):
        open_shards(folder, corpus_name, codec_digest)  # raises the one-line refusal
    if index is None:
        _save_atomic(os.path.join(folder, "meta.npz"), lambda f: np.savez(
            f, texts=np.array(corpus.texts), speakers=np.asarray(corpus.speakers),
            splits=np.asarray(corpus.splits)))
        offsets = np.zeros(1, dtype=np.int64)
        open(os.path.join(folder, "codes.bin"), "wb").close()
        index = {"version": SHARD_VERSION, "corpus": corpus_name, "codec": codec_digest,
                 "dtype": np.dtype(CODE_DTYPE).name, "total": total, "done": 0}
        _write_offsets(folder, offsets)
        _write_index(folder, index)
    else:
        offsets = np.load(os.path.join(folder, "offsets.npy"))[:index["done"] + 1]
        log(f"token shards: continuing at utterance {index['done']} of {total} ({folder})")
    path = os.path.join(folder, "codes.bin")
    with open(path, "r+b") as f:
        f.truncate(int(offsets[-1]) * np.dtype(CODE_DTYPE).itemsize)  # drop an unrecorded tail
    bar = tqdm(total=total, initial=index["done"], desc="tokenizing", unit="utt", leave=False)
    for start in range(index["done"], total, chunk):
        stop = min(start + chunk, total)
        rows = encode(start, stop)
        with open(path, "ab") as f:
            for row in rows:
                f.write(np.asarray(row, dtype=CODE_DTYPE).tobytes())
            f.flush()
            os.fsync(f.fileno())
        offsets = np.concatenate([offsets, offsets[-1] + np.cumsum([len(r) for r in rows])])
        _write_offsets(folder, offsets)
        index["done"] = stop
        _write_index(folder, index)
        bar.update(stop - start)
    bar.close()
    return _load(folder, total)


def remove_token_shards(folder: str) -> None:
    """Delete the shard sets in ``folder`` (stage 0's): its codec is about to change."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith("codes-") and os.path.isfile(os.path.join(path, "index.json")):
            shutil.rmtree(path)
