"""Stage 1: audio-text alignment. The LLM learns to read and write audio tokens.

VITA-Audio's first stage (REFERENCE.md "Four training stages") trains the whole LLM, its
embeddings grown for the audio codes, on ASR + TTS + text data. Our LLM starts from random
weights (there is no pretrained Qwen to download), so the text data also teaches it the world.

    data    the stage-0 codec turns every corpus utterance into 25 Hz codes once (cached beside
            stage 0's checkpoint, ``corpus_codes``, for stages 1-4); samples are
            ASR (every voice), TTS (interleaved [1, 10, 4, 10], the assistant's voice only) and
            text (data/samples.py), mixed by cfg.data
    loss    next-token cross-entropy on the assistant's tokens only, over packed rows
    report  ASR CER on test utterances, TTS judge CER (generate -> decode -> judge) on test
            sentences, and accuracy on held-out text questions (eval/tasks.py)
"""

from __future__ import annotations

import hashlib
import os
import random
import time

import torch
import torch.nn.functional as F

from vita_mini.audio.codec import AudioCodec, pad_mels
from vita_mini.audio.features import LogMel
from vita_mini.config import Config
from vita_mini.data.corpus import Corpus, corpus_path, load_corpus, make_world
from vita_mini.data.world import word_salad
from vita_mini.data.samples import (IGNORE, asr_sample, copy_sample, mixed_order, noisy_inputs, pack,
                                    text_qa_split, text_sample, tts_sample)
from vita_mini.eval.tasks import asr_cer, text_qa_accuracy, tts_judge_cer
from vita_mini.model.llm import LLM
from vita_mini.train.checkpoint import atomic_write_bytes, load_finished, load_state_strict, save_json
from vita_mini.train.loop import decay_groups, train, write_config
from vita_mini.train.stage0 import load_stage0, stage_dir
from vita_mini.vocab import AUDIO_OFFSET, vocab_size

STAGE = "stage1"
SECTIONS = ["seed", "world", "synth", "audio", "codec", "judge", "llm", "data", "stage1"]
MODEL_SECTIONS = ["codec", "llm"]  # what a stage-1 LLM must agree on to be loaded


@torch.no_grad()
def encode_corpus(codec: AudioCodec, corpus: Corpus, batch_size: int = 32) -> list[list[int]]:
    """25 Hz codes of every corpus utterance, batched (same result as codec.encode per utterance)."""
    logmel = LogMel(codec.audio).to(next(codec.parameters()).device)
    device = next(codec.parameters()).device
    codes = []
    for start in range(0, len(corpus), batch_size):
        wavs = [torch.from_numpy(corpus.wav(u)) for u in range(start, min(start + batch_size, len(corpus)))]
        mels = [logmel(codec.pad_wav(w).to(device)[None])[0].cpu() for w in wavs]
        mel, frames = pad_mels(mels, codec.cfg.downsample)
        n_tokens = frames // codec.cfg.downsample
        _, batch_codes, _ = codec.quantize(mel.to(device), n_tokens.to(device))
        codes += [batch_codes[i, :n].tolist() for i, n in enumerate(n_tokens.tolist())]
    return codes


def weights_digest(module: torch.nn.Module) -> str:
    """A short hash of every tensor in ``module``'s state: equal digests, equal weights."""
    h = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def corpus_codes(cfg: Config, codec: AudioCodec, corpus: Corpus, corpus_file: str) -> list[list[int]]:
    """``encode_corpus``, cached in stage 0's folder: stages 1 to 4 all train on the same codes
    (10 s to encode the toy corpus). ``corpus_file`` is where ``corpus`` is cached; the codes
    remember it and a digest of the codec's weights, and if either differs (stage 0 retrained,
    another world) the corpus is encoded again."""
    name = os.path.splitext(os.path.basename(corpus_file))[0]
    path = os.path.join(stage_dir(cfg, "stage0"), f"codes-{name}.pt")
    key = f"{name} {weights_digest(codec)}"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["key"] == key:
            return [row.tolist() for row in saved["codes"].split(saved["lengths"].tolist())]
    except Exception:  # missing, truncated or foreign: a cache is simply made again
        pass
    codes = encode_corpus(codec, corpus)
    flat = torch.tensor([c for row in codes for c in row], dtype=torch.int32)
    lengths = torch.tensor([len(row) for row in codes])
    atomic_write_bytes(path, lambda tmp: torch.save({"key": key, "codes": flat, "lengths": lengths}, tmp))
    return codes


