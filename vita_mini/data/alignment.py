"""The audio-text alignment samples of stage 1, which stages 2 and 3 train the MCTP modules on
too, in other shares (tutorials/paper.md §6).

From the speech corpus and its codes (vita_mini/codes.py) and the toy world:

    asr    every training utterance, any voice: speech in, its text out
    tts    every training utterance in the assistant's voice: text in, the text interleaved
           with its audio out (``alignment_data.ratio``); the model answers in one voice
    text   questions and fact sentences about the world (data/samples.py ``text_qa_split``)
    copy   word salad in, the same text out (only if its share is above zero)

Validation: the val utterances as ASR and TTS samples (TTS: the assistant's voice only). Test:
the test utterances' codes and texts (ASR and TTS reports) and the held-out text questions.

A real corpus (``corpus.kind`` other than toy, data/real_corpora.py) has no assistant's voice,
and its speakers' voices are what the decoder renders, so every training utterance is a TTS
sample too (and every val utterance a TTS val sample). The text share stays the toy world's
questions: the LLM still learns a world from text, while it learns to hear and speak from the
real speech. An utterance whose ASR or TTS sample does not fit ``llm.max_seq_len`` (long
recordings, long transcripts) is left out of that kind and counted in ``too_long``.
"""

from __future__ import annotations

import random

from vita_mini.config import Config
from vita_mini.data.corpus import Corpus, make_world
from vita_mini.data.samples import (SampleMix, asr_sample, copy_sample, text_qa_split, text_sample,
                                    tts_sample)
from vita_mini.data.world import word_salad


class AlignmentData(SampleMix):
    """Stage 1's samples, mixed by ``mix`` (a config section with the shares mix_asr, mix_tts,
    mix_text, mix_copy: ``cfg.alignment_data`` in stage 1, ``cfg.mctp_data`` in stages 2-3)."""

    noisy_kinds = ("asr",)  # stage 1 replaces some of their answers' input letters (noisy_inputs)

    def __init__(self, cfg: Config, corpus: Corpus, codes: list[list[int]], mix=None):
        world = make_world(cfg)
        data = cfg.alignment_data
        ratio = data.ratio
        split = {s: corpus.indices(s) for s in ("train", "val", "test")}
        text_train, self.text_test = text_qa_split(world, cfg.world.seed)
        real = cfg.corpus.kind != "toy"
        if real:  # every voice (module docstring)
            tts_ids = {s: split[s] for s in ("train", "val")}
        else:  # the model answers in one voice: TTS targets are its utterances
            tts_ids = {s: [u for u in split[s] if corpus.speakers[u] == cfg.synth.assistant_voice]
                       for s in ("train", "val")}
        fits = _LengthFilter(cfg.llm.max_seq_len if real else None)
        samples = {
            "asr": fits([asr_sample(codes[u], corpus.texts[u]) for u in split["train"]]),
            "tts": fits([tts_sample(codes[u], corpus.texts[u], ratio) for u in tts_ids["train"]]),
            "text": [text_sample(q, a) for q, a, _ in text_train],
            "copy": [copy_sample(t) for t in word_salad(random.Random(cfg.seed), world.speech_sentences["train"],
                                                         data.n_copy, cfg.world.max_chars)]
            if data.mix_copy > 0 else [],
        }
        self.val_samples = fits([asr_sample(codes[u], corpus.texts[u]) for u in split["val"]]
                                + [tts_sample(codes[u], corpus.texts[u], ratio) for u in tts_ids["val"]])
        mix = mix or data
        super().__init__(samples, {"asr": mix.mix_asr, "tts": mix.mix_tts, "text": mix.mix_text,
                                   "copy": mix.mix_copy}, cfg.seed)
        test = [u for u in split["test"] if fits.fits(asr_sample(codes[u], corpus.texts[u]))]
        self.test_codes = [codes[u] for u in test]
        self.test_texts = [corpus.texts[u] for u in test]
        self.too_long = fits.dropped + len(split["test"]) - len(test)  # left out (real corpora only)


class _LengthFilter:
    """``fits(samples)``: those no longer than ``row_len`` tokens (all of them if None), counting
    the others in ``dropped``."""

    def __init__(self, row_len: int | None):
        self.row_len, self.dropped = row_len, 0

    def fits(self, sample) -> bool:
        return self.row_len is None or len(sample) <= self.row_len

    def __call__(self, samples: list) -> list:
        kept = [s for s in samples if self.fits(s)]
        self.dropped += len(samples) - len(kept)
        return kept
