"""Task metrics of the LLM: ASR CER, TTS judge CER, text question accuracy.

As in the paper (Section 5): ASR is scored by the error rate of the transcript; TTS by
transcribing the generated speech with a separate recognizer (Whisper there, our judge here)
and scoring it against the input text; question answering by whether the answer is right.
All decoding here is greedy; speech can also be generated with the MCTP modules by a schedule.
"""

from __future__ import annotations

import torch

from vita_mini.audio.codec import AudioCodec
from vita_mini.audio.judge import JudgeASR
from vita_mini.eval.metrics import cer
from vita_mini.infer.decode import greedy_generate
from vita_mini.infer.engine import Engine
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.vocab import (ASR_INSTRUCTION, TEXT_INSTRUCTION, TTS_INSTRUCTION, decode_audio,
                             decode_text, prompt_tokens, text_ids, user_audio)


def transcribe(model: LLM, codes) -> str:
    prompt = prompt_tokens(ASR_INSTRUCTION, user_audio(codes))
    return decode_text(greedy_generate(model, prompt, max_new_tokens=2 * len(codes) + 8))


def speak(model: LLM, text: str, max_new_tokens: int | None = None, mctp: MCTP | None = None,
          schedule="vanilla") -> list[int]:
    """TTS with the LLM (and its MCTP modules, by ``schedule``): the generated answer ids
    (interleaved text and audio)."""
    prompt = prompt_tokens(TTS_INSTRUCTION, text_ids(text))
    max_new_tokens = max_new_tokens or model.cfg.max_seq_len - len(prompt)
    if mctp is None:
        return greedy_generate(model, prompt, max_new_tokens)
    return Engine(model, mctp).generate_ids(prompt, max_new_tokens, schedule)


def answer_text(model: LLM, question: str) -> str:
    prompt = prompt_tokens(TEXT_INSTRUCTION, text_ids(question))
    return decode_text(greedy_generate(model, prompt, max_new_tokens=120))


def asr_cer(model: LLM, codes_list, texts: list[str]) -> tuple[float, list[str]]:
    hyps = [transcribe(model, codes).strip() for codes in codes_list]
    return cer(texts, hyps), hyps


def tts_judge_cer(model: LLM, codec: AudioCodec, judge: JudgeASR, texts: list[str], voice: int = 0,
                  mctp: MCTP | None = None, schedule="vanilla") -> dict:
    """Generate speech for each text, decode it to audio in ``voice``, let the judge transcribe it.

    Returns ``judge_cer`` (what the judge hears against the input text: the paper's TTS metric)
    and its two parts: ``copy_cer``, the text the model wrote in its interleaved answer against
    the input (did it read the right sentence?), and ``self_cer``, what the judge hears against
    that written text (does the audio say what the model wrote?); plus ``heard`` and ``written``."""
    heard, written = [], []
    for text in texts:
        answer = speak(model, text, mctp=mctp, schedule=schedule)
        codes = decode_audio(answer)
        written.append(decode_text(answer).strip())
        heard.append(judge.transcribe(codec.decode(torch.tensor(codes), voice)).strip() if codes else "")
    return {"judge_cer": cer(texts, heard), "copy_cer": cer(texts, written),
            "self_cer": cer(written, heard), "heard": heard, "written": written}


def text_qa_accuracy(model: LLM, pairs) -> tuple[float, list[str]]:
    """pairs: (question, reference answer, short answer). Right = the exact fact sentence."""
    answers = [answer_text(model, q).strip() for q, _, _ in pairs]
    right = [a == ref for a, (_, ref, _) in zip(answers, pairs)]
    return sum(right) / max(1, len(right)), answers
