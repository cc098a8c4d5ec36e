"""The language model: a decoder-only Transformer with exactly the Qwen2 architecture.

VITA-Audio (Long et al., 2025, arXiv 2505.03739) builds on Qwen2.5-7B-Instruct, whose architecture
is Qwen2 (Yang et al., 2024, arXiv 2407.10671). This file is that architecture at toy size:

    tokens [B, T] -> embed_tokens -> n_layers x DecoderLayer -> norm -> lm_head -> logits [B, T, V]

    DecoderLayer:  x = x + o_proj(attention(rope(q_proj(rms(x))), rope(k_proj(..)), v_proj(..)))
                   x = x + down_proj(silu(gate_proj(rms(x))) * up_proj(rms(x)))

Qwen2 specifics: RMSNorm (pre-norm), grouped-query attention (n_kv_heads <= n_heads) whose
q/k/v projections have a bias and whose o_proj has none, rotary position embedding in the
"rotate half" layout, a SwiGLU MLP without biases, and an lm_head that is NOT tied to the
embedding (as in Qwen2.5-7B). Submodules carry the Hugging Face names, so our state_dict maps one
to one onto a HF ``Qwen2ForCausalLM`` checkpoint through :func:`hf_qwen2_key`.

Shapes: B batch, T new positions, S key positions (cached + new), C = d_model, H query heads,
Hkv key/value heads, D = head_dim = C // H, V vocabulary.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from vita_mini.config import LLMConfig

# Attention kernels for decoding on a GPU. cuDNN's is left out: it builds a plan for every new
# key length, and while decoding the length grows by one each step (measured on an H200, bf16:
# 7.4 ms of CPU time per call; a 6-layer model generated about 8x slower).
DECODE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def hf_qwen2_key(name: str) -> str:
    """Map one of our state_dict keys to the Hugging Face Qwen2ForCausalLM key.

    Everything lives under ``model.`` in HF except the head:
    ``layers.0.self_attn.q_proj.bias`` -> ``model.layers.0.self_attn.q_proj.bias``,
    ``lm_head.weight`` -> ``lm_head.weight``. (Rotary inv_freq is a non-persistent buffer, as
    in recent transformers, so it is not in the state_dict.)
    """
    return name if name.startswith("lm_head.") else "model." + name


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 like HF's Qwen2RMSNorm."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of rotary position embedding for given integer positions.

    Frequencies inv_freq[i] = theta^(-2i/D) for i < D/2; angle = position * inv_freq, duplicated
    to length D ("rotate half" layout: dims i and i + D/2 form one rotating pair).
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # [D/2]

    def forward(self, positions: torch.Tensor, dtype: torch.dtype = torch.float32):
        """positions [T] or [B, T] (int) -> (cos, sin), each [T, D] or [B, T, D], in ``dtype``."""
        angles = positions.float().unsqueeze(-1) * self.inv_freq  # [..., T, D/2], float32
        emb = torch.cat((angles, angles), dim=-1)  # [..., T, D]
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D] by cos/sin [T, D] or [B, T, D] (one set per batch row)."""
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, D]: broadcast over heads
    return x * cos + rotate_half(x) * sin


