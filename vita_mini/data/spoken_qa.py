"""Spoken question answering: the data of stage 4 (tutorials/paper.md §6: stage 4, supervised
fine-tuning on speech QA) and of its evaluation (tutorials/paper.md §7: spoken QA speech-to-text and
speech-to-speech).

One sample (vocab.py ``chat_tokens``):

    system "answer aloud"   user: BOA question codes EOA   assistant: the fact sentence, its text
                                                           interleaved with its audio in the
                                                           assistant's voice, by cfg.alignment_data.ratio

"where does ana live", spoken by a user, is answered "ana lives in rome" in text and speech.
Questions come from the toy world (world.py ``qa``, two phrasings per fact). Splits:

    train        every question about a spoken person, both phrasings, each spoken by
                 ``spoken_qa.train_voices`` voices (and, with ``spoken_qa.text_questions``, also written as
                 text, so that generate.py can take a typed question)
    test_seen    ``spoken_qa.n_test_seen`` of those questions, each in a voice that never spoke it in
                 training: the facts were heard, this recording was not
    test_text    the first phrasing of every question about a text-only person, spoken. Those
                 facts appear only in stage 1's *text* data; answering them by voice measures
                 cross-modal transfer (world.py explains the text-only people)

The audio lives in its own small cached corpus (data/corpus.py's mechanism, split names
"question", "answer", "test_seen", "test_text"), keyed by the world, the synthesizer and the
fields of ``cfg.spoken_qa`` that shape it, so stage 0's corpus does not change.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from vita_mini.config import Config
from vita_mini.data.corpus import Corpus, cache_path, check_synth, load_cached, make_world, speak_all
from vita_mini.data.world import QA, World
from vita_mini.vocab import SPOKEN_ANSWER_INSTRUCTION, Sample, audio_ids, chat_tokens, interleave, text_ids, user_audio


def question_voices(question: str, n_speakers: int, n_train: int) -> tuple[list[int], int]:
    """(the voices that speak ``question`` in training, the voice that speaks it at test time):
    consecutive voices from a stable hash of the text, so the test voice is never a training one."""
    start = zlib.crc32(question.encode()) % n_speakers
    voices = [(start + i) % n_speakers for i in range(n_train + 1)]
    return voices[:-1], voices[-1]


def seen_test_questions(world: World, n: int, seed: int) -> list[QA]:
    """``n`` questions about spoken people (both phrasings may appear), drawn reproducibly."""
    spoken = [q for q in world.qa if q.spoken]
    return random.Random(seed).sample(spoken, min(n, len(spoken)))


def text_only_test_questions(world: World) -> list[QA]:
    """The first phrasing of every question about a text-only person."""
    return [world.questions_about(f.id)[0] for f in world.facts if not f.spoken]


def build_spoken_qa_corpus(cfg: Config, log=print) -> Corpus:
    check_synth(cfg)
    world = make_world(cfg)
    n, k = cfg.synth.n_speakers, cfg.spoken_qa.train_voices
    rows = []  # (text, voice, split)
    for qa in world.qa:
        if qa.spoken:
            rows += [(qa.question, v, "question") for v in question_voices(qa.question, n, k)[0]]
    rows += [(f.text, cfg.synth.assistant_voice, "answer") for f in world.facts if f.spoken]
    rows += [(qa.question, question_voices(qa.question, n, k)[1], "test_seen")
             for qa in seen_test_questions(world, cfg.spoken_qa.n_test_seen, cfg.world.seed)]
    rows += [(qa.question, question_voices(qa.question, n, k)[1], "test_text")
             for qa in text_only_test_questions(world)]
    texts, voices, splits = (list(x) for x in zip(*rows))
    return speak_all(texts, voices, splits, cfg, log)


def spoken_qa_corpus_path(cfg: Config) -> str:
    # "sqa" was this config section's old name; kept in the key so cached corpora keep their names
    return cache_path(cfg, "spoken-qa", {"sqa": {"train_voices": cfg.spoken_qa.train_voices,
                                                 "n_test_seen": cfg.spoken_qa.n_test_seen}})


def load_spoken_qa_corpus(cfg: Config, log=print) -> Corpus:
    """The cached spoken-QA corpus of this config, synthesized first if missing."""
    return load_cached(spoken_qa_corpus_path(cfg), lambda: build_spoken_qa_corpus(cfg, log),
                       "the spoken-QA corpus", log)


def spoken_answer_sample(user: list[int], answer: str, answer_codes: list[int], ratio) -> Sample:
    """One stage-4 sample: the answer's text interleaved with its audio; only it carries loss."""
    return chat_tokens(SPOKEN_ANSWER_INSTRUCTION, user,
                       interleave(text_ids(answer), audio_ids(answer_codes), ratio))


@dataclass
class SpokenQuestion:
    """A test question: what the user turn holds, and how to score the answer."""

    question: str
    short_answer: str  # right if this is a word of the answer
    spoken_fact: bool  # False: the fact was only ever seen as text
    user: list[int]  # the user turn: BOA codes EOA
    answer_codes: list[int]  # the recorded answer's codes ([] for a text-only fact: never spoken)


def answer_is_right(short_answer: str, answer: str) -> bool:
    """The paper's spoken-QA criterion, for one-word answers: the answer contains it as a word."""
    return short_answer in answer.split()


class SpokenQAData:
    """Stage 4's spoken-QA samples and test questions, from the corpus and its 25 Hz codes."""

    def __init__(self, cfg: Config, corpus: Corpus, codes: list[list[int]]):
        world = make_world(cfg)
        by_question = {qa.question: qa for qa in world.qa}
        answer_codes = {corpus.texts[u]: codes[u] for u in corpus.indices("answer")}
        ratio = cfg.alignment_data.ratio

        def sample(qa: QA, user: list[int]) -> Sample:
            return spoken_answer_sample(user, qa.answer, answer_codes[qa.answer], ratio)

        self.train = [sample(by_question[corpus.texts[u]], user_audio(codes[u]))
                      for u in corpus.indices("question")]
        if cfg.spoken_qa.text_questions:
            self.train += [sample(qa, text_ids(qa.question)) for qa in world.qa if qa.spoken]

        def questions(split: str) -> list[SpokenQuestion]:
            out = []
            for u in corpus.indices(split):
                qa = by_question[corpus.texts[u]]
                out.append(SpokenQuestion(qa.question, qa.short_answer, qa.spoken, user_audio(codes[u]),
                                          answer_codes.get(qa.answer, [])))
            return out

        self.test_seen, self.test_text = questions("test_seen"), questions("test_text")
        # the seen test questions as full samples (their answers were heard): teacher-forced checks
        self.test_seen_samples = [sample(by_question[q.question], q.user) for q in self.test_seen]
