"""Stages 2 and 3: train the MCTP modules on top of the frozen stage-1 LLM.

VITA-Audio (tutorials/paper.md §6):

    stage 2   one module. Its decoder layer starts as a copy of the LLM's last layer, its
              projection random, its norms at one. The LLM is frozen and its hidden states are
              detached, so only the module learns; lr 1e-3.
    stage 3   ten modules, module k cloned from module k-1 (so every one starts as the stage-2
              module); the loss is the mean of the modules' cross-entropies; LLM still frozen.

Data: stage 1's samples (train/stage1.py), packed the same way, in other shares
(``cfg.mctp_data``: mostly TTS, whose audio the modules write in Boost; config.py says why).
Module k's targets are the next-token labels at its own positions, where its chain reaches a
real LLM state (model/mctp.py ``module_labels``), so loss masks are stage 1's
(model/teacher_forced.py ``mctp_losses``).

After training, each module's teacher-forced accuracy at its own offset (module k predicts the
token k+2 after the LLM state it starts from; the LLM itself predicts the token 1 after) is
reported on validation audio positions and text positions. After stage 3 the cascade also
speaks: TTS judge CER of the test sentences in Vanilla, Boost and Turbo, on the same prompts.
"""

from __future__ import annotations

import os

import torch

from vita_mini.checkpoint import load_json
from vita_mini.codes import alignment_data
from vita_mini.config import Config
from vita_mini.data.alignment import AlignmentData
from vita_mini.data.samples import pack
from vita_mini.eval.mctp_accuracy import format_accuracy, module_accuracy
from vita_mini.eval.tasks import tts_judge_cer
from vita_mini.infer.schedule import own_mode, parse_schedule
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.model.teacher_forced import mctp_losses
from vita_mini.runs import (SpeechLM, load_speech_lm, report_voice, require_same_interleave, stage_dir,
                            stage_name)
from vita_mini.train.loop import decay_groups
from vita_mini.train.stage1 import SECTIONS as STAGE1_SECTIONS


def report_modes(interleave, n_modules: int = 10) -> tuple[str, ...]:
    """The modes stage 3's TTS report runs besides Vanilla: the model's own mode first (the one in
    step with its training interleave), then Boost and Turbo; of those, the ones whose runs of
    MCTP steps a cascade of ``n_modules`` can write, and the schedule [1, n_modules] when Turbo
    needs more modules than that (a cascade trained with mctp.n_modules=4 reports "1,4")."""
    modes = [m for m in dict.fromkeys((own_mode(interleave), "boost", "turbo"))
             if max(parse_schedule(m)[1::2]) <= n_modules]
    if "turbo" not in modes:
        modes.append(f"1,{n_modules}")
    return tuple(modes)


def start_cascade(cfg: Config, stage: int, device: torch.device) -> tuple[LLM, MCTP]:
    """The stage's starting point: stage 2 from the stage-1 LLM, stage 3 from stage 2 (trained
    on the interleave this run asks for)."""
    require_same_interleave(cfg, stage - 1)
    if stage == 2:
        llm, _ = load_speech_lm(cfg, 1, device)
        torch.manual_seed(cfg.seed)
        return llm, MCTP.from_llm(llm)
    llm, mctp = load_speech_lm(cfg, 2, device)
    return llm, mctp.grown(cfg.mctp.n_modules)


class MCTPTask:
    """Stage 2 or 3 for the shared loop and skeleton (train/run_stage.py): only the cascade learns."""

    @classmethod
    def build(cls, cfg: Config, stage: int, device: torch.device, log=print) -> MCTPTask:
        codec, judge, data = alignment_data(cfg, device, log, mix=cfg.mctp_data)
        llm, mctp = start_cascade(cfg, stage, device)
        return cls(cfg, stage, data, llm, mctp, codec, judge)

    def __init__(self, cfg: Config, stage: int, data: AlignmentData, llm: LLM, mctp: MCTP,
                 codec=None, judge=None):
        self.cfg, self.stage, self.name, self.data = cfg, stage, stage_name(stage), data
        self.codec, self.judge = codec, judge
        self.config_sections = STAGE1_SECTIONS + (["mctp_data", "stage2"] if stage == 2
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
        return pack(self.data.val_samples, self.cfg.llm.max_seq_len).to(device)

    @torch.no_grad()
    def evaluate(self, device: torch.device) -> dict:
        table = module_accuracy(self.model.llm, self.model.mctp, self.val_batch(device))
        return {"val_audio_acc_first": table[1]["audio_acc"], "val_audio_acc_last": table[-1]["audio_acc"],
                "val_text_acc_first": table[1]["text_acc"], "val_text_acc_last": table[-1]["text_acc"]}

    def summary(self) -> str:
        mctp, llm = self.model.mctp, self.model.llm
        n_params = sum(p.numel() for p in mctp.parameters())
        return (f"{self.name}: {len(mctp)} MCTP module(s), {n_params / 1e6:.2f}M parameters "
                f"({n_params / len(mctp) / llm.num_parameters() * 100:.0f}% of the LLM each); LLM frozen")

    def report(self, device: torch.device, folder: str) -> dict:
        """Per-module accuracy; after stage 3 also TTS judge CER in Vanilla, the model's own mode
        (the one in step with its training interleave: Boost or Balance), Boost and Turbo."""
        llm, mctp = self.model.llm, self.model.mctp
        metrics = {"accuracy": module_accuracy(llm, mctp, self.val_batch(device))}
        if self.stage == 3:
            # Vanilla uses the LLM alone, frozen since stage 1: its numbers are stage 1's, not re-run
            stage1 = load_json(os.path.join(stage_dir(self.cfg, 1), "metrics.json"))
            metrics["tts"] = {"vanilla": {k: stage1[f"tts_{k}"] for k in ("judge_cer", "copy_cer", "self_cer")}}
            for mode in report_modes(self.cfg.alignment_data.ratio, len(mctp)):
                tts = tts_judge_cer(llm, self.codec, self.judge, self.data.test_texts,
                                    report_voice(self.cfg, self.codec), mctp=mctp, schedule=mode)
                metrics["tts"][mode] = {k: tts[k] for k in ("judge_cer", "copy_cer", "self_cer")}
        return metrics

    def format_report(self, m: dict) -> str:
        lines = [f"{self.name} results: teacher-forced top-1 accuracy on validation samples "
                 f"(p = the LLM state a prediction starts from)", format_accuracy(m["accuracy"])]
        if "tts" in m:
            lines.append("  TTS of the test sentences, same prompts, CER of: what the judge hears vs the "
                         "input | the text the model wrote vs the input | what the judge hears vs that text")
            for mode, v in m["tts"].items():
                lines.append(f"    {mode:<8} {v['judge_cer'] * 100:5.1f}% | {v['copy_cer'] * 100:5.1f}% | "
                             f"{v['self_cer'] * 100:5.1f}%")
        lines.append(f"  wall time: {m['wall_seconds']:.0f} s (data and training {m['train_seconds']:.0f} s)")
        return "\n".join(lines)
