"""Chat-format training samples for the LLM, and packing them into rows.

Stage 1 of VITA-Audio (audio-text alignment) trains the LLM on three kinds of data
(REFERENCE.md "Four training stages"); each becomes a chat sample (vita_mini/vocab.py):

    ASR   system "transcribe"   user: BOA codes EOA            assistant: the text
    TTS   system "read aloud"   user: the text                 assistant: text interleaved with
                                                               its audio, ratio [1, 10, 4, 10]
    text  system "answer"       user: a question / "tell me about <name>"
                                                               assistant: the fact sentence(s)
    copy  system "repeat"       user: word salad               assistant: the same text

Copy samples exist because TTS answers repeat their input text (interleaved with the audio), and
a small LLM trained on template sentences learns to write *a* likely sentence rather than *the*
one it was given. Word salad (world.py) cannot be guessed, only copied.

Text questions come in two phrasings per relation. Both are trained for half of the people;
the other half keep their second phrasing for the test (``text_qa_test``), so text accuracy
measures whether the model answers a question it has not seen, about facts it has.
Text-only people (world.py) appear here, in text, and nowhere in speech.

``pack`` lays several samples end to end in fixed-length rows, with a document id per position;
the LLM's block-diagonal mask keeps packed samples apart, and padding is its own document.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from vita_mini.data.world import World
from vita_mini.vocab import (ASR_INSTRUCTION, COPY_INSTRUCTION, PAD, TEXT_INSTRUCTION, TTS_INSTRUCTION, Sample,
                             audio_ids, chat_tokens, interleave, text_ids, user_audio)

IGNORE = -100  # label of positions that carry no loss


def asr_sample(codes, text: str) -> Sample:
    return chat_tokens(ASR_INSTRUCTION, user_audio(codes), text_ids(text))


def tts_sample(codes, text: str, ratio) -> Sample:
    return chat_tokens(TTS_INSTRUCTION, text_ids(text), interleave(text_ids(text), audio_ids(codes), ratio))


def text_sample(question: str, answer: str) -> Sample:
    return chat_tokens(TEXT_INSTRUCTION, text_ids(question), text_ids(answer))


def copy_sample(text: str) -> Sample:
    return chat_tokens(COPY_INSTRUCTION, text_ids(text), text_ids(text))


def about_question(person: str) -> str:
    return f"tell me about {person}"


def text_qa_split(world: World, seed: int = 0):
    """(train pairs, test pairs) of (question, answer, short answer); see the module docstring."""
    people = sorted(world.people)
    random.Random(seed).shuffle(people)
    held_out = set(people[: len(people) // 2])
    train, test = [], []
    for fact in world.facts:
        for k, qa in enumerate(world.questions_about(fact.id)):
            pair = (qa.question, qa.answer, qa.short_answer)
            (test if k > 0 and fact.person in held_out else train).append(pair)
    for person in world.people:
        facts = " ".join(f.text for f in world.facts_about(person))
        train.append((about_question(person), facts, ""))
    return train, test


@dataclass
class Batch:
    tokens: torch.Tensor  # [R, L] input ids
    labels: torch.Tensor  # [R, L] next-token targets, IGNORE where no loss
    doc_ids: torch.Tensor  # [R, L] which packed sample each position belongs to

    def to(self, device) -> Batch:
        return Batch(self.tokens.to(device), self.labels.to(device), self.doc_ids.to(device))


def pack(samples: list[Sample], row_len: int) -> Batch:
    """First-fit samples into rows of ``row_len``; labels[i] = ids[i + 1] where that is a target."""
    rows: list[list[Sample]] = []
    for s in sorted(samples, key=len, reverse=True):
        if len(s) > row_len:
            raise ValueError(f"a sample of {len(s)} tokens does not fit llm.max_seq_len={row_len}")
        for row in rows:
            if sum(map(len, row)) + len(s) <= row_len:
                row.append(s)
                break
        else:
            rows.append([s])
    tokens = torch.full((len(rows), row_len), PAD, dtype=torch.long)
    labels = torch.full((len(rows), row_len), IGNORE, dtype=torch.long)
    doc_ids = torch.zeros((len(rows), row_len), dtype=torch.long)
    for r, row in enumerate(rows):
        pos = 0
        for d, s in enumerate(row):
            n = len(s)
            tokens[r, pos:pos + n] = torch.tensor(s.ids)
            targets = torch.tensor(s.ids[1:])
            is_target = torch.tensor(s.target[1:])
            labels[r, pos:pos + n - 1] = torch.where(is_target, targets, IGNORE)
            doc_ids[r, pos:pos + n] = d
            pos += n
        doc_ids[r, pos:] = len(row)  # padding: a document of its own
    return Batch(tokens, labels, doc_ids)


def mixed_order(kinds: dict[str, list], mix: dict[str, float], seed: int) -> list[tuple[str, int]]:
    """A list of (kind, index) whose kinds follow ``mix``; each kind's samples repeat as needed.

    Its length is the total number of samples, so an 'epoch' of the sampler sees each kind in
    proportion to its mix weight, whatever the sizes of the kinds."""
    total = sum(len(v) for v in kinds.values())
    weight = sum(mix[k] for k in kinds if kinds[k])
    order = []
    rng = random.Random(seed)
    for kind, items in kinds.items():
        if not items or mix[kind] <= 0:
            continue
        count = round(total * mix[kind] / weight)
        picks = [i % len(items) for i in range(count)]
        rng.shuffle(picks)
        order += [(kind, i) for i in picks]
    return order
