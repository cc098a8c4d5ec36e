"""A spoken corpus in memory and on disk: utterances laid end to end, with their texts, speakers
and splits, cached as one ``.npz`` file.

Every corpus of the project has this one shape, whatever made it: the toy world's synthesizer
(data/corpus.py), the spoken questions of stage 4 (data/spoken_qa.py) or a published recording
corpus (data/real_corpora.py). It lives in its own file so that the readers of real corpora and
the toy corpus can both build one, and ``corpus.load_corpus`` can choose between them, without
an import cycle.

The whole corpus is held in memory as int16 (16 kHz: about 115 MB an hour). That is right for
the toy world and for a few hours of real speech; for hundreds of hours (LibriSpeech's 960) the
audio would have to stay on disk, as a memory-mapped ``.npy`` of the samples beside the offsets
(``np.load(..., mmap_mode="r")``, which a ``.npz`` does not allow), read an utterance at a time.
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


def save_corpus(corpus: Corpus, path: str) -> None:
    """Write ``corpus`` to ``path`` atomically (a temporary file renamed over it)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    names = {} if corpus.speaker_names is None else {"speaker_names": np.array(corpus.speaker_names)}
    np.savez(tmp, texts=np.array(corpus.texts), speakers=corpus.speakers, splits=corpus.splits,
             audio=corpus.audio, offsets=corpus.offsets, **names)
    os.replace(tmp, path)


def load_cached(path: str, build, what: str = "the speech corpus", log=print) -> Corpus:
    """The corpus cached at ``path``; built by ``build()`` and saved there first if missing."""
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            names = [str(n) for n in f["speaker_names"]] if "speaker_names" in f.files else None
            return Corpus([str(t) for t in f["texts"]], f["speakers"], f["splits"].astype(str),
                          f["audio"], f["offsets"], names)
    log(f"building {what} (not cached yet): {path}")
    corpus = build()
    save_corpus(corpus, path)
    return corpus
