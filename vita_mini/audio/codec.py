"""The audio tokenizer and detokenizer, trained from scratch in stage 0.

VITA-Audio uses GLM-4-Voice's tokenizer (tutorials/paper.md §2): a speech encoder
with a vector quantizer inside, trained with an ASR objective so that its tokens carry *what is
said* ("supervised semantic tokens"), plus a separate detokenizer back to sound. Ours, at laptop
scale:

    wav -> log-mel [B, 80, 4T] -> lifter -> conv encoder (stride 4) -> z [B, T, D] -> VQ -> codes [B, T]
                                                          quantized [B, T, D]
                                    CTC head (3-token window) <-/      \\-> conv decoder <- voice
                                    transcript (semantic loss)          log-mel [B, 80, 4T]
                                                                         -> Griffin-Lim -> wav

With a 10 ms mel hop and downsample 4 the token rate is 25 Hz (one token per 640 samples).
The CTC head sees only three neighbouring tokens, so the transcript has to be in the tokens.
The decoder is told the voice (as GLM-4-Voice's flow-matching decoder is conditioned on a speaker
embedding), so the tokens need not spend codes on who is speaking: the same words in different
voices get similar tokens, which makes them far easier for the LLM to read and write. How it is
told is ``codec.voice``:

    "id"         a learned vector per built-in voice (the toy world's six): ``decode(codes, speaker=k)``
    "reference"  the vector the speaker encoder (audio/speaker.py) computes from a short recording
                 of the voice, at most ``codec.reference_seconds`` of it, so a corpus of many
                 speakers needs no table of them: ``decode(codes, wav)``, a waveform [N] at 16 kHz,
                 or ``decode(codes, codec.speaker_embedding(wav))``, its embedding [1, C], computed once

The encoder also reads a *smoothed* log-mel: each frame is projected onto its first
``codec.lifter`` cepstral (DCT) coefficients, the classic liftering behind MFCCs. That keeps the
spectral envelope (formants: what is said) and drops the fine ripple of the pitch harmonics (who
says it), one more push towards tokens that are the same across voices. The decoder still
predicts the full log-mel, harmonics included, from the tokens and the voice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from vita_mini.audio.conv import ResBlock, downsampler, length_mask, upsampler
from vita_mini.audio.ctc import ctc_loss, n_labels
from vita_mini.audio.features import SILENCE, LogMel, MelToWav
from vita_mini.audio.speaker import MIN_REFERENCE_SECONDS, SpeakerEncoder
from vita_mini.audio.vq import VectorQuantizer
from vita_mini.config import AudioConfig, CodecConfig
from vita_mini.vocab import CHARSET


class AudioCodec(nn.Module):
    def __init__(self, cfg: CodecConfig, audio: AudioConfig, alphabet: str = CHARSET):
        super().__init__()
        self.cfg, self.audio = cfg, audio
        self.alphabet = alphabet  # what the CTC head spells (corpus.alphabet)
        C, D = cfg.channels, cfg.code_dim
        self.samples_per_token = audio.hop_length * cfg.downsample  # 640 at 16 kHz, 25 Hz
        self.token_hz = audio.sample_rate / self.samples_per_token
        self.logmel = LogMel(audio)
        self.register_buffer("smoother", envelope_projection(audio.n_mels, cfg.lifter), persistent=False)
        self.mel_to_wav = MelToWav(audio)
        self.encoder = nn.Sequential(downsampler(audio.n_mels, C, cfg.downsample),
                                     *[ResBlock(C) for _ in range(cfg.n_blocks)],
                                     nn.Conv1d(C, D, 1))
        self.vq = VectorQuantizer(cfg.codebook_size, D, cfg.ema_decay, cfg.commitment,
                                  cfg.dead_code_threshold)
        self.ctc_head = nn.Sequential(nn.Conv1d(D, C, 3, padding=1), nn.GELU(),
                                      nn.Conv1d(C, n_labels(alphabet), 1))
        self.decoder_in = nn.Conv1d(D, C, 3, padding=1)
        if cfg.voice == "id":
            self.voice = nn.Embedding(cfg.n_voices, C)  # [n_voices, C], added at every frame
        else:  # "reference": a recording's speaker embedding [C], added at every frame
            self.speaker = SpeakerEncoder(audio.n_mels, C, cfg.downsample)
        # a reference is cut to whole tokens, at most reference_seconds of them
        self.reference_samples = max(1, int(cfg.reference_seconds * audio.sample_rate)
                                     // self.samples_per_token) * self.samples_per_token
        self.reference_frames = self.reference_samples // audio.hop_length  # 300 for 3 s
        self.decoder = nn.Sequential(*[ResBlock(C) for _ in range(cfg.n_blocks)],
                                     upsampler(C, cfg.downsample),
                                     nn.Conv1d(C, audio.n_mels, 3, padding=1))

    # ---- the pieces -------------------------------------------------------------------------
    def quantize(self, mel: torch.Tensor, n_tokens: torch.Tensor | None = None):
        """mel [B, n_mels, 4T] -> (quantized [B, T, D], codes [B, T], commitment loss)."""
        envelope = torch.einsum("mk,bkf->bmf", self.smoother, mel.float()).to(mel.dtype)
        z = self.encoder(envelope).transpose(1, 2)  # [B, D, T] -> [B, T, D]
        mask = None if n_tokens is None else length_mask(n_tokens, z.shape[1])
        return self.vq(z, mask)

    def ctc_logits(self, quantized: torch.Tensor) -> torch.Tensor:
        """quantized [B, T, D] -> CTC logits [B, T, len(alphabet) + 1]."""
        return self.ctc_head(quantized.transpose(1, 2)).transpose(1, 2)

    def voice_vectors(self, voice: int | torch.Tensor, batch: int) -> torch.Tensor:
        """The decoder's condition, [batch, C]. ``voice``: with codec.voice=id a voice id (int, or
        ids [B]); with codec.voice=reference a reference waveform [N] (16 kHz) or speaker
        embeddings [1 or B, C] (``speaker_embedding``, or the speaker encoder on a batch)."""
        is_float = torch.is_tensor(voice) and voice.is_floating_point()
        if self.cfg.voice == "id":
            if is_float:
                raise ValueError("this codec's decoder knows only voice ids (codec.voice=id), "
                                 "not a reference recording or embedding")
            return self.voice(torch.as_tensor(voice, device=self.voice.weight.device).expand(batch))
        if not is_float:
            raise ValueError("this codec's decoder is told the voice by a reference recording "
                             "(codec.voice=reference): pass a waveform [N] or an embedding [1, C], not a voice id")
        embedding = self.speaker_embedding(voice) if voice.dim() == 1 else voice
        return embedding.expand(batch, -1)

    def decode_vectors(self, vectors: torch.Tensor, voice: int | torch.Tensor) -> torch.Tensor:
        """quantized vectors [B, T, D], voice (``voice_vectors``) -> normalized log-mel [B, n_mels, 4T]."""
        condition = self.voice_vectors(voice, vectors.shape[0])  # [B, C]
        h = self.decoder_in(vectors.transpose(1, 2)) + condition[:, :, None]  # [B, C, T]
        return self.decoder(h)

    def decode_mel(self, codes: torch.Tensor, speaker: int | torch.Tensor = 0) -> torch.Tensor:
        """codes [B, T] or [T], voice (``voice_vectors``) -> normalized log-mel [B, n_mels, 4T]
        (or [n_mels, 4T])."""
        single = codes.dim() == 1
        codes = codes[None] if single else codes
        mel = self.decode_vectors(self.vq.lookup(codes), speaker)
        return mel[0] if single else mel

    def speaker_embedding(self, wav: torch.Tensor) -> torch.Tensor:
        """Reference waveform [N] (16 kHz float, at least MIN_REFERENCE_SECONDS) -> speaker
        embedding [1, C] of its first ``codec.reference_seconds`` (codec.voice=reference)."""
        rate = self.audio.sample_rate
        if wav.dim() != 1 or wav.numel() < MIN_REFERENCE_SECONDS * rate:
            raise ValueError(f"a voice reference is a 1-D waveform of at least {MIN_REFERENCE_SECONDS:g} s "
                             f"({int(MIN_REFERENCE_SECONDS * rate)} samples), got shape {tuple(wav.shape)}")
        wav = self.pad_wav(wav[:self.reference_samples].to(next(self.parameters()).device))
        return self.speaker(self.logmel(wav[None]))  # log-mel [1, n_mels, F <= reference_frames] -> [1, C]

    # ---- training ---------------------------------------------------------------------------
    def training_loss(self, mel: torch.Tensor, frames: torch.Tensor, texts: list[str],
                      voices: torch.Tensor) -> dict:
        """mel [B, n_mels, F] padded with silence, F and frames multiples of downsample; voices
        the decoder's condition: voice ids [B], or speaker embeddings [B, C] (codec.voice=reference)."""
        n_tokens = frames // self.cfg.downsample
        quantized, codes, commit = self.quantize(mel, n_tokens)
        ctc = ctc_loss(self.ctc_logits(quantized), n_tokens, texts, self.alphabet)
        recon = self.decode_vectors(quantized, voices)  # [B, n_mels, F]
        frame_mask = length_mask(frames, mel.shape[-1])[:, None, :]  # [B, 1, F]
        mel_l1 = (F.l1_loss(recon.float(), mel.float(), reduction="none") * frame_mask).sum() / (
            frame_mask.sum() * mel.shape[1])
        loss = self.cfg.mel_weight * mel_l1 + self.cfg.ctc_weight * ctc + commit
        return {"loss": loss, "mel_l1": mel_l1.detach(), "codec_ctc": ctc.detach(),
                "commit": commit.detach(), "codes": codes, "n_tokens": n_tokens,
                "recon": recon.detach().float().masked_fill(~frame_mask, SILENCE)}

    # ---- the public API ---------------------------------------------------------------------
    def pad_wav(self, wav: torch.Tensor) -> torch.Tensor:
        """Zero-pad the last dimension to a whole number of tokens (640 samples at 25 Hz)."""
        n = wav.shape[-1]
        target = -(-n // self.samples_per_token) * self.samples_per_token
        return F.pad(wav, (0, target - n))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [N] (16 kHz float) -> codes LongTensor [ceil(N / 640)]."""
        if wav.dim() != 1 or wav.numel() == 0:
            raise ValueError(f"encode expects a non-empty 1-D waveform, got shape {tuple(wav.shape)}")
        device = next(self.parameters()).device
        mel = self.logmel(self.pad_wav(wav.to(device))[None])  # [1, n_mels, 4T]
        _, codes, _ = self.quantize(mel)
        return codes[0]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, speaker: int | torch.Tensor = 0) -> torch.Tensor:
        """codes [T] -> wav [T * 640] (16 kHz float, CPU) via Griffin-Lim, in the voice ``speaker``:
        a voice id (codec.voice=id), or a reference waveform [N] or embedding [1, C] (reference)."""
        if codes.dim() != 1 or codes.numel() == 0:
            raise ValueError(f"decode expects a non-empty 1-D code tensor, got shape {tuple(codes.shape)}")
        if int(codes.min()) < 0 or int(codes.max()) >= self.cfg.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.cfg.codebook_size})")
        if self.cfg.voice == "id" and not torch.is_tensor(speaker) and not 0 <= speaker < self.cfg.n_voices:
            raise ValueError(f"speaker must lie in [0, {self.cfg.n_voices})")
        device = next(self.parameters()).device
        mel = self.decode_mel(codes.to(device), speaker).float().cpu()
        return self.mel_to_wav.cpu()(mel)


def envelope_projection(n_mels: int, n_keep: int) -> torch.Tensor:
    """[n_mels, n_mels] matrix keeping the first ``n_keep`` DCT coefficients of a log-mel frame
    (an orthogonal projection: DCT, zero the rest, inverse DCT); the identity when n_keep is 0."""
    if n_keep <= 0 or n_keep >= n_mels:
        return torch.eye(n_mels)
    dct = torchaudio.functional.create_dct(n_keep, n_mels, norm="ortho")  # [n_mels, n_keep]
    return dct @ dct.T


def pad_mels(mels: list[torch.Tensor], multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """List of [n_mels, F_i] -> (batch [B, n_mels, F_max] padded with silence, frames [B]).

    Each F_i is first cut down to a multiple of ``multiple`` (a whole number of tokens)."""
    frames = torch.tensor([m.shape[-1] // multiple * multiple for m in mels])
    batch = torch.full((len(mels), mels[0].shape[0], int(frames.max())), SILENCE)
    for i, (m, n) in enumerate(zip(mels, frames.tolist())):
        batch[i, :, :n] = m[:, :n]
    return batch, frames
