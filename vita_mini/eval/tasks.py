"""Task metrics of the LLM: ASR CER, TTS judge CER, text question accuracy, spoken QA.

As in the paper (tutorials/paper.md §7): ASR is scored by the error rate of the transcript; TTS by
transcribing the generated speech with a separate recognizer (Whisper there, our judge here)
and scoring it against the input text; question answering by whether the answer is right;
spoken QA both from the answer's text (speech-to-text) and from its audio, transcribed by the
judge (speech-to-speech).
All decoding here is greedy; speech can also be generated with the MCTP modules by a schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from vita_mini.audio.codec import AudioCodec
from vita_mini.audio.judge import JudgeASR
from vita_mini.data.spoken_qa import SpokenQuestion, answer_is_right
from vita_mini.eval.metrics import cer
from vita_mini.infer.decode import greedy_generate
from vita_mini.infer.engine import Engine, Token
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.vocab import (ASR_INSTRUCTION, EOA, SPOKEN_ANSWER_INSTRUCTION, TEXT_INSTRUCTION,
                             TTS_INSTRUCTION, decode_audio, decode_text, prompt_tokens, text_ids,
                             user_audio)


def llm_transcribe(model: LLM, codes) -> str:
    """ASR by the LLM: the text it writes for audio ``codes``, greedy. (The judge ASR has its
    own ``JudgeASR.transcribe``, from a waveform.)"""
    prompt = prompt_tokens(ASR_INSTRUCTION, user_audio(codes))
    return decode_text(greedy_generate(model, prompt, max_new_tokens=2 * len(codes) + 8))


def read_aloud(model: LLM, text: str, max_new_tokens: int | None = None, mctp: MCTP | None = None,
               schedule="vanilla") -> list[int]:
    """TTS with the LLM (and its MCTP modules, by ``schedule``): the generated answer ids
    (interleaved text and audio)."""
    prompt = prompt_tokens(TTS_INSTRUCTION, text_ids(text))
    max_new_tokens = max_new_tokens or model.cfg.max_seq_len - len(prompt)
    if mctp is None:
        return greedy_generate(model, prompt, max_new_tokens)
    return Engine(model, mctp).generate_ids(prompt, max_new_tokens, schedule)


def answer_text(model: LLM, question: str) -> str:
    """The LLM's written answer to a written ``question``, greedy."""
    prompt = prompt_tokens(TEXT_INSTRUCTION, text_ids(question))
    return decode_text(greedy_generate(model, prompt, max_new_tokens=120))


def asr_cer(model: LLM, codes_list, texts: list[str]) -> tuple[float, list[str]]:
    hyps = [llm_transcribe(model, codes).strip() for codes in codes_list]
    return cer(texts, hyps), hyps


def hear(codec: AudioCodec, judge: JudgeASR, ids: list[int], voice: int | torch.Tensor = 0) -> str:
    """What the judge hears in the audio of the generated ``ids``, decoded in ``voice`` ("" without audio)."""
    codes = decode_audio(ids)
    return judge.transcribe(codec.decode(torch.tensor(codes), voice)).strip() if codes else ""


def tts_judge_cer(model: LLM, codec: AudioCodec, judge: JudgeASR, texts: list[str], voice: int = 0,
                  mctp: MCTP | None = None, schedule="vanilla") -> dict:
    """Generate speech for each text, decode it to audio in ``voice``, let the judge transcribe it.

    Returns ``judge_cer`` (what the judge hears against the input text: the paper's TTS metric)
    and its two parts: ``copy_cer``, the text the model wrote in its interleaved answer against
    the input (did it read the right sentence?), and ``self_cer``, what the judge hears against
    that written text (does the audio say what the model wrote?); plus ``heard`` and ``written``."""
    heard, written = [], []
    for text in texts:
        answer = read_aloud(model, text, mctp=mctp, schedule=schedule)
        written.append(decode_text(answer).strip())
        heard.append(hear(codec, judge, answer, voice))
    return {"judge_cer": cer(texts, heard), "copy_cer": cer(texts, written),
            "self_cer": cer(written, heard), "heard": heard, "written": written}


def text_qa_accuracy(model: LLM, pairs) -> tuple[float, list[str]]:
    """pairs: (question, reference answer, short answer). Right = the exact fact sentence."""
    answers = [answer_text(model, q).strip() for q, _, _ in pairs]
    right = [a == ref for a, (_, ref, _) in zip(answers, pairs)]
    return sum(right) / max(1, len(right)), answers


