"""The token space: one vocabulary for text, chat structure and audio.

VITA-Audio extends its LLM's vocabulary with special tokens and the audio tokenizer's codes
(tutorials/paper.md §2). vita-mini's layout, the one place these ids are defined:

    ids 0 .. 255                       text: the UTF-8 bytes of any string (no tokenizer to train)
    ids 256 .. 256 + len(SPECIALS) - 1 special tokens, in this order:
        <|pad|>               padding (never a training target)
        <|system|>            starts the system turn (the task instruction)
        <|user|>              starts the user turn
        <|assistant|>         starts the assistant turn
        <|end|>               ends a turn (the assistant's <|end|> is a training target)
        <|begin_of_audio|>    BOA: audio codes follow
        <|end_of_audio|>      EOA: back to text
        <|audio|>             placeholder in a prompt template, replaced by BOA codes EOA
    ids AUDIO_OFFSET .. AUDIO_OFFSET + codebook_size - 1   the codec's audio codes

A chat sample (``chat_tokens``) reads

    <|system|> instruction <|end|> <|user|> content <|end|> <|assistant|> answer <|end|>

and only the answer and its closing <|end|> carry loss. Answers that speak interleave text and
audio by a ratio list (``interleave``), exactly as tutorials/paper.md §4 describes.
"""

from __future__ import annotations

from dataclasses import dataclass

N_BYTES = 256
# The toy alphabet: the only characters the world writes, the synthesizer speaks and the CTC
# heads (codec and judge) transcribe. Text tokens are still bytes, so the LLM could write others.
CHARSET = " abcdefghijklmnopqrstuvwxyz"
IGNORE = -100  # label of a position that carries no loss (prompts, padding)
SPECIALS = ["<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
            "<|begin_of_audio|>", "<|end_of_audio|>", "<|audio|>"]
PAD, SYSTEM, USER, ASSISTANT, END, BOA, EOA, AUDIO_PLACEHOLDER = range(N_BYTES, N_BYTES + len(SPECIALS))
AUDIO_OFFSET = N_BYTES + len(SPECIALS)  # id of audio code 0

# the task instructions (system turn) of each kind of sample
ASR_INSTRUCTION = "transcribe"  # user speaks, assistant writes the text
TTS_INSTRUCTION = "read aloud"  # user writes text, assistant speaks it (interleaved text + audio)
TEXT_INSTRUCTION = "answer"  # user writes, assistant writes
COPY_INSTRUCTION = "repeat"  # user writes, assistant writes the same text back
SPOKEN_ANSWER_INSTRUCTION = "answer aloud"  # assistant answers in interleaved text + audio

# The training interleaves of VITA-Audio's models (tutorials/paper.md §4-5): a model is trained on
# one, and the inference mode of the same name lets the MCTP modules write exactly its audio chunks.
BOOST_RATIO = (1, 10, 4, 10)  # the default: the Boost model (and Turbo runs on it)
BALANCE_RATIO = (1, 4, 3, 8, 4, 10)  # the Balance model
INTERLEAVES = {"boost": BOOST_RATIO, "balance": BALANCE_RATIO}


def vocab_size(codebook_size: int) -> int:
    return AUDIO_OFFSET + codebook_size


def text_ids(text: str) -> list[int]:
    """Text as UTF-8 byte ids."""
    return list(text.encode("utf-8"))


def audio_ids(codes) -> list[int]:
    """Codec codes (0..K-1) as token ids."""
    return [AUDIO_OFFSET + int(c) for c in codes]


def is_audio(token: int) -> bool:
    return token >= AUDIO_OFFSET


def is_text(token: int) -> bool:
    return 0 <= token < N_BYTES


def decode_text(ids) -> str:
    """The text bytes among ``ids`` as a string (specials and audio skipped; bad UTF-8 replaced)."""
    return bytes(t for t in ids if is_text(t)).decode("utf-8", errors="replace")


