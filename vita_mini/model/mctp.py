"""The MCTP cascade: light modules that turn the LLM's hidden states into more tokens.

VITA-Audio's contribution (tutorials/paper.md §3; the design follows DeepSeek-V3's
multi-token prediction). Module k (0-based), at position p:

    a   = embed_norm_k(Embed(x_p))                 the LLM's own embedding table, own RMSNorm
    b   = hidden_norm_k(h^{k-1}_{p-1})             h^{-1} = the LLM's hidden state (after its
                                                   final norm); h^{k-1} = module k-1's output
    z   = proj_k(concat(a, b))                     2d -> d, no bias, embedding first
    z   = layer_k(z)                               one Qwen2 decoder layer, own KV cache
    h^k = norm(z);  logits = lm_head(h^k)          the LLM's own final norm and head

Every module predicts the next token at its own position: module k's output at position q is a
guess of x_{q+1}. Its chain reaches back k+1 positions to the LLM hidden state h_{q-k-1}, so
counted from the LLM state it started from (position p = q-k-1), module k predicts x_{p+k+2}.
That is what lets one LLM forward (which gives x_{p+1}) be followed by modules 0, 1, 2, ...,
each adding one more token, without running the LLM again.

Shapes: B batch, T positions, C = d_model, V vocabulary.

The cascade never owns the LLM's tensors: every method takes the LLM as an argument and uses
``llm.embed_tokens``, ``llm.norm`` and ``llm.lm_head`` themselves, so training the modules in
stage 4 also trains those shared tensors and a checkpoint stores them once.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from vita_mini.config import LLMConfig
from vita_mini.model.llm import LLM, DecoderLayer, KVCache, RMSNorm, packed_documents


class MCTPModule(nn.Module):
    """One module of the cascade: two norms, a 2d -> d projection and one decoder layer."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.embed_norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.hidden_norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.proj = nn.Linear(2 * cfg.d_model, cfg.d_model, bias=False)
        self.layer = DecoderLayer(cfg)

    def forward(self, llm: LLM, embeds: torch.Tensor, prev_hidden: torch.Tensor, cos, sin,
                cache: KVCache | None = None, documents=None) -> torch.Tensor:
        """embeds [B, T, C] of x_q and prev_hidden [B, T, C] = h^{k-1}_{q-1} -> h^k [B, T, C]
        (after the LLM's shared final norm; ``llm.lm_head`` of it gives the logits).

        As DecoderLayer: with ``cache`` the T positions are appended to the module's own cache
        (the causal mask is built inside); without, ``documents`` are the packed rows' document
        lengths (llm.py ``packed_documents``) or None (causal rows)."""
        z = self.proj(torch.cat([self.embed_norm(embeds), self.hidden_norm(prev_hidden)], dim=-1))
        return llm.norm(self.layer(z, cos, sin, cache, documents))


class MCTP(nn.Module):
    """The cascade of ``n_modules`` MCTP modules (10 in VITA-Audio)."""

    def __init__(self, cfg: LLMConfig, n_modules: int):
        super().__init__()
        if n_modules < 1:
            raise ValueError(f"an MCTP cascade needs at least one module, got {n_modules}")
        self.cfg = cfg
        self.mods = nn.ModuleList(MCTPModule(cfg) for _ in range(n_modules))
        for p in self.mods.parameters():  # the LLM's initialization (normal 0.02, zero biases)
            if p.dim() > 1:
                nn.init.normal_(p, mean=0.0, std=0.02)

    def __len__(self) -> int:
        return len(self.mods)

    @classmethod
    def from_llm(cls, llm: LLM) -> MCTP:
        """Stage 2's start: one module whose layer is a copy of the LLM's last layer; the
        projection random, the two norms at one (tutorials/paper.md §6)."""
        mctp = cls(llm.cfg, 1).to(llm.lm_head.weight.device)
        mctp.mods[0].layer.load_state_dict(llm.layers[-1].state_dict())
        return mctp

    def grown(self, n_modules: int) -> MCTP:
        """Stage 3's start: ``n_modules`` modules, module k a clone of module k-1, so all of
        them equal this cascade's last module."""
        mctp = MCTP(self.cfg, n_modules).to(next(self.parameters()).device)
        for k in range(n_modules):
            source = self.mods[k] if k < len(self) else self.mods[len(self) - 1]
            mctp.mods[k] = copy.deepcopy(source)
        return mctp

    # ---- training: every module over whole sequences, teacher forced -------------------------
    def forward(self, llm: LLM, tokens: torch.Tensor, llm_hidden: torch.Tensor,
                doc_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """tokens [B, T] and the LLM's hidden states [B, T, C] -> [h^0, h^1, ...], each [B, T, C].

        Module k at position q reads x_q and h^{k-1}_{q-1}; at the first position of a row or of
        a packed document there is no previous state, and it reads zeros (as the engine does at
        position 0). With doc_ids, attention stays inside each document and RoPE restarts."""
        B, T = tokens.shape
        if doc_ids is None:
            positions, documents = torch.arange(T, device=tokens.device), None
            starts = torch.zeros(B, T, dtype=torch.bool, device=tokens.device)
            starts[:, 0] = True
        else:
            positions, documents = packed_documents(doc_ids)  # [B, T], per row its lengths
            starts = positions == 0
        embeds = llm.embed(tokens)
        cos, sin = llm.rotary_emb(positions, embeds.dtype)
        keep = (~starts).unsqueeze(-1).to(embeds.dtype)  # [B, T, 1]
        outputs, prev = [], llm_hidden
        for module in self.mods:
            shifted = F.pad(prev[:, :-1], (0, 0, 1, 0)) * keep  # [B, T, C]: h_{q-1}, 0 at starts
            prev = module(llm, embeds, shifted, cos, sin, documents=documents)
            outputs.append(prev)
        return outputs


def module_labels(labels: torch.Tensor, positions: torch.Tensor, k: int) -> torch.Tensor:
    """Targets of module k: next-token labels [B, T] (IGNORE where no loss), kept only where the
    module's chain reaches a real LLM state, i.e. at document positions q >= k + 1."""
    return torch.where(positions >= k + 1, labels, torch.full_like(labels, -100))


def doc_positions(tokens: torch.Tensor, doc_ids: torch.Tensor | None) -> torch.Tensor:
    """Position of every token inside its document, [B, T] (restarting at 0 per document)."""
    if doc_ids is None:
        return torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    return packed_documents(doc_ids)[0]
