"""A spoken corpus in memory and on disk: utterances laid end to end, with their texts, speakers
and splits, cached as one ``.npz`` file.

Every corpus of the project has this one shape, whatever made it: the toy world's synthesizer
(data/corpus.py), the spoken questions of stage 4 (data/spoken_qa.py) or a published recording
corpus (data/real_corpora.py). It lives in its own file so that the readers of real corpora and
the toy corpus can both build one, and ``corpus.load_corpus`` can choose between them, without
an import cycle.

On disk a corpus is two files: ``<name>.npz`` (texts, speakers, splits, offsets) and
``<name>.audio.npy``, the int16 samples (16 kHz: about 115 MB an hour), which a loaded corpus
reads memory-mapped (``np.load(..., mmap_mode="r")``, which a ``.npz`` does not allow): an
utterance is read from disk when it is asked for, so hours of speech need not fit in memory.
(A cache written before the split, with the audio inside the ``.npz``, still loads, in memory.)
Building a corpus still holds its audio in memory once, while it is read or synthesized.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vita_mini.data.synth import SAMPLE_RATE

SPLITS = ("train", "val", "test")


@dataclass
class Corpus:
    texts: list[str]
    speakers: np.ndarray  # [U] int
    splits: np.ndarray  # [U] str: train / val / test
    audio: np.ndarray  # [sum N_u] int16, utterances laid end to end
    offsets: np.ndarray  # [U + 1] int64, utterance u is audio[offsets[u]:offsets[u + 1]]
    speaker_names: list[str] | None = None  # [S]: speaker s's name in the corpus (real corpora)

    def __len__(self) -> int:
        return len(self.texts)

    def wav(self, u: int) -> np.ndarray:
        """Utterance u as float32 in [-1, 1]."""
        return self.audio[self.offsets[u]:self.offsets[u + 1]].astype(np.float32) / 32767.0

    def indices(self, split: str) -> list[int]:
        return [u for u in range(len(self)) if self.splits[u] == split]

    def hours(self, split: str | None = None) -> float:
        us = range(len(self)) if split is None else self.indices(split)
        return sum(int(self.offsets[u + 1] - self.offsets[u]) for u in us) / SAMPLE_RATE / 3600

    @classmethod
    def from_wavs(cls, texts: list[str], speakers, splits, wavs: list[np.ndarray],
                  speaker_names: list[str] | None = None) -> Corpus:
        """Utterance u is ``wavs[u]`` (int16 [N_u]), spoken by ``speakers[u]``, in ``splits[u]``."""
        offsets = np.concatenate([[0], np.cumsum([len(w) for w in wavs])]).astype(np.int64)
        audio = np.concatenate(wavs) if wavs else np.zeros(0, dtype=np.int16)
        return cls(texts, np.asarray(speakers), np.asarray(splits), audio, offsets, speaker_names)

    def subset(self, utterances: list[int]) -> Corpus:
        """A corpus of just these utterances, in this order (speaker numbers unchanged)."""
        return Corpus.from_wavs([self.texts[u] for u in utterances], self.speakers[utterances],
                                self.splits[utterances],
                                [self.audio[self.offsets[u]:self.offsets[u + 1]] for u in utterances],
                                self.speaker_names)


def audio_path(path: str) -> str:
    """Where the samples of the corpus cached at ``path`` (``<name>.npz``) are kept."""
    return path[:-len(".npz")] + ".audio.npy" if path.endswith(".npz") else path + ".audio.npy"


def _save_atomic(path: str, save) -> None:
    """``save(f)`` into a temporary file in the same folder, then renamed onto ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        save(f)
    os.replace(tmp, path)


def save_corpus(corpus: Corpus, path: str) -> None:
    """Write ``corpus`` to ``path`` and its samples beside it, each atomically (the samples first:
    a corpus file on disk always has its samples)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    names = {} if corpus.speaker_names is None else {"speaker_names": np.array(corpus.speaker_names)}
    _save_atomic(audio_path(path), lambda f: np.save(f, np.asarray(corpus.audio, dtype=np.int16)))
    _save_atomic(path, lambda f: np.savez(f, texts=np.array(corpus.texts), speakers=corpus.speakers,
                                          splits=corpus.splits, offsets=corpus.offsets, **names))


def load_cached(path: str, build, what: str = "the speech corpus", log=print) -> Corpus:
    """The corpus cached at ``path`` (its samples memory-mapped); built by ``build()`` and saved
    there first if missing."""
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            names = [str(n) for n in f["speaker_names"]] if "speaker_names" in f.files else None
            if "audio" in f.files:  # written before the samples had a file of their own
                audio = f["audio"]
            elif os.path.exists(audio_path(path)):
                audio = np.load(audio_path(path), mmap_mode="r")
            else:
                audio = None
            if audio is not None:
                return Corpus([str(t) for t in f["texts"]], f["speakers"], f["splits"].astype(str),
                              audio, f["offsets"], names)
    log(f"building {what} (not cached yet): {path}")
    corpus = build()
    save_corpus(corpus, path)
    return corpus
