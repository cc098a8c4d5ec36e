"""The speech corpus: every speech sentence of the toy world, spoken once, cached on disk; or,
with ``corpus.kind`` other than ``toy``, a published corpus read from its folder
(data/real_corpora.py). ``load_corpus`` and ``corpus_path`` choose between the two.

``load_corpus(cfg)`` builds the world, speaks each sentence of the train/val/test speech splits
with one of the synthesizer's voices (chosen by a stable hash, see ``voice_of``), and stores
the result under ``cfg.cache_dir`` as one ``.npz`` file (data/corpus_store.py: int16 audio laid
end to end, plus offsets, texts, speakers and splits). The file name carries a hash of everything
that shapes the audio, so changing the world or the synthesizer builds a new corpus and never
reuses a stale one. Synthesis runs in parallel on all cores and the file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

import numpy as np

from vita_mini.config import Config
from vita_mini.data.corpus_store import SPLITS, Corpus, load_cached
from vita_mini.data.real_corpora import load_real_corpus, real_corpus_path
from vita_mini.data.synth import synthesize
from vita_mini.data.world import World, build_world
from vita_mini.errors import VitaError

CORPUS_VERSION = 1  # bump when the synthesizer's sound changes


def make_world(cfg: Config) -> World:
    w = cfg.world
    return build_world(seed=w.seed, n_people=w.n_people, n_general_sentences=w.n_general_sentences,
                       text_only_share=w.text_only_share, max_chars=w.max_chars, n_val=w.n_val,
                       n_test=w.n_test, salad_share=w.salad_share, names_heard=w.names_heard)


def voice_of(text: str, split: str, cfg: Config) -> int:
    """Which voice speaks a sentence: a stable hash of the text picks it.

    Like a real corpus mix (a large single-speaker set for TTS beside a many-speaker set for ASR),
    ``synth.assistant_share`` of the train and val sentences are spoken by the assistant's voice,
    the one the model will answer in, and the rest by the other voices in equal shares. The test
    split has every voice in equal shares, so test ASR is not tilted towards the assistant."""
    h = zlib.crc32(text.encode())
    n, assistant = cfg.synth.n_speakers, cfg.synth.assistant_voice
    if split == "test" or n == 1:
        return h % n
    if (h % 1000) / 1000 < cfg.synth.assistant_share:
        return assistant
    others = [v for v in range(n) if v != assistant]
    return others[(h // 1000) % len(others)]


def cache_path(cfg: Config, kind: str = "corpus", extra: dict | None = None) -> str:
    """Where a synthesized corpus of ``kind`` lives: named by a hash of the world and synthesizer
    config (and of ``extra``, whatever else shapes that corpus)."""
    key = json.dumps({"world": asdict(cfg.world), "synth": asdict(cfg.synth),
                      "version": CORPUS_VERSION, **(extra or {})}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return os.path.join(cfg.cache_dir, f"{kind}-{cfg.preset}-{digest}.npz")


def corpus_path(cfg: Config) -> str:
    """Where the corpus of this config is cached (a real corpus's folder is scanned to know)."""
    if cfg.corpus.kind != "toy":
        return real_corpus_path(cfg)
    return cache_path(cfg, "corpus")


def _speak(job: tuple) -> np.ndarray:
    return speak(*job)


def speak(text: str, speaker: int, synth: dict) -> np.ndarray:
    """``text`` in voice ``speaker`` as int16 audio, by the backend of ``asdict(cfg.synth)``."""
    if synth["backend"] == "espeak":
        from vita_mini.data.espeak import synthesize_espeak
        wav = synthesize_espeak(text, speaker)
    else:
        wav = synthesize(text, speaker, char_seconds=synth["char_seconds"],
                         lead_seconds=synth["lead_seconds"], tail_seconds=synth["tail_seconds"],
                         snr_db=synth["snr_db"]).wav
    return np.round(wav * 32767).astype(np.int16)


def check_synth(cfg: Config) -> None:
    """The chosen synthesizer can run on this machine (the config itself was checked by
    config_checks.py): espeak needs espeak-ng on PATH."""
    if cfg.synth.backend == "espeak":
        from vita_mini.data.espeak import espeak_available
        if not espeak_available():
            raise VitaError("synth.backend=espeak needs espeak-ng on PATH (apt-get install espeak-ng)")


def build_corpus(cfg: Config, log=print) -> Corpus:
    check_synth(cfg)
    world = make_world(cfg)
    texts, speakers, splits = [], [], []
    for split in SPLITS:
        for text in world.speech_sentences[split]:
            voices = [voice_of(text, split, cfg)]
            if cfg.synth.assistant_copies and split != "test" and voices[0] != cfg.synth.assistant_voice:
                voices.append(cfg.synth.assistant_voice)  # a second take, in the assistant's voice
            for voice in voices:
                texts.append(text)
                speakers.append(voice)
                splits.append(split)
    return speak_all(texts, speakers, splits, cfg, log)


def speak_all(texts: list[str], speakers: list[int], splits: list[str], cfg: Config, log=print) -> Corpus:
    """Speak ``texts[u]`` in voice ``speakers[u]``, in parallel on all cores: a Corpus."""
    jobs = [(t, s, asdict(cfg.synth)) for t, s in zip(texts, speakers)]
    start = time.perf_counter()
    workers = min(os.cpu_count() or 1, 8)
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers) as pool:
            wavs = list(pool.map(_speak, jobs, chunksize=32))
    else:
        wavs = [_speak(j) for j in jobs]
    corpus = Corpus.from_wavs(texts, speakers, splits, wavs)
    seconds = time.perf_counter() - start
    log(f"synthesized {len(texts)} utterances ({corpus.hours() * 60:.1f} min of audio) "
        f"in {seconds:.1f} s on {workers} worker(s)")
    return corpus


def load_corpus(cfg: Config, log=print) -> Corpus:
    """The cached corpus for this config, synthesized (or, for a real corpus, read from its
    folder) first if it is not on disk yet."""
    if cfg.corpus.kind != "toy":
        return load_real_corpus(cfg, log)
    return load_cached(corpus_path(cfg), lambda: build_corpus(cfg, log), log=log)
