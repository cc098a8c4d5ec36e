"""Stages 2 and 3: train the MCTP modules on top of the frozen stage-1 LLM.

VITA-Audio (REFERENCE.md "Four training stages"):

    stage 2   one module. Its decoder layer starts as a copy of the LLM's last layer, its
              projection random, its norms at one. The LLM is frozen and its hidden states are
              detached, so only the module learns; lr 1e-3.
    stage 3   ten modules, module k cloned from module k-1 (so every one starts as the stage-2
              module); the loss is the mean of the modules' cross-entropies; LLM still frozen.

Data: stage 1's samples (train/stage1.py), packed the same way, in other shares
(``cfg.mctp_data``: mostly TTS, whose audio the modules write in Boost; config.py says why).
Module k's targets are the next-token labels at its own positions, where its chain reaches a
real LLM state (model/mctp.py ``module_labels``), so loss masks are stage 1's.

After training, each module's teacher-forced accuracy at its own offset (module k predicts the
token k+2 after the LLM state it starts from; the LLM itself predicts the token 1 after) is
reported on validation audio positions and text positions. After stage 3 the cascade also
speaks: TTS judge CER of the test sentences in Vanilla, Boost and Turbo, on the same prompts.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from vita_mini.config import Config
from vita_mini.data.samples import pack
from vita_mini.eval.tasks import tts_judge_cer
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP, doc_positions, module_labels
from vita_mini.train.checkpoint import load_finished, load_json, load_state_strict, save_json
from vita_mini.train.loop import decay_groups, train, write_config
from vita_mini.train.stage0 import stage_dir
from vita_mini.train.stage1 import SECTIONS as STAGE1_SECTIONS
from vita_mini.train.stage1 import AlignmentData, head_cross_entropy, load_stage1, prepare_data
from vita_mini.vocab import AUDIO_OFFSET, vocab_size

MODEL_SECTIONS = ["codec", "llm"]  # what a checkpoint with modules must agree on to load (+ mctp)


class SpeechLM(nn.Module):
    """The LLM and its MCTP cascade, saved together (keys llm.* and mctp.*)."""

    def __init__(self, llm: LLM, mctp: MCTP):
        super().__init__()
        self.llm, self.mctp = llm, mctp


def mctp_states(llm: LLM, mctp: MCTP, tokens, doc_ids, hidden: torch.Tensor | None = None,
                detach: bool = True) -> list[torch.Tensor]:
    """Teacher-forced hidden states of every module [B, T, C] (a list), on a detached LLM pass
    (``hidden``: the LLM's hidden states of ``tokens``, if already computed; ``detach=False``
    lets the modules' gradient reach the LLM through them, as stage 4 may)."""
    if hidden is None:
        with torch.no_grad():
            _, hidden = llm(tokens, doc_ids=doc_ids, return_logits=False)
    return mctp(llm, tokens, hidden.detach() if detach else hidden, doc_ids)


def mctp_logits(llm: LLM, mctp: MCTP, tokens, doc_ids, hidden: torch.Tensor | None = None,
                detach: bool = True) -> list[torch.Tensor]:
    """Teacher-forced logits of every module [B, T, V] (a list); arguments as ``mctp_states``."""
    return [llm.lm_head(h) for h in mctp_states(llm, mctp, tokens, doc_ids, hidden, detach)]


def mctp_losses(llm: LLM, mctp: MCTP, tokens, labels, doc_ids, hidden: torch.Tensor | None = None,
                detach: bool = True) -> list[torch.Tensor]:
    """Cross-entropy of each module against its own targets (one scalar per module); the shared
    head runs only at the positions that have a target (``head_cross_entropy``)."""
    positions = doc_positions(tokens, doc_ids)
    states = mctp_states(llm, mctp, tokens, doc_ids, hidden, detach)  # n_modules x [B, T, C]
    return [head_cross_entropy(llm, h, module_labels(labels, positions, k)) for k, h in enumerate(states)]


@torch.no_grad()
def module_accuracy(llm: LLM, mctp: MCTP, batch) -> list[dict]:
    """Teacher-forced top-1 accuracy of the LLM (offset 1) and of every module k (offset k+2),
    on audio-code targets and on text targets (everything else: bytes, markers, end)."""
    tokens, labels, doc_ids = batch.tokens, batch.labels, batch.doc_ids
    positions = doc_positions(tokens, doc_ids)
    llm_logits, hidden = llm(tokens, doc_ids=doc_ids)
    rows = [("llm", 1, llm_logits, labels)]
    rows += [(f"module {k}", k + 2, logits, module_labels(labels, positions, k))
             for k, logits in enumerate(mctp_logits(llm, mctp, tokens, doc_ids, hidden))]
    table = []
    for name, offset, logits, target in rows:
        right = logits.argmax(-1) == target
        audio = target >= AUDIO_OFFSET
        text = (target >= 0) & ~audio
        table.append({"name": name, "offset": offset,
                      "audio_acc": right[audio].float().mean().item(),
                      "text_acc": right[text].float().mean().item()})
    return table


class MCTPTask:
    """Stage 2 or 3 for the shared training loop: only the cascade learns."""

    def __init__(self, cfg: Config, stage: str, data: AlignmentData, llm: LLM, mctp: MCTP):
        self.cfg, self.name, self.data = cfg, stage, data
        self.config_sections = STAGE1_SECTIONS + (["mctp_data", "stage2"] if stage == "stage2"
                                                  else ["mctp", "mctp_data", "stage2", "stage3"])
        self.n_train = len(data.order)
        llm.requires_grad_(False)  # frozen: the LLM's weights, embedding and head stay put
        self.model = SpeechLM(llm, mctp)

    def param_groups(self) -> list[dict]:
        return decay_groups(self.model.mctp)

    def loss(self, indices: list[int], device: torch.device) -> dict:
        batch = self.data.batch(indices, self.cfg.llm.max_seq_len)
        losses = mctp_losses(self.model.llm, self.model.mctp, batch.tokens.to(device),
                             batch.labels.to(device), batch.doc_ids.to(device))
        out = {"loss": torch.stack(losses).mean(), "ce_first": losses[0].detach()}
        if len(losses) > 1:
            out["ce_last"] = losses[-1].detach()
        return out

    def val_batch(self, device: torch.device):
        """All validation samples packed into rows, on ``device``."""
        batch = pack(self.data.val_samples, self.cfg.llm.max_seq_len)
        batch.tokens, batch.labels, batch.doc_ids = (batch.tokens.to(device), batch.labels.to(device),
                                                     batch.doc_ids.to(device))
        return batch

    @torch.no_grad()
    def evaluate(self, device: torch.device) -> dict:
        table = module_accuracy(self.model.llm, self.model.mctp, self.val_batch(device))
        return {"val_audio_acc_first": table[1]["audio_acc"], "val_audio_acc_last": table[-1]["audio_acc"],
                "val_text_acc_first": table[1]["text_acc"], "val_text_acc_last": table[-1]["text_acc"]}


def format_accuracy(table: list[dict]) -> str:
    lines = ["  who        predicts   audio acc   text acc",
             "  ---------  ---------  ---------  ---------"]
    for row in table:
        lines.append(f"  {row['name']:<9}  x(p+{row['offset']:<2})    {row['audio_acc'] * 100:7.1f}%  "
                     f"{row['text_acc'] * 100:7.1f}%")
    return "\n".join(lines)


def start_cascade(cfg: Config, stage: str, device: torch.device) -> tuple[LLM, MCTP]:
    """The stage's starting point: stage 2 from the stage-1 LLM, stage 3 from stage 2."""
    if stage == "stage2":
        llm = load_stage1(cfg, device)
        torch.manual_seed(cfg.seed)
        return llm, MCTP.from_llm(llm)
    llm, mctp = load_speech_lm(cfg, "stage2", device)
    return llm, mctp.grown(cfg.mctp.n_modules)


def run_mctp_stage(cfg: Config, stage: str, device: torch.device, resume: bool = False,
                   stop_after: int | None = None, log=print) -> dict | None:
    folder = stage_dir(cfg, stage)
    t0 = time.perf_counter()
    codec, judge, data = prepare_data(cfg, device, log, mix=cfg.mctp_data)
    llm, mctp = start_cascade(cfg, stage, device)
    task = MCTPTask(cfg, stage, data, llm, mctp)
    n_params = sum(p.numel() for p in mctp.parameters())
    log(f"{stage}: {len(mctp)} MCTP module(s), {n_params / 1e6:.2f}M parameters "
        f"({n_params / len(mctp) / llm.num_parameters() * 100:.0f}% of the LLM each); LLM frozen")
    write_config(cfg, folder)
    tcfg = getattr(cfg, stage)
    result = train(task, cfg, tcfg, os.path.join(folder, "checkpoint.pt"), device, resume=resume,
                   stop_after=stop_after, log=log)
    if not result.finished:
        return None
    metrics = {"step": result.step, **(result.evals[-1] if result.evals else {})}
    metrics["train_seconds"] = time.perf_counter() - t0
    metrics["accuracy"] = module_accuracy(llm, task.model.mctp, task.val_batch(device))
    if stage == "stage3":
        # Vanilla uses the LLM alone, frozen since stage 1: its numbers are stage 1's, not re-run
        stage1 = load_json(os.path.join(stage_dir(cfg, "stage1"), "metrics.json"))
        metrics["tts"] = {"vanilla": {k: stage1[f"tts_{k}"] for k in ("judge_cer", "copy_cer", "self_cer")}}
        for mode in ("boost", "turbo"):
            tts = tts_judge_cer(llm, codec, judge, data.test_texts, cfg.synth.assistant_voice,
                                mctp=task.model.mctp, schedule=mode)
            metrics["tts"][mode] = {k: tts[k] for k in ("judge_cer", "copy_cer", "self_cer")}
    metrics["wall_seconds"] = time.perf_counter() - t0
    save_json(os.path.join(folder, "metrics.json"), metrics)
    log(format_report(stage, metrics))
    return metrics


def format_report(stage: str, m: dict) -> str:
    lines = [f"{stage} results: teacher-forced top-1 accuracy on validation samples "
             f"(p = the LLM state a prediction starts from)", format_accuracy(m["accuracy"])]
    if "tts" in m:
        lines.append("  TTS of the test sentences, same prompts, CER of: what the judge hears vs the "
                     "input | the text the model wrote vs the input | what the judge hears vs that text")
        for mode, v in m["tts"].items():
            lines.append(f"    {mode:<8} {v['judge_cer'] * 100:5.1f}% | {v['copy_cer'] * 100:5.1f}% | "
                         f"{v['self_cer'] * 100:5.1f}%")
    lines.append(f"  wall time: {m['wall_seconds']:.0f} s (data and training {m['train_seconds']:.0f} s)")
    return "\n".join(lines)


def load_speech_lm(cfg: Config, stage: str, device: torch.device | str = "cpu",
                   why: str = " (MCTP modules come from stages 2 and 3)") -> tuple[LLM, MCTP]:
    """The LLM and cascade of a finished stage 2, 3 (or 4); a clear error naming the stage to run."""
    path = os.path.join(stage_dir(cfg, stage), "checkpoint.pt")
    n_modules = 1 if stage == "stage2" else cfg.mctp.n_modules
    payload = load_finished(path, stage, cfg.to_dict(), MODEL_SECTIONS + ([] if stage == "stage2" else ["mctp"]),
                            why=why)
    model = SpeechLM(LLM(cfg.llm, vocab_size(cfg.codec.codebook_size)), MCTP(cfg.llm, n_modules))
    load_state_strict(model, payload["model"], path)
    model.to(device).eval()
    return model.llm, model.mctp