@lru_cache(maxsize=8)
def causal_mask(T: int, S: int, device=None, groups: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Bool [T, S], True = may attend: the T new queries sit at positions S-T .. S-1.
    ``groups`` > 1: the mask repeated for that many stacked query groups, [groups*T, S]
    (attend_stacked_groups). ``dtype`` (a float type): the same mask as SDPA adds it to the
    scores, 0 where allowed and -inf elsewhere.

    The mask of cached decoding (Attention.attend_cached); whole rows use SDPA's is_causal.
    Every layer of one forward asks for the same mask, so the last few are kept (never modify
    the returned tensor): a catch-up forward builds its mask once, not once per layer. It is
    built as floats for the same reason: SDPA turns a bool mask into floats on every call
    (measured on a 2-core Intel Xeon, 11 new queries of 6 heads per k/v head, 600 keys: 250 us
    an attention call with the bool mask, 219 with the float one)."""
    mask = torch.arange(S, device=device) <= torch.arange(S - T, S, device=device).unsqueeze(1)
    if dtype is not None:
        mask = torch.zeros(T, S, device=device, dtype=dtype).masked_fill_(~mask, float("-inf"))
    return mask.repeat(groups, 1) if groups > 1 else mask


def expand_kv_heads(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head for the n_rep query heads that share it (HF's ``repeat_kv``).

    x [B, Hkv, S, D] -> [B, Hkv*n_rep, S, D]; head h of the result is head h // n_rep of x, so
    query head h reads k/v head h // n_rep. A copy, except that n_rep == 1 returns x itself.
    """
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def attend_stacked_groups(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """Grouped-query attention that reads k and v in place (no expand_kv_heads copy).

    q [B, H, T, D]; k, v [B, Hkv, S, D] (views of a KVCache); mask None, [T, S], or [G*T, S]
    already repeated (``causal_mask(T, S, groups=G)``), bool or additive float -> [B, H, T, D].
    The G = H/Hkv query heads that share k/v head j are stacked as G*T query
    rows of head j: q [B, H, T, D] -> [B, Hkv, G*T, D], row g*T + t = query head j*G + g at new
    position t, and the mask is repeated to match, [G*T, S]. One attention call then serves all
    heads without copying the cache, which is what keeps a decoding step cheap.
    """
    B, H, T, D = q.shape
    Hkv = k.size(1)
    G = H // Hkv
    if mask is not None and mask.size(0) != G * T:
        mask = mask.repeat(G, 1)  # [G*T, S]
    with sdpa_kernel(DECODE_BACKENDS) if q.is_cuda else nullcontext():
        y = F.scaled_dot_product_attention(q.reshape(B, Hkv, G * T, D), k, v, attn_mask=mask)
    return y.reshape(B, H, T, D)  # the CUDA kernels may return it strided


class KVCache:
    """Keys and values of one attention layer, for incremental decoding.

    Preallocated buffers k, v [B, Hkv, max_len, D] hold the first ``length`` positions (keys are
    stored after RoPE). ``update`` writes T new positions in place and returns views of
    everything so far, so a decode step allocates nothing big.
    """

    def __init__(self, batch_size, n_kv_heads, max_len, head_dim, device=None, dtype=None):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.size(2)

    def update(self, k: torch.Tensor, v: torch.Tensor):
        """k, v [B, Hkv, T, D] -> all keys and values so far, [B, Hkv, length + T, D]."""
        start, end = self.length, self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} positions > max_len {self.max_len}")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE: each of the Hkv k/v heads serves H/Hkv q heads.

    Two paths, chosen by whether a KVCache is given:

    * ``attend_rows`` (no cache: training, and any full forward, one token included): whole
      rows, causal, or causal inside each packed document (``attend_documents``).
    * ``attend_cached`` (decoding): the T new positions are appended to the cache and attend to
      everything in it, with the offset causal mask when T > 1.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None = None, documents=None):
        """x [B, T, C] -> [B, T, C]; cos/sin [T, D] or [B, T, D] for the T new positions.

        documents (rows only): None = causal over the row, or per row the lengths of its packed
        documents (``packed_documents``)."""
        if cache is None:
            return self.attend_rows(x, cos, sin, documents)
        if documents is not None:
            raise ValueError("packed documents are for whole rows, not for cached decoding")
        return self.attend_cached(x, cos, sin, cache)

    def projections(self, x):
        """x [B, T, C] -> q [B, T, H*D], k and v [B, T, Hkv*D]. (Decoding on a CPU computes the
        three as one product: infer/decoding_layout.py.)"""
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def project(self, x, cos, sin):
        """x [B, T, C] -> q [B, H, T, D], k and v [B, Hkv, T, D], q and k rotated by RoPE."""
        B, T, _ = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.projections(x)
        q = q.view(B, T, H, D).transpose(1, 2)  # [B, H, T, D]
        k = k.view(B, T, Hkv, D).transpose(1, 2)  # [B, Hkv, T, D]
        v = v.view(B, T, Hkv, D).transpose(1, 2)  # [B, Hkv, T, D]
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        """y [B, H, T, D] -> o_proj of the heads side by side, [B, T, C]."""
        B, H, T, D = y.shape
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))

    def attend_rows(self, x, cos, sin, documents=None):
        """Training: whole rows, no cache. documents None = causal over the row; else each
        row's document lengths, and each document attends only to itself."""
        q, k, v = self.project(x, cos, sin)
        n_rep = self.n_heads // self.n_kv_heads
        k, v = expand_kv_heads(k, n_rep), expand_kv_heads(v, n_rep)  # [B, H, T, D]
        if documents is None:
            return self.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        return self.merge_heads(attend_documents(q, k, v, documents))

    def attend_cached(self, x, cos, sin, cache: KVCache):
        """Decoding: append the T new positions to ``cache`` and attend to all S cached keys.

        One new query (T = 1) may see every key: no mask. T new queries after S-T cached keys
        (the prefill, or the catch-up forward after MCTP steps) get the offset causal mask
        [T, S], built here and only here."""
        q, k, v = self.project(x, cos, sin)
        k, v = cache.update(k, v)  # [B, Hkv, S, D], S = cached + T
        T, S = q.size(2), k.size(2)
        G = self.n_heads // self.n_kv_heads
        mask = causal_mask(T, S, x.device, G, q.dtype) if T > 1 else None  # [G*T, S], once per forward
        return self.merge_heads(attend_stacked_groups(q, k, v, mask))


