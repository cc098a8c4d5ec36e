"""Chat-format training samples for the LLM, and packing them into rows.

Stage 1 of VITA-Audio (audio-text alignment) trains the LLM on three kinds of data
(tutorials/paper.md §6); each becomes a chat sample (vita_mini/vocab.py):

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
from vita_mini.vocab import (ASR_INSTRUCTION, CHARSET, COPY_INSTRUCTION, IGNORE, N_BYTES, PAD, TEXT_INSTRUCTION,
                             TTS_INSTRUCTION, Sample, audio_ids, chat_tokens, interleave, text_ids, user_audio)


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
    noisy: torch.Tensor | None = None  # [R, L] bool: positions of samples flagged for noisy_inputs

    def to(self, device) -> Batch:
        noisy = None if self.noisy is None else self.noisy.to(device)
        return Batch(self.tokens.to(device), self.labels.to(device), self.doc_ids.to(device), noisy)


def pack(samples: list[Sample], row_len: int, noisy: list[bool] | None = None) -> Batch:
    """First-fit samples into rows of ``row_len``; labels[i] = ids[i + 1] where that is a target.

    ``noisy``: one flag per sample; ``Batch.noisy`` marks the positions of the flagged ones."""
    flags = noisy or [False] * len(samples)
    rows: list[list[int]] = []  # indices into samples
    for i in sorted(range(len(samples)), key=lambda i: len(samples[i]), reverse=True):
        if len(samples[i]) > row_len:
            raise ValueError(f"a sample of {len(samples[i])} tokens does not fit llm.max_seq_len={row_len}")
        for row in rows:
            if sum(len(samples[j]) for j in row) + len(samples[i]) <= row_len:
                row.append(i)
                break
        else:
            rows.append([i])
    tokens = torch.full((len(rows), row_len), PAD, dtype=torch.long)
    labels = torch.full((len(rows), row_len), IGNORE, dtype=torch.long)
    doc_ids = torch.zeros((len(rows), row_len), dtype=torch.long)
    is_noisy = torch.zeros((len(rows), row_len), dtype=torch.bool)
    for r, row in enumerate(rows):
        pos = 0
        for d, i in enumerate(row):
            s, n = samples[i], len(samples[i])
            tokens[r, pos:pos + n] = torch.tensor(s.ids)
            targets = torch.tensor(s.ids[1:])
            is_target = torch.tensor(s.target[1:])
            labels[r, pos:pos + n - 1] = torch.where(is_target, targets, IGNORE)
            doc_ids[r, pos:pos + n] = d
            is_noisy[r, pos:pos + n] = flags[i]
            pos += n
        doc_ids[r, pos:] = len(row)  # padding: a document of its own
    return Batch(tokens, labels, doc_ids, is_noisy)


def noisy_inputs(batch: Batch, share: float) -> torch.Tensor:
    """A copy of ``batch.tokens`` [R, L] in which ``share`` of the assistant's text tokens, as
    *inputs*, are replaced by random letters, in the samples flagged noisy (labels stay clean;
    draws from torch's generator).

    Teacher forcing lets a small LLM finish a word from its first letters without listening to
    the audio it transcribes: "carl comes to d..." -> "cairo". With some of its own previous
    letters unreliable, it must keep reading the user's turn: the "word dropout" of Bowman et
    al. (2016) for conditioned decoders. Stage 1 flags its ASR samples (``alignment_data.input_noise``).
    Assistant inputs are the positions that carry a label (vocab.py: the loss covers the answer)."""
    tokens = batch.tokens
    if share <= 0 or batch.noisy is None:
        return tokens
    is_text = (tokens >= 0) & (tokens < N_BYTES)
    hit = batch.noisy & (batch.labels != IGNORE) & is_text & (torch.rand(tokens.shape) < share)
    letters = torch.tensor(list(CHARSET.encode()), dtype=tokens.dtype)
    random_letters = letters[torch.randint(len(letters), tokens.shape)]
    return torch.where(hit, random_letters, tokens)


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


class SampleMix:
    """Training items drawn from several kinds of samples in given shares.

    ``samples`` {kind: [Sample]}; ``order``: the (kind, index) items of ``mixed_order``, which
    the training loop's sampler indexes; ``batch`` packs items into rows. Items of a kind in
    ``noisy_kinds`` are flagged for ``noisy_inputs``."""

    noisy_kinds: tuple[str, ...] = ()

    def __init__(self, samples: dict[str, list[Sample]], shares: dict[str, float], seed: int):
        self.samples = samples
        self.order = mixed_order(samples, shares, seed)

    def batch(self, indices: list[int], row_len: int) -> Batch:
        """Training items ``indices`` (positions in ``order``) packed into rows of ``row_len``."""
        items = [self.order[j] for j in indices]
        return pack([self.samples[kind][i] for kind, i in items], row_len,
                    noisy=[kind in self.noisy_kinds for kind, _ in items])