def decode_audio(ids) -> list[int]:
    """The audio codes among ``ids`` (0..K-1), in order."""
    return [t - AUDIO_OFFSET for t in ids if is_audio(t)]


def token_name(token: int) -> str:
    """Human-readable form of one id, for printing sequences."""
    if is_text(token):
        return bytes([token]).decode("utf-8", errors="replace")
    if is_audio(token):
        return f"<a{token - AUDIO_OFFSET}>"
    return SPECIALS[token - N_BYTES]


def check_ratio(ratio) -> tuple[int, ...]:
    """Validate a ratio list [t1, a1, t2, a2, ...]: even length, t >= 1, a >= 3 (>= 1 code)."""
    ratio = tuple(int(x) for x in ratio)
    if len(ratio) < 2 or len(ratio) % 2:
        raise ValueError(f"ratio list {list(ratio)} must have an even number of entries [t1, a1, ...]")
    if any(t < 1 for t in ratio[0::2]) or any(a < 3 for a in ratio[1::2]):
        raise ValueError(f"ratio list {list(ratio)}: text counts must be >= 1 and audio counts >= 3 "
                         f"(each audio count includes the begin and end markers)")
    return ratio


def interleave(text: list[int], audio: list[int], ratio=BOOST_RATIO) -> list[int]:
    """Interleave text ids with audio ids by the ratio list [t1, a1, t2, a2, ...].

    Chunk i is t_i text tokens, then BOA, (a_i - 2) audio ids, EOA; the last (t, a) pair repeats.
    The chunk in which the text or the audio runs out is the final one: it takes all remaining
    text, then BOA, all remaining audio, EOA. Empty audio still gets its BOA EOA.
    """
    ratio = check_ratio(ratio)
    out, ti, ai, pair = [], 0, 0, 0
    while True:
        t, a = ratio[2 * pair], ratio[2 * pair + 1]
        if ti + t >= len(text) or ai + (a - 2) >= len(audio):  # the final chunk
            return out + text[ti:] + [BOA] + audio[ai:] + [EOA]
        out += text[ti:ti + t] + [BOA] + audio[ai:ai + a - 2] + [EOA]
        ti, ai = ti + t, ai + a - 2
        pair = min(pair + 1, len(ratio) // 2 - 1)


@dataclass
class Sample:
    """One chat sample: token ids and, for each position, whether it is a training target."""

    ids: list[int]
    target: list[bool]  # target[i]: predict ids[i] from ids[:i] (loss on it)

    def __len__(self) -> int:
        return len(self.ids)


def user_audio(codes) -> list[int]:
    """Spoken user content: BOA codes EOA."""
    return [BOA] + audio_ids(codes) + [EOA]


def prompt_tokens(instruction: str, user: list[int]) -> list[int]:
    """Everything up to and including <|assistant|>: what generation starts from."""
    return ([SYSTEM] + text_ids(instruction) + [END] + [USER] + user + [END] + [ASSISTANT])


def chat_tokens(instruction: str, user: list[int], answer: list[int]) -> Sample:
    """A full sample: prompt, then the answer and <|end|>, which are the only targets."""
    prompt = prompt_tokens(instruction, user)
    ids = prompt + answer + [END]
    return Sample(ids, [False] * len(prompt) + [True] * (len(answer) + 1))


def expand_audio_placeholders(template: str, clips: list) -> list[int]:
    """'<|audio|> what is this' with one code list -> BOA codes EOA + text ids."""
    parts = template.split(SPECIALS[AUDIO_PLACEHOLDER - N_BYTES])
    if len(parts) - 1 != len(clips):
        raise ValueError(f"template has {len(parts) - 1} audio placeholders but {len(clips)} clips")
    ids = text_ids(parts[0])
    for clip, text in zip(clips, parts[1:]):
        ids += user_audio(clip) + text_ids(text)
    return ids
