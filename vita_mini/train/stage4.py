"""Stage 4: supervised fine-tuning on spoken question answering; everything trains.

VITA-Audio's last stage (tutorials/paper.md §6): from the stage-3
weights, the LLM and all MCTP modules train together on speech QA (speech in, interleaved text
and speech out) plus a little of the earlier data, the modules at ten times the LLM's
learning rate. Here:

    start   the finished stage-3 LLM and cascade (runs.py ``load_speech_lm(cfg, 3)``)
    data    spoken-QA samples (data/spoken_qa.py) and, as a share ``spoken_qa.replay_share`` (30%) of
            the samples, stage 1's ASR, TTS and text samples, mixed by ``spoken_qa.replay_asr``,
            ``replay_tts`` and ``replay_text``, so the model keeps what it learned there;
            packed as in stage 1
    groups  the LLM (embedding, layers, final norm, head) at lr; the modules at
            ``spoken_qa.mctp_lr_scale`` (10) x lr
    loss    LLM cross-entropy on the assistant's tokens + the mean of the modules'
            cross-entropies (tutorials/paper.md §3: weight 1.0). With
            ``spoken_qa.mctp_grad_to_llm`` (the default) the modules read the LLM's hidden states
            *with* their gradient, as in DeepSeek-V3's multi-token prediction, whose design MCTP
            copies: "everything trains" includes the states the modules are built on. Stages 2
            and 3 detach them; ``spoken_qa.mctp_grad_to_llm=false`` does that here too.
    report  spoken-QA accuracy, Vanilla, speech-to-text and speech-to-speech, on seen and on
            text-only facts (``python -m vita_mini.eval`` measures every mode and more)

The checkpoint holds llm.* and mctp.*, as stages 2 and 3 do.
"""

from __future__ import annotations

import torch

from vita_mini.codes import alignment_data, spoken_qa_data
from vita_mini.config import Config
from vita_mini.data.alignment import AlignmentData
from vita_mini.data.samples import SampleMix, pack
from vita_mini.data.spoken_qa import SpokenQAData
from vita_mini.eval.mctp_accuracy import module_accuracy
from vita_mini.eval.tasks import s2s_ceiling, spoken_qa_report
from vita_mini.infer.engine import Engine
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.model.teacher_forced import head_cross_entropy, lm_loss, mctp_losses
from vita_mini.runs import SpeechLM, load_speech_lm, report_voice, require_same_interleave, stage_name
from vita_mini.train.loop import decay_groups
from vita_mini.train.stage1 import SECTIONS as STAGE1_SECTIONS

SECTIONS = STAGE1_SECTIONS + ["mctp", "mctp_data", "stage2", "stage3", "spoken_qa", "stage4"]


class SFTData(SampleMix):
    """Stage 4's training items: spoken QA, and stage 1's ASR, TTS and text samples replayed as
    ``replay_share`` of them, mixed among themselves by ``replay_asr``, ``replay_tts`` and
    ``replay_text`` (weights)."""

    def __init__(self, cfg: Config, sqa: SpokenQAData, alignment: AlignmentData):
        self.sqa = sqa
        q = cfg.spoken_qa
        weights = {"asr": q.replay_asr, "tts": q.replay_tts, "text": q.replay_text}
        total = sum(weights.values())
        shares = {"sqa": 1 - q.replay_share, **{k: q.replay_share * w / total for k, w in weights.items()}}
        samples = {"sqa": sqa.train, **{k: alignment.samples[k] for k in weights}}
        super().__init__(samples, shares, cfg.seed)
        self.val_samples = alignment.val_samples  # does the LLM keep stage 1's skills?


def sft_losses(llm: LLM, mctp: MCTP, batch, grad_to_llm: bool = True) -> dict:
    """LLM cross-entropy + mean MCTP cross-entropy over packed rows (one LLM forward)."""
    _, hidden = llm(batch.tokens, doc_ids=batch.doc_ids, return_logits=False)  # [B, T, C]
    llm_ce = head_cross_entropy(llm, hidden, batch.labels)
    modules = torch.stack(mctp_losses(llm, mctp, batch.tokens, batch.labels, batch.doc_ids,
                                      hidden=hidden, detach=not grad_to_llm))  # [n_modules]
    return {"loss": llm_ce + modules.mean(), "llm_ce": llm_ce.detach(), "mctp_ce": modules.mean().detach(),
            "ce_first": modules[0].detach(), "ce_last": modules[-1].detach()}


