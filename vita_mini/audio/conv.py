"""Building blocks shared by the codec and the judge: 1-D convolutions over time."""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """x + Conv1x1(GELU(Conv_k(LayerNorm(x)))) on [B, C, T].

    LayerNorm normalizes each frame over its channels, so a frame's output never depends on how
    much padding shares its batch (GroupNorm/BatchNorm would).
    """

    def __init__(self, channels: int, kernel: int = 5, dilation: int = 1):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel // 2),
                              dilation=dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return x + self.proj(nn.functional.gelu(self.conv(h)))


def downsampler(in_channels: int, channels: int, factor: int) -> nn.Sequential:
    """[B, in, F] -> [B, channels, F // factor] with stride-2 convolutions (factor a power of 2)."""
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"downsample factor must be a power of two, got {factor}")
    layers = [nn.Conv1d(in_channels, channels, 3, padding=1), nn.GELU()]
    for _ in range(factor.bit_length() - 1):
        layers += [nn.Conv1d(channels, channels, 4, stride=2, padding=1), nn.GELU()]
    return nn.Sequential(*layers)


def upsampler(channels: int, factor: int) -> nn.Sequential:
    """[B, C, T] -> [B, C, T * factor] with stride-2 transposed convolutions."""
    layers = []
    for _ in range(factor.bit_length() - 1):
        layers += [nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1), nn.GELU()]
    return nn.Sequential(*layers)


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """lengths [B] -> bool mask [B, max_len], True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
