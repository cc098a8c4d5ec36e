"""The speaker encoder: a short recording of a voice -> one vector that says who is speaking.

A *speaker embedding* is a fixed-size vector computed from any stretch of someone's speech, such
that recordings of the same person land close together and those of different people far apart,
whatever they say. The classic recipes train a network to tell the speakers of a corpus apart and
then keep its inner layer as the embedding: the *d-vector* averages a frame-level network's last
hidden layer over the recording; the *x-vector* runs time-delay (1-D conv) layers over the
frames, pools their mean and standard deviation over time, and passes that through a few more
layers. Either way, the vector can describe a voice the network never heard in training.

GLM-4-Voice's detokenizer, which VITA-Audio uses (tutorials/paper.md §2), is conditioned on such
a vector: its flow-matching model turns the semantic tokens into a mel spectrogram *in the voice
of a speaker embedding*, so the tokens need not carry the voice, and a few seconds of anyone's
speech choose who speaks. With ``codec.voice=reference`` our conv decoder (audio/codec.py) does
the same at toy scale: instead of a learned vector per built-in voice id it adds, at every frame,
the vector this encoder computes from a reference recording. Nothing here is pretrained: stage 0
trains this encoder jointly with the codec (train/stage0.py), on a reference that is always
*another* recording of the same speaker, so that the vector cannot carry the words being
reconstructed. Two losses reach it: the decoder's mel loss, and ``speaker_contrast``, which tells
it, as the d-vector's speaker classification does, which recordings of a batch share a speaker.
The mel loss alone taught it too little: at the quick preset the embeddings of two speakers
stayed almost as alike as two of one speaker's (cosine 0.69 against 1.00; with the contrast,
-0.30), two of the four voices merged into one, and a soprano's reference came out 33 Hz lower
(tutorials/00_speech_and_tokens.md).

    reference wav [N] -> first codec.reference_seconds -> log-mel [B, n_mels, F]   (100 frames/s)
      -> conv, stride 4 -> ResBlock -> h [B, C/2, F/4]     local features, one per 40 ms
      -> mean over the real frames -> [B, C/2] -> Linear -> LayerNorm -> speaker embedding [B, C]

Half the decoder's width is enough to tell voices apart, and keeps the encoder cheap: it runs
twice per training step, on the references and on the utterances themselves (for the contrast).

Why a mean over the whole recording keeps *who* and loses *what*: the voice is in every frame
alike (the pitch range, the spacing of the formants that the length of the vocal tract sets,
the timbre), while the words are in the *order* of the frames. A mean forgets the order (shuffle
the frames and it does not change), so what is left is how the frame features are distributed
over the recording, a learned cousin of the long-term average spectrum. That distribution depends
on the speaker; over a few seconds it depends only weakly on which sentence was said, since any
sentence mixes many sounds. A very short reference mixes few, so its mean still leans towards
its words: hence a minimum length (``MIN_REFERENCE_SECONDS``), and a few seconds to learn from.
"""

from __future__ import annotations

import torch
from torch import nn

from vita_mini.audio.conv import ResBlock, downsampler, length_mask

MIN_REFERENCE_SECONDS = 0.5  # a shorter recording says too little about a voice


class SpeakerEncoder(nn.Module):
    """log-mel of reference recordings [B, n_mels, F] (real frames [B]) -> embeddings [B, C]."""

    def __init__(self, n_mels: int, channels: int, downsample: int = 4, n_blocks: int = 1):
        super().__init__()
        self.downsample, width = downsample, channels // 2
        self.frames = nn.Sequential(downsampler(n_mels, width, downsample),
                                    *[ResBlock(width) for _ in range(n_blocks)])
        self.out = nn.Linear(width, channels)
        self.norm = nn.LayerNorm(channels)

    def forward(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """mel [B, n_mels, F], padded after ``frames`` [B] real frames (default: none padded)."""
        h = self.frames(mel)  # [B, C / 2, F // downsample]
        steps = torch.full((h.shape[0],), h.shape[-1], device=h.device) if frames is None \
            else frames // self.downsample  # [B] real steps
        mask = length_mask(steps, h.shape[-1])[:, None, :].to(h.dtype)  # [B, 1, F // downsample]
        pooled = (h * mask).sum(-1) / mask.sum(-1).clamp_min(1)  # [B, C / 2]: mean over time
        return self.norm(self.out(pooled))  # [B, C]


def speaker_contrast(embeddings: torch.Tensor, same: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss on embeddings [N, C], ``same`` [N, N] True where two recordings
    share a speaker: each embedding's cosine to those of its speaker's other recordings is pulled
    up, to everyone else's pushed down (a softmax over the batch). Rows with no other recording
    of their speaker do not count. Scalar."""
    e = nn.functional.normalize(embeddings.float(), dim=-1)
    itself = torch.eye(len(e), dtype=torch.bool, device=e.device)
    log_p = (e @ e.T / temperature).masked_fill(itself, float("-inf")).log_softmax(-1)  # [N, N]
    positive = same & ~itself
    n = positive.sum(-1)  # [N]
    per_row = -log_p.masked_fill(~positive, 0).sum(-1) / n.clamp_min(1)
    return per_row[n > 0].mean() if bool((n > 0).any()) else e.sum() * 0