class Stage4Task:
    """Stage 4 for the shared loop and skeleton (train/run_stage.py): everything trains."""

    stage, name = 4, stage_name(4)
    config_sections = SECTIONS  # must agree to resume

    @classmethod
    def build(cls, cfg: Config, stage: int, device: torch.device, log=print) -> Stage4Task:
        codec, judge, alignment = alignment_data(cfg, device, log)
        data = SFTData(cfg, spoken_qa_data(cfg, codec, log), alignment)
        require_same_interleave(cfg, 3)
        llm, mctp = load_speech_lm(cfg, 3, device)
        return cls(cfg, data, llm, mctp, codec, judge)

    def __init__(self, cfg: Config, data: SFTData, llm: LLM, mctp: MCTP, codec=None, judge=None):
        self.cfg, self.data, self.codec, self.judge = cfg, data, codec, judge
        self.n_train = len(data.order)
        self.model = SpeechLM(llm, mctp).requires_grad_(True)  # everything trains

    def param_groups(self) -> list[dict]:
        return decay_groups(self.model.llm) + decay_groups(self.model.mctp, self.cfg.spoken_qa.mctp_lr_scale)

    def loss(self, indices: list[int], device: torch.device) -> dict:
        batch = self.data.batch(indices, self.cfg.llm.max_seq_len).to(device)
        return sft_losses(self.model.llm, self.model.mctp, batch, self.cfg.spoken_qa.mctp_grad_to_llm)

    @torch.no_grad()
    def evaluate(self, device: torch.device) -> dict:
        """Teacher forced: the LLM's loss on stage 1's validation samples (forgetting), and the
        LLM's and modules' audio accuracy on the seen-fact test answers (monitoring only)."""
        row_len = self.cfg.llm.max_seq_len
        val = pack(self.data.val_samples, row_len).to(device)
        metrics = {"val_llm_ce": lm_loss(self.model.llm, val.tokens, val.labels, val.doc_ids).item()}
        if self.data.sqa.test_seen_samples:
            table = module_accuracy(self.model.llm, self.model.mctp,
                                    pack(self.data.sqa.test_seen_samples, row_len).to(device))
            metrics.update({"sqa_llm_acc": table[0]["audio_acc"], "sqa_audio_acc_first": table[1]["audio_acc"],
                            "sqa_audio_acc_last": table[-1]["audio_acc"]})
        return metrics

    def summary(self) -> str:
        sqa, cfg = self.data.sqa, self.cfg
        return (f"stage4: LLM and {len(self.model.mctp)} MCTP modules train together (modules at "
                f"{cfg.spoken_qa.mctp_lr_scale:g}x the LLM's learning rate); samples: spoken QA "
                f"{len(sqa.train)}, replayed stage-1 share {cfg.spoken_qa.replay_share:.0%}; test "
                f"questions: {len(sqa.test_seen)} seen, {len(sqa.test_text)} text-only")

    def report(self, device: torch.device, folder: str) -> dict:
        """Spoken QA in Vanilla on seen and text-only facts, and the speech-to-speech ceiling."""
        sqa, voice = self.data.sqa, report_voice(self.cfg, self.codec)
        report = spoken_qa_report(Engine(self.model.llm, self.model.mctp), self.codec, self.judge,
                                  sqa.test_seen, sqa.test_text, voice)
        report["seen"]["s2s_ceiling"] = s2s_ceiling(self.codec, self.judge, sqa.test_seen, voice)
        return {"spoken_qa": report}

    def format_report(self, m: dict) -> str:
        return format_report(m)


def format_report(m: dict) -> str:
    """Stage 4's metrics as the lines it prints."""
    lines = ["stage 4 results: spoken QA, Vanilla, greedy (right = the short answer is a word of "
             "the answer)",
             "  facts        questions   speech->text   speech->speech"]
    for name, label in (("seen", "seen"), ("text_only", "text-only")):
        r = m["spoken_qa"][name]
        lines.append(f"  {label:<11}  {r['n']:>9}   {r['s2t'] * 100:11.1f}%   {r['s2s'] * 100:13.1f}%")
    if m["spoken_qa"]["seen"].get("s2s_ceiling") is not None:
        lines.append(f"  the judge on the recorded answers' own codes (the speech->speech ceiling): "
                     f"{m['spoken_qa']['seen']['s2s_ceiling'] * 100:.1f}% of the seen facts")
    speed = m["spoken_qa"]["speed"]
    first = (f"first audio chunk after {speed['first_audio_ms']:.0f} ms" if speed["first_audio_ms"] is not None
             else "no audio chunk")
    lines.append(f"  speed: {speed['tokens_per_s']:.0f} tokens/s, {first} "
                 f"(mean over the {speed['answers_with_audio']} of {speed['answers']} answers with audio)")
    for ex in m["spoken_qa"]["seen"]["examples"][:1] + m["spoken_qa"]["text_only"]["examples"][:1]:
        lines.append(f"  e.g. {ex['question']!r} -> {ex['answer']!r} (judge hears {ex['heard']!r})")
    lines.append(f"  wall time: {m['wall_seconds']:.0f} s (data and training {m['train_seconds']:.0f} s); "
                 f"every mode: python -m vita_mini.eval")
    return "\n".join(lines)
