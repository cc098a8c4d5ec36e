"""Choosing the next token from logits: greedy, or sampling with the usual knobs.

Applied in this order (as Hugging Face's generate does): repetition penalty on tokens already in
the sequence (CTRL paper: positive logits divided by the penalty, negative ones multiplied),
temperature, top-k, then top-p (nucleus: the smallest set of tokens whose probabilities add up
to at least p). Temperature 0 means greedy: the argmax, no randomness at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vita_mini.errors import VitaError


@dataclass
class Sampling:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0  # 1 = no limit
    repetition_penalty: float = 1.0  # 1 = none
    seed: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise VitaError(f"temperature {self.temperature}: must be >= 0 (0 = greedy)")
        if self.top_k < 0:
            raise VitaError(f"top-k {self.top_k}: must be >= 0 (0 = no limit)")
        if not 0 < self.top_p <= 1:
            raise VitaError(f"top-p {self.top_p}: must lie in (0, 1]")
        if self.repetition_penalty <= 0:
            raise VitaError(f"repetition penalty {self.repetition_penalty}: must be > 0 (1 = none)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 and self.repetition_penalty == 1.0


def choose(logits: torch.Tensor, sampling: Sampling, seen: torch.Tensor | None = None,
           generator: torch.Generator | None = None) -> int:
    """logits [V] -> the next token id. ``seen``: ids already in the sequence (for the penalty)."""
    if sampling.greedy:
        return int(logits.argmax())
    logits = penalized(logits, sampling, seen)
    if sampling.temperature == 0:
        return int(logits.argmax())
    return int(torch.multinomial(probabilities(logits, sampling), 1, generator=generator))


def penalized(logits: torch.Tensor, sampling: Sampling, seen: torch.Tensor | None = None) -> torch.Tensor:
    """logits [V] -> a float copy with the repetition penalty applied to the ``seen`` ids."""
    logits = logits.float().clone()
    if sampling.repetition_penalty != 1.0 and seen is not None and seen.numel():
        ids = seen.unique()
        picked = logits[ids]
        logits[ids] = torch.where(picked > 0, picked / sampling.repetition_penalty,
                                  picked * sampling.repetition_penalty)
    return logits


def probabilities(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """logits [V] -> the distribution that sampling draws from (temperature > 0): temperature,
    top-k, then top-p, then softmax -> [V]."""
    logits = logits.float() / sampling.temperature
    if sampling.top_k > 0:
        kth = torch.topk(logits, min(sampling.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = logits.sort(descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= sampling.top_p  # mass before this token
        logits[order[drop]] = float("-inf")
    return logits.softmax(-1)
