"""Stage 1: audio-text alignment. The LLM learns to read and write audio tokens.

VITA-Audio's first stage (tutorials/paper.md §6) trains the whole LLM, its
embeddings grown for the audio codes, on ASR + TTS + text data. Our LLM starts from random
weights (there is no pretrained Qwen to download), so the text data also teaches it the world.

    data    the stage-0 codec turns every corpus utterance into 25 Hz codes once (cached beside
            stage 0's checkpoint, vita_mini/codes.py alignment_data, for stages 1-4); samples are
            ASR (every voice), TTS (interleaved [1, 10, 4, 10], the assistant's voice only; every
            voice of a real corpus) and text (data/alignment.py), mixed by cfg.alignment_data
    loss    next-token cross-entropy on the assistant's tokens only, over packed rows
    report  ASR CER on test utterances, TTS judge CER (generate -> decode -> judge) on test
            sentences, and accuracy on held-out text questions (eval/tasks.py)
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from vita_mini.codes import alignment_data
from vita_mini.config import Config
from vita_mini.data.alignment import AlignmentData
from vita_mini.data.samples import noisy_inputs, pack
from vita_mini.eval.tasks import asr_cer, text_qa_accuracy, tts_judge_cer
from vita_mini.model.llm import LLM
from vita_mini.model.teacher_forced import lm_loss
from vita_mini.runs import report_voice, stage_name
from vita_mini.train.loop import decay_groups
from vita_mini.vocab import AUDIO_OFFSET, IGNORE, vocab_size

SECTIONS = ["seed", "corpus", "world", "synth", "audio", "codec", "judge", "llm", "alignment_data", "stage1"]


class Stage1Task:
    """Stage 1 for the shared loop and skeleton (train/run_stage.py): the LLM from scratch."""

    stage, name = 1, stage_name(1)
    config_sections = SECTIONS  # must agree to resume

    @classmethod
    def build(cls, cfg: Config, stage: int, device: torch.device, log=print) -> Stage1Task:
        codec, judge, data = alignment_data(cfg, device, log)
        return cls(cfg, data, codec, judge)

    def __init__(self, cfg: Config, data: AlignmentData, codec=None, judge=None):
        self.cfg, self.data, self.codec, self.judge = cfg, data, codec, judge
        self.n_train = len(self.data.order)
        torch.manual_seed(cfg.seed)
        self.model = LLM(cfg.llm, vocab_size(cfg.codec.codebook_size))

    def param_groups(self) -> list[dict]:
        return decay_groups(self.model)

    def loss(self, indices: list[int], device: torch.device) -> dict:
        batch = self.data.batch(indices, self.cfg.llm.max_seq_len)
        tokens = noisy_inputs(batch, self.cfg.alignment_data.input_noise)
        loss = lm_loss(self.model, tokens.to(device), batch.labels.to(device), batch.doc_ids.to(device))
        return {"loss": loss}

    @torch.no_grad()
    def evaluate(self, device: torch.device) -> dict:
        """Validation loss and next-token accuracy on text and on audio targets (teacher forced)."""
        batch = pack(self.data.val_samples, self.cfg.llm.max_seq_len)
        tokens, labels = batch.tokens.to(device), batch.labels.to(device)
        logits, _ = self.model(tokens, doc_ids=batch.doc_ids.to(device))
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        right = logits.argmax(-1) == labels
        audio = labels >= AUDIO_OFFSET  # audio codes are the highest ids (vocab.py)
        text = (labels >= 0) & ~audio
        return {"val_loss": loss.item(), "val_text_acc": right[text].float().mean().item(),
                "val_audio_acc": right[audio].float().mean().item()}

    def summary(self) -> str:
        return (f"LLM: {self.model.num_parameters() / 1e6:.2f}M parameters, vocabulary "
                f"{vocab_size(self.cfg.codec.codebook_size)} (256 bytes + specials + "
                f"{self.cfg.codec.codebook_size} codes); samples: "
                + ", ".join(f"{k} {len(v)}" for k, v in self.data.samples.items()))

    def report(self, device: torch.device, folder: str) -> dict:
        return stage1_report(self.model, self.codec, self.judge, self.data, report_voice(self.cfg, self.codec))

    def format_report(self, m: dict) -> str:
        lines = ["stage 1 results (test split, greedy decoding):",
                 f"  ASR CER: {m['asr_cer'] * 100:.2f}% ({m['n_test_utterances']} utterances)",
                 f"  TTS judge CER: {m['tts_judge_cer'] * 100:.2f}% (generate -> decode -> judge)",
                 f"    of which: text written vs input {m['tts_copy_cer'] * 100:.2f}% CER, "
                 f"judge vs text written {m['tts_self_cer'] * 100:.2f}% CER",
                 f"  text QA accuracy: {m['text_qa_accuracy'] * 100:.1f}% "
                 f"({m['n_text_questions']} held-out question phrasings)",
                 f"  wall time (training and evaluation): {m['wall_seconds']:.0f} s"]
        for ex in m["examples"][:2]:
            lines.append(f"  e.g. {ex['text']!r}: ASR -> {ex['asr']!r}; TTS -> judge -> {ex['tts_judge']!r}")
        return "\n".join(lines)


def stage1_report(model: LLM, codec, judge, data: AlignmentData, voice: int) -> dict:
    """ASR CER, TTS judge CER (and its two parts) and text QA accuracy on the test split."""
    t0 = time.perf_counter()
    model.eval()
    asr, asr_hyps = asr_cer(model, data.test_codes, data.test_texts)
    tts = tts_judge_cer(model, codec, judge, data.test_texts, voice)
    tts_hyps = tts["heard"]
    qa, answers = text_qa_accuracy(model, data.text_test)
    return {"asr_cer": asr, "tts_judge_cer": tts["judge_cer"], "tts_copy_cer": tts["copy_cer"],
            "tts_self_cer": tts["self_cer"], "text_qa_accuracy": qa,
            "n_test_utterances": len(data.test_texts), "n_text_questions": len(data.text_test),
            "report_seconds": time.perf_counter() - t0,
            "examples": [{"text": t, "asr": a, "tts_judge": h}
                         for t, a, h in list(zip(data.test_texts, asr_hyps, tts_hyps))[:4]]
            + [{"question": q, "answer": a} for (q, _, _), a in list(zip(data.text_test, answers))[:3]]}