class MLP(nn.Module):
    """SwiGLU: down_proj(silu(gate_proj(x)) * up_proj(x)), no biases."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def gate_and_up(self, x):
        """x [B, T, C] -> the two products of width d_ff, [B, T, F] each. (Decoding on a CPU
        computes them as one product: infer/decoding_layout.py.)"""
        return self.gate_proj(x), self.up_proj(x)

    def forward(self, x):
        gate, up = self.gate_and_up(x)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    """One pre-norm Qwen2 block. Usable alone (the MCTP modules run one with their own cache)."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.self_attn = Attention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.mlp = MLP(cfg.d_model, cfg.d_ff)

    def forward(self, x, cos, sin, cache: KVCache | None = None, documents=None):
        """x [B, T, C] -> [B, T, C].

        cos/sin: [T, D] or [B, T, D] for the new positions (from RotaryEmbedding).
        cache: this layer's KVCache; it is extended by the T new positions, which see every
        cached key and each other up to themselves (Attention.attend_cached).
        documents (no cache only): None = causal over each row, or per row the lengths of its
        packed documents, each attending only to itself (Attention.attend_rows).
        """
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, documents)
        return x + self.mlp(self.post_attention_layernorm(x))


def packed_documents(doc_ids: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
    """doc_ids [B, T] -> RoPE positions [B, T] restarting at 0 per document, and per row the
    lengths of its documents, in order. A document is a maximal run of equal ids (padding is
    one too), so a repeated id further on starts a new document."""
    B, T = doc_ids.shape
    idx = torch.arange(T, device=doc_ids.device).expand(B, T)
    new_doc = torch.ones_like(doc_ids, dtype=torch.bool)
    new_doc[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    doc_start = torch.where(new_doc, idx, 0).cummax(dim=1).values  # [B, T]
    lengths = [torch.unique_consecutive(row, return_counts=True)[1].tolist() for row in doc_ids.cpu()]
    return idx - doc_start, lengths


def attend_documents(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     documents: list[list[int]]) -> torch.Tensor:
    """Causal attention inside each packed document: q, k, v [B, H, T, D] -> [B, H, T, D].

    One attention call per document (``documents``: per row, its document lengths), so no score
    between two documents is ever computed. The equivalent single call with a block-diagonal
    mask [B, 1, T, T] computes all T x T scores of a row and throws most away: with samples of
    about 100-250 tokens packed into rows of 512, that was a third of stage 1's step on a CPU
    (tutorials/01_llm_and_alignment.md)."""
    rows = []
    for r, lengths in enumerate(documents):
        parts = zip(q[r].split(lengths, dim=1), k[r].split(lengths, dim=1), v[r].split(lengths, dim=1))
        rows.append(torch.cat([F.scaled_dot_product_attention(qd, kd, vd, is_causal=True)
                               for qd, kd, vd in parts], dim=1))  # [H, T, D]
    return torch.stack(rows)


class LLM(nn.Module):
    """Qwen2 decoder-only LM. ``forward`` returns (logits, hidden after the final norm)."""

    def __init__(self, cfg: LLMConfig, vocab_size: int):
        super().__init__()
        if cfg.d_model % cfg.n_heads != 0:
            raise ValueError(f"d_model {cfg.d_model} is not divisible by n_heads {cfg.n_heads}")
        if cfg.n_heads % cfg.n_kv_heads != 0:
            raise ValueError(f"n_heads {cfg.n_heads} is not divisible by "
                             f"n_kv_heads {cfg.n_kv_heads}")
        if (cfg.d_model // cfg.n_heads) % 2 != 0:
            raise ValueError(f"head_dim {cfg.d_model // cfg.n_heads} must be even for RoPE")
        self.cfg, self.vocab_size = cfg, vocab_size
        self.head_dim = cfg.d_model // cfg.n_heads
        self.embed_tokens = nn.Embedding(vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.rotary_emb = RotaryEmbedding(self.head_dim, cfg.rope_theta)
        self.lm_head = nn.Linear(cfg.d_model, vocab_size, bias=False)  # untied
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        # RMSNorm weights start at one (set in RMSNorm.__init__).

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(tokens)  # [B, T] -> [B, T, C]

    def new_cache(self, batch_size: int, max_len: int | None = None, device=None, dtype=None):
        """One empty KVCache per layer (a list), max_len defaulting to cfg.max_seq_len."""
        w = self.embed_tokens.weight
        return [KVCache(batch_size, self.cfg.n_kv_heads, max_len or self.cfg.max_seq_len,
                        self.head_dim, device or w.device, dtype or w.dtype)
                for _ in self.layers]

    def forward_embeds(self, x, cache: list[KVCache] | None = None, doc_ids=None):
        """x [B, T, C] (embeddings) -> hidden [B, T, C] after the final norm."""
        B, T, _ = x.shape
        documents = None  # causal rows, or the offset causal mask Attention builds (cache)
        if doc_ids is not None:
            if cache is not None:
                raise ValueError("doc_ids (packed training rows) cannot be used with a cache")
            positions, documents = packed_documents(doc_ids)  # [B, T], per row its lengths
        else:
            start = 0 if cache is None else cache[0].length
            positions = torch.arange(start, start + T, device=x.device)  # [T]
        cos, sin = self.rotary_emb(positions, x.dtype)  # [T, D] or [B, T, D]
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(f"cache has {len(cache)} layers, the model {len(self.layers)}")
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if cache is None else cache[i], documents)
        return self.norm(x)

    def forward(self, tokens, cache: list[KVCache] | None = None, doc_ids=None,
                return_logits: bool = True, logits_for_last_only: bool = False):
        """tokens [B, T] -> (logits, hidden).

        logits [B, T, V] ([B, 1, V] with logits_for_last_only, None without return_logits);
        hidden [B, T, C] is the last hidden state after the final norm.
        cache: from new_cache(); positions continue from its length and it grows by T.
        doc_ids [B, T] (training only, no cache): packed documents attend only within
        themselves, causally, and their RoPE positions restart at 0 at each document.
        """
        hidden = self.forward_embeds(self.embed(tokens), cache, doc_ids)
        if not return_logits:
            return None, hidden
        return self.lm_head(hidden[:, -1:] if logits_for_last_only else hidden), hidden

    def hf_state_dict(self) -> dict:
        """The state_dict under Hugging Face Qwen2ForCausalLM key names."""
        return {hf_qwen2_key(k): v for k, v in self.state_dict().items()}

    def hf_config(self) -> dict:
        """The matching fields of a Hugging Face Qwen2Config."""
        c = self.cfg
        return dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"],
                    vocab_size=self.vocab_size, hidden_size=c.d_model, intermediate_size=c.d_ff,
                    num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
                    num_key_value_heads=c.n_kv_heads, rope_theta=c.rope_theta,
                    rms_norm_eps=c.rms_eps, max_position_embeddings=c.max_seq_len,
                    hidden_act="silu", tie_word_embeddings=False, initializer_range=0.02)