@dataclass
class SpokenAnswer:
    """One generated spoken answer: what it wrote, what the judge hears, and how fast it came."""

    text: str  # the text the model wrote (speech-to-text)
    heard: str  # the judge's transcript of its audio (speech-to-speech); "" without audio
    n_tokens: int
    seconds: float  # prompt and every generated token
    first_audio: float | None  # seconds until the first audio chunk's EOA; None without audio


def timed_generation(engine: Engine, prompt: list[int], max_new_tokens: int, schedule="vanilla",
                     min_confidence: float | tuple[float, float] = 0.0) -> tuple[list[Token], float, float | None]:
    """Generate greedily -> (the tokens, seconds for all of them, seconds until the first audio
    chunk's EOA or None without audio)."""
    tokens, first = [], None
    start = time.perf_counter()
    for token in engine.generate(prompt, max_new_tokens, schedule, min_confidence=min_confidence):
        tokens.append(token)
        if token.id == EOA and first is None:
            first = time.perf_counter() - start
    return tokens, time.perf_counter() - start, first


def spoken_answer(engine: Engine, codec: AudioCodec, judge: JudgeASR, user: list[int], voice: int = 0,
                  schedule="vanilla") -> SpokenAnswer:
    """Answer ``user`` (a question turn) aloud by ``schedule``, greedy; time it, then decode its
    audio in ``voice`` and let the judge transcribe it (after the clock stops)."""
    prompt = prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, user)
    tokens, seconds, first = timed_generation(engine, prompt, engine.llm.cfg.max_seq_len, schedule)
    ids = [t.id for t in tokens]
    return SpokenAnswer(decode_text(ids).strip(), hear(codec, judge, ids, voice), len(ids), seconds, first)


def spoken_qa_accuracy(engine: Engine, codec: AudioCodec, judge: JudgeASR, questions: list[SpokenQuestion],
                       voice: int = 0, schedule="vanilla") -> dict:
    """Speech-to-text accuracy (the short answer is a word of the written answer) and
    speech-to-speech accuracy (... of what the judge hears), plus every ``SpokenAnswer``."""
    answers = [spoken_answer(engine, codec, judge, q.user, voice, schedule) for q in questions]
    n = max(1, len(questions))
    return {"s2t": sum(answer_is_right(q.short_answer, a.text) for q, a in zip(questions, answers)) / n,
            "s2s": sum(answer_is_right(q.short_answer, a.heard) for q, a in zip(questions, answers)) / n,
            "n": len(questions), "answers": answers}


def s2s_ceiling(codec: AudioCodec, judge: JudgeASR, questions: list[SpokenQuestion],
                voice: int = 0) -> float | None:
    """Speech-to-speech accuracy of the recorded answers themselves: the judge's transcript of
    each recording's own codes, decoded (what a model would get by writing exactly those codes).
    The same for every mode; None if no question has a recorded answer (text-only facts)."""
    recorded = [q for q in questions if q.answer_codes]
    if not recorded:
        return None
    return sum(answer_is_right(q.short_answer, judge.transcribe(codec.decode(torch.tensor(q.answer_codes), voice)))
               for q in recorded) / len(recorded)


def spoken_qa_report(engine: Engine, codec: AudioCodec, judge: JudgeASR, seen: list[SpokenQuestion],
                     text_only: list[SpokenQuestion], voice: int = 0, schedule="vanilla") -> dict:
    """Spoken QA in one mode: accuracy on seen and on text-only facts (with two examples each),
    and the speed over all those answers: tokens/s and the mean time to the first audio chunk."""
    engine.generate_ids(prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, [0]), 4, schedule)  # warm-up, untimed
    out, answers = {}, []
    for name, questions in (("seen", seen), ("text_only", text_only)):
        result = spoken_qa_accuracy(engine, codec, judge, questions, voice, schedule)
        these = result.pop("answers")
        answers += these
        result["examples"] = [{"question": q.question, "answer": a.text, "heard": a.heard}
                              for q, a in list(zip(questions, these))[:2]]
        out[name] = result
    firsts = [a.first_audio for a in answers if a.first_audio is not None]
    out["speed"] = {"tokens_per_s": sum(a.n_tokens for a in answers) / max(1e-9, sum(a.seconds for a in answers)),
                    "first_audio_ms": 1000 * sum(firsts) / len(firsts) if firsts else None,
                    "answers_with_audio": len(firsts), "answers": len(answers)}
    return out
