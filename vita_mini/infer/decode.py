"""Plain autoregressive decoding with the LLM's KV cache (the Vanilla mode, greedy).

One prefill forward over the prompt, then one forward per new token, each reusing the cached
keys and values and computing logits for the last position only.
"""

from __future__ import annotations

import torch

from vita_mini.model.llm import LLM
from vita_mini.vocab import END


@torch.no_grad()
def greedy_generate(model: LLM, prompt: list[int], max_new_tokens: int, stop: int = END) -> list[int]:
    """Greedy continuation of ``prompt`` (without the prompt), stopping after ``stop``."""
    if not prompt:
        raise ValueError("the prompt is empty")
    max_new_tokens = min(max_new_tokens, model.cfg.max_seq_len - len(prompt))
    if max_new_tokens <= 0:
        raise ValueError(f"a prompt of {len(prompt)} tokens leaves no room in llm.max_seq_len="
                         f"{model.cfg.max_seq_len}")
    device = next(model.parameters()).device
    cache = model.new_cache(1, len(prompt) + max_new_tokens)
    tokens = torch.tensor([prompt], device=device)  # [1, T]
    out = []
    for _ in range(max_new_tokens):
        logits, _ = model(tokens, cache=cache, logits_for_last_only=True)  # [1, 1, V]
        token = int(logits[0, -1].argmax())
        out.append(token)
        if token == stop:
            break
        tokens = torch.tensor([[token]], device=device)
    return out
