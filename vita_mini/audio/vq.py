"""A single-codebook vector quantizer with EMA updates, dead-code restart and straight-through.

GLM-4-Voice (the tokenizer VITA-Audio uses, tutorials/paper.md §2) puts one vector
quantizer inside a Whisper encoder and trains it with the ASR objective. This is that quantizer:

* nearest neighbour: each encoder vector z is replaced by its closest codebook entry e_k, and k is
  the audio token;
* straight-through: the decoder sees e_k, the encoder receives the decoder's gradient as if
  quantization were the identity (z + (e_k - z).detach());
* EMA updates (van den Oord et al. 2017, appendix): the codebook is not trained by the optimizer;
  each entry drifts toward the running mean of the vectors assigned to it;
* commitment loss ||z - sg(e_k)||^2 keeps the encoder close to the codebook;
* dead-code restart: an entry whose running count falls below a threshold is moved onto a random
  encoder vector of the current batch, so the whole codebook stays in use.

Under torchrun (train/distributed.py) each rank sees only its share of the batch, so the EMA
statistics (counts and sums per entry) are added up over the ranks before the update, and the
random picks of the first batch and of restarts are rank 0's: every rank holds one codebook.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int, decay: float = 0.99,
                 commitment: float = 0.25, dead_threshold: float = 0.5, eps: float = 1e-5):
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.decay, self.commitment, self.dead_threshold, self.eps = decay, commitment, dead_threshold, eps
        self.register_buffer("codebook", torch.randn(codebook_size, dim))  # [K, D]
        self.register_buffer("ema_count", torch.zeros(codebook_size))  # [K]
        self.register_buffer("ema_sum", torch.zeros(codebook_size, dim))  # [K, D]
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the closest codebook entry for each row of z [N, D] -> [N]."""
        distances = (z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t()
                     + self.codebook.pow(2).sum(1)[None, :])  # [N, K]
        return distances.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [...] -> vectors [..., D]."""
        return F.embedding(codes, self.codebook)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None):
        """z [B, T, D], mask [B, T] (True = real frame) ->
        (quantized [B, T, D] with straight-through gradient, codes [B, T], commitment loss)."""
        z = z.float()  # distances and EMA statistics in fp32, even under autocast
        if mask is None:
            mask = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        flat = z[mask]  # [N, D] real frames only: padding must not move the codebook
        if self.training and not bool(self.initialized):
            self._initialize(flat.detach())
        codes = torch.zeros(z.shape[:2], dtype=torch.long, device=z.device)
        codes[mask] = self.nearest(flat.detach())
        if self.training:
            self._ema_update(flat.detach(), codes[mask])
        quantized = self.lookup(codes)  # [B, T, D]
        commit = (F.mse_loss(z, quantized.detach(), reduction="none").mean(-1)[mask].mean()
                  if mask.any() else z.sum() * 0)
        quantized = z + (quantized - z).detach()  # straight-through estimator
        return quantized, codes, self.commitment * commit

    @torch.no_grad()
    def _initialize(self, flat: torch.Tensor) -> None:
        """Start the codebook on random encoder outputs of the first batch."""
        picks = torch.randint(0, flat.shape[0], (self.codebook_size,), device=flat.device)
        self.codebook.copy_(flat[picks])
        self.ema_sum.copy_(flat[picks])
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)
        _from_rank_0(self.codebook, self.ema_sum)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.codebook_size).type_as(flat)  # [N, K]
        counts, sums = onehot.sum(0), onehot.t() @ flat  # [K], [K, D]
        _sum_over_ranks(counts, sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used entries from dividing by ~0
        total = self.ema_count.sum()
        count = (self.ema_count + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.ema_sum / count[:, None])
        self._restart_dead_codes(flat)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        dead = self.ema_count < self.dead_threshold  # [K]
        n_dead = int(dead.sum())  # the same on every rank: the counts are summed over ranks
        if n_dead == 0:
            return
        if flat.shape[0] > 0:
            picks = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
            self.codebook[dead] = flat[picks]
            self.ema_sum[dead] = flat[picks]
        self.ema_count[dead] = 1.0
        _from_rank_0(self.codebook, self.ema_sum)


def _several_ranks() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sum_over_ranks(*tensors: torch.Tensor) -> None:
    if _several_ranks():
        for tensor in tensors:
            dist.all_reduce(tensor)


def _from_rank_0(*tensors: torch.Tensor) -> None:
    if _several_ranks():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def codebook_usage(codes: torch.Tensor, codebook_size: int) -> tuple[float, float]:
    """(perplexity of the code distribution, share of the codebook used at least once)."""
    counts = torch.bincount(codes.flatten(), minlength=codebook_size).float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    return entropy.exp().item(), (counts > 0).float().mean().item()
