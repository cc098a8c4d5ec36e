"""Plain autoregressive decoding with the LLM's KV cache (the Vanilla mode, greedy).

One prefill forward over the prompt, then one forward per new token, each reusing the cached
keys and values and computing logits for the last position only.
"""

from __future__ import annotations

import torch

from vita_mini.errors import VitaError
from vita_mini.model.llm import LLM
from vita_mini.vocab import END


def check_prompt(prompt: list[int], max_seq_len: int) -> None:
    """Refuse an empty prompt, or one that leaves no room to generate (no silent truncation)."""
    if not prompt:
        raise VitaError("the prompt is empty")
    if len(prompt) >= max_seq_len:
        raise VitaError(f"the prompt is {len(prompt)} tokens, too long for llm.max_seq_len="
                        f"{max_seq_len} (shorten the input: 25 audio tokens per second, one token "
                        f"per text byte)")


@torch.no_grad()
def greedy_generate(model: LLM, prompt: list[int], max_new_tokens: int, stop: int = END) -> list[int]:
    """Greedy continuation of ``prompt`` (without the prompt), stopping after ``stop``."""
    check_prompt(prompt, model.cfg.max_seq_len)
    max_new_tokens = min(max_new_tokens, model.cfg.max_seq_len - len(prompt))
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
