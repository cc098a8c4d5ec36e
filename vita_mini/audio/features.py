"""Log-mel front end and the way back to a waveform (torchaudio DSP only).

Both the audio tokenizer and the judge ASR read speech as a normalized log-mel spectrogram:
80 mel bands, 25 ms windows, 10 ms hop -> 100 frames per second. The detokenizer predicts the
same log-mel, and ``mel_to_wav`` turns it back into sound: undo the log and the normalization,
map mel bands back to linear-frequency bins (torchaudio's InverseMelScale, a least-squares
solve), then recover a phase with Griffin-Lim (torchaudio). GLM-4-Voice, the tokenizer VITA-Audio
uses, has a flow-matching model and a HiFi-GAN vocoder here; Griffin-Lim needs no training.
"""

from __future__ import annotations

import torch
import torchaudio

from vita_mini.config import AudioConfig

LOG_FLOOR = 1e-5  # mel power below this is silence
LOG_MEAN, LOG_STD = -5.0, 4.0  # fixed normalization: (log(mel) - LOG_MEAN) / LOG_STD


class LogMel(torch.nn.Module):
    """wav [B, N] -> normalized log-mel [B, n_mels, N // hop_length]."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.hop = cfg.hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
            hop_length=cfg.hop_length, n_mels=cfg.n_mels, power=2.0)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        n_frames = wav.shape[-1] // self.hop
        mel = self.mel(wav.float())[..., :n_frames]  # centered STFT has one frame too many
        return (torch.log(mel.clamp_min(LOG_FLOOR)) - LOG_MEAN) / LOG_STD


SILENCE = (torch.log(torch.tensor(LOG_FLOOR)) - LOG_MEAN).item() / LOG_STD  # log-mel of silence


class MelToWav(torch.nn.Module):
    """normalized log-mel [n_mels, F] -> wav [F * hop_length] via InverseMelScale + Griffin-Lim."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.hop = cfg.hop_length
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=cfg.n_fft // 2 + 1, n_mels=cfg.n_mels, sample_rate=cfg.sample_rate,
            driver="gelsd")
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length, power=2.0,
            n_iter=cfg.griffin_lim_iters, rand_init=False)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        mel = torch.exp(logmel.float() * LOG_STD + LOG_MEAN)  # [..., n_mels, F] power
        power = self.inverse_mel(mel).clamp_min(0.0)  # [..., n_fft // 2 + 1, F]
        wav = self.griffin_lim(power)
        n = logmel.shape[-1] * self.hop
        wav = torch.nn.functional.pad(wav, (0, max(0, n - wav.shape[-1])))[..., :n]
        return wav / wav.abs().amax(dim=-1, keepdim=True).clamp_min(1e-4) * 0.5