def head_cross_entropy(model: LLM, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``model.lm_head`` over the labelled positions of ``hidden`` [B, T, C].

    The head and the softmax run only where there is a target: in a packed row of stage-1 data
    that is about 40% of the positions (prompts carry no loss). The value equals
    ``F.cross_entropy(lm_head(hidden), labels, ignore_index=IGNORE)``."""
    keep = labels != IGNORE  # [B, T]
    return F.cross_entropy(model.lm_head(hidden[keep]).float(), labels[keep])  # [N, V] vs [N]


def lm_loss(model: LLM, tokens, labels, doc_ids) -> torch.Tensor:
    """The LLM's mean next-token cross-entropy over the labelled positions."""
    _, hidden = model(tokens, doc_ids=doc_ids, return_logits=False)
    return head_cross_entropy(model, hidden, labels)


class AlignmentData:
    """Stage 1's samples (also what stages 2 and 3 train the MCTP modules on)."""

    def __init__(self, cfg: Config, corpus: Corpus, codes: list[list[int]], mix=None):
        """``mix``: a config section with the shares mix_asr, mix_tts, mix_text, mix_copy
        (default: stage 1's, ``cfg.data``; stages 2 and 3 pass ``cfg.mctp_data``)."""
        world = make_world(cfg)
        ratio = cfg.data.ratio
        split = {s: corpus.indices(s) for s in ("train", "val", "test")}
        text_train, self.text_test = text_qa_split(world, cfg.world.seed)
        # the model answers in one voice, so TTS targets are the assistant voice's utterances only
        spoken_by_assistant = {s: [u for u in split[s] if corpus.speakers[u] == cfg.synth.assistant_voice]
                               for s in ("train", "val")}
        self.samples = {
            "asr": [asr_sample(codes[u], corpus.texts[u]) for u in split["train"]],
            "tts": [tts_sample(codes[u], corpus.texts[u], ratio) for u in spoken_by_assistant["train"]],
            "text": [text_sample(q, a) for q, a, _ in text_train],
            "copy": [copy_sample(t) for t in word_salad(random.Random(cfg.seed), world.speech_sentences["train"],
                                                         cfg.data.n_copy, cfg.world.max_chars)]
            if cfg.data.mix_copy > 0 else [],
        }
        self.val_samples = ([asr_sample(codes[u], corpus.texts[u]) for u in split["val"]]
                            + [tts_sample(codes[u], corpus.texts[u], ratio)
                               for u in spoken_by_assistant["val"]])
        mix = mix or cfg.data
        shares = {"asr": mix.mix_asr, "tts": mix.mix_tts, "text": mix.mix_text, "copy": mix.mix_copy}
        self.order = mixed_order(self.samples, shares, cfg.seed)
        self.test_codes = [codes[u] for u in split["test"]]
        self.test_texts = [corpus.texts[u] for u in split["test"]]

    def batch(self, indices: list[int], row_len: int):
        """Training items ``indices`` packed into rows (data/samples.py ``pack``); the ASR samples
        are flagged for ``noisy_inputs``."""
        items = [self.order[j] for j in indices]
        return pack([self.samples[kind][i] for kind, i in items], row_len,
                    noisy=[kind == "asr" for kind, _ in items])


class Stage1Task:
    name = STAGE
    config_sections = SECTIONS

    def __init__(self, cfg: Config, data: AlignmentData):
        self.cfg, self.data = cfg, data
        self.n_train = len(self.data.order)
        torch.manual_seed(cfg.seed)
        self.model = LLM(cfg.llm, vocab_size(cfg.codec.codebook_size))

    def param_groups(self) -> list[dict]:
        return decay_groups(self.model)

    def loss(self, indices: list[int], device: torch.device) -> dict:
        batch = self.data.batch(indices, self.cfg.llm.max_seq_len)
        tokens = noisy_inputs(batch, self.cfg.data.input_noise)
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


def stage1_report(model: LLM, codec, judge, data: AlignmentData, voice: int) -> dict:
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


def format_report(m: dict) -> str:
    lines = ["stage 1 results (test split, greedy decoding):",
             f"  ASR CER: {m['asr_cer'] * 100:.2f}% ({m['n_test_utterances']} utterances)",
             f"  TTS judge CER: {m['tts_judge_cer'] * 100:.2f}% (generate -> decode -> judge)",
             f"    of which: text written vs input {m['tts_copy_cer'] * 100:.2f}% CER, "
             f"judge vs text written {m['tts_self_cer'] * 100:.2f}% CER",
             f"  text QA accuracy: {m['text_qa_accuracy'] * 100:.1f}% "
             f"({m['n_text_questions']} held-out question phrasings)",
             f"  wall time (training and evaluation): {m['stage1_wall_seconds']:.0f} s"]
    for ex in m["examples"][:2]:
        lines.append(f"  e.g. {ex['text']!r}: ASR -> {ex['asr']!r}; TTS -> judge -> {ex['tts_judge']!r}")
    return "\n".join(lines)


def prepare_data(cfg: Config, device: torch.device, log=print, mix=None):
    """(codec, judge, AlignmentData): the stage-0 models and the corpus turned into samples
    (``mix``: as ``AlignmentData``)."""
    codec, judge = load_stage0(cfg, device)
    corpus = load_corpus(cfg, log)
    return codec, judge, AlignmentData(cfg, corpus, corpus_codes(cfg, codec, corpus, corpus_path(cfg)), mix)


def run_stage1(cfg: Config, device: torch.device, resume: bool = False, stop_after: int | None = None,
               log=print) -> dict | None:
    folder = stage_dir(cfg, STAGE)
    t0 = time.perf_counter()
    codec, judge, data = prepare_data(cfg, device, log)
    task = Stage1Task(cfg, data)
    log(f"LLM: {task.model.num_parameters() / 1e6:.2f}M parameters, vocabulary "
        f"{vocab_size(cfg.codec.codebook_size)} (256 bytes + specials + {cfg.codec.codebook_size} codes); "
        f"samples: " + ", ".join(f"{k} {len(v)}" for k, v in task.data.samples.items()))
    write_config(cfg, folder)
    result = train(task, cfg, cfg.stage1, os.path.join(folder, "checkpoint.pt"), device,
                   resume=resume, stop_after=stop_after, log=log)
    if not result.finished:
        return None
    metrics = {"step": result.step, **(result.evals[-1] if result.evals else {})}
    metrics.update(stage1_report(task.model, codec, judge, task.data, cfg.synth.assistant_voice))
    metrics["stage1_wall_seconds"] = time.perf_counter() - t0
    save_json(os.path.join(folder, "metrics.json"), metrics)
    log(format_report(metrics))
    return metrics


def load_stage1(cfg: Config, device: torch.device | str = "cpu") -> LLM:
    """The stage-1 LLM of this run; a clear error if stage 1 has not finished."""
    path = os.path.join(stage_dir(cfg, STAGE), "checkpoint.pt")
    payload = load_finished(path, STAGE, cfg.to_dict(), MODEL_SECTIONS)
    model = LLM(cfg.llm, vocab_size(cfg.codec.codebook_size))
    load_state_strict(model, payload["model"], path)
    return model.to(device).eval()
