"""The judge ASR: a small CTC recognizer with its own weights, used to score generated speech.

The paper transcribes generated speech with Whisper and reports WER against the intended text
(tutorials/paper.md §7: TTS and speech-to-speech QA). Whisper is far too big to download or train here, so
stage 0 also trains this judge on the synthesized corpus: log-mel -> conv stack (stride 2, 50 Hz)
-> CTC over characters. It is trained on clean and masked/noisy log-mel (SpecAugment-style), and
on the codec's decoded log-mel of the same batch (train/stage0.py), so it also reads the imperfect
speech that comes out of the decoder and Griffin-Lim.
"""

from __future__ import annotations

import torch
from torch import nn

from vita_mini.audio.conv import ResBlock, downsampler
from vita_mini.audio.ctc import ctc_loss, greedy_decode, n_labels
from vita_mini.audio.features import LogMel
from vita_mini.config import AudioConfig, JudgeConfig
from vita_mini.vocab import CHARSET


class JudgeASR(nn.Module):
    def __init__(self, cfg: JudgeConfig, audio: AudioConfig, alphabet: str = CHARSET):
        super().__init__()
        self.cfg, self.alphabet = cfg, alphabet  # what it spells (corpus.alphabet)
        self.logmel = LogMel(audio)
        self.body = nn.Sequential(downsampler(audio.n_mels, cfg.channels, cfg.downsample),
                                  *[ResBlock(cfg.channels, dilation=1 + i % 2)
                                    for i in range(cfg.n_blocks)])
        self.head = nn.Conv1d(cfg.channels, n_labels(alphabet), 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mels, F] -> CTC logits [B, F // downsample, len(alphabet) + 1]."""
        return self.head(self.body(mel)).transpose(1, 2)

    def training_loss(self, mel: torch.Tensor, frames: torch.Tensor, texts: list[str]) -> dict:
        logits = self(augment(mel))
        loss = ctc_loss(logits, frames // self.cfg.downsample, texts, self.alphabet)
        return {"loss": loss, "judge_ctc": loss.detach()}

    @torch.no_grad()
    def transcribe_mel(self, mel: torch.Tensor, frames: torch.Tensor) -> list[str]:
        return greedy_decode(self(mel), frames // self.cfg.downsample, self.alphabet)

    @torch.no_grad()
    def transcribe(self, wav: torch.Tensor) -> str:
        """wav [N] (16 kHz float) -> text."""
        device = next(self.parameters()).device
        mel = self.logmel(wav.to(device)[None])
        return self.transcribe_mel(mel, torch.tensor([mel.shape[-1]]))[0]


def augment(mel: torch.Tensor, max_time_mask: int = 8, max_freq_mask: int = 10,
            noise: float = 0.1) -> torch.Tensor:
    """SpecAugment-style: one random time mask, one frequency mask, and Gaussian noise per item."""
    B, M, F = mel.shape
    out = mel + noise * torch.rand(B, 1, 1, device=mel.device) * torch.randn_like(mel)
    t_len = torch.randint(0, max_time_mask + 1, (B, 1), device=mel.device)
    t_start = (torch.rand(B, 1, device=mel.device) * (F - t_len).clamp_min(1)).long()
    f_len = torch.randint(0, max_freq_mask + 1, (B, 1), device=mel.device)
    f_start = (torch.rand(B, 1, device=mel.device) * (M - f_len)).long()
    t = torch.arange(F, device=mel.device)[None, :]
    f = torch.arange(M, device=mel.device)[None, :]
    time_masked = ((t >= t_start) & (t < t_start + t_len))[:, None, :]  # [B, 1, F]
    freq_masked = ((f >= f_start) & (f < f_start + f_len))[:, :, None]  # [B, M, 1]
    return out.masked_fill(time_masked | freq_masked, 0.0)
