"""Weights laid out for decoding on a CPU: the catch-up forward's few rows at full speed.

VITA-Audio's speedup assumes that the LLM's catch-up forward over k+1 tokens, after a run of k
MCTP tokens, costs about what a one-token forward costs (c = 1, tutorials/paper.md §5): a
one-token step only streams the weights from memory, so a few more rows should come free. On a
CPU the few rows are what costs: an 11-row product ``x @ W^T`` is a small matrix multiply, and
the library's general kernel for it runs far below the CPU's arithmetic rate, so the catch-up
cost about twice a one-token step (chapter 2, "How fast, on this laptop").

Three changes of layout, none of them changing a value or a shape that the model shows:

* every fp32 weight [out, in] is stored transposed in memory (strides (1, out)), the layout the
  CPU's one-row products run fastest with (13% faster on a 2-core AMD EPYC, measured in chapter
  2; in bf16 it was 20x slower, so bf16 keeps the usual one);
* where PyTorch is built with Intel's MKL (its x86 builds), products of 2 to ``PACKED_ROWS``
  rows go through a copy of the weight in MKL's packed GEMM format, made for that shape once
  (MKL picks its kernel when packing, instead of on every call);
* for those products, the projections that read the same input are stacked into one product:
  q, k and v of each attention layer, gate and up of each MLP (what inference engines call
  fused QKV and gate-up projections): fewer, larger products.

On a 2-core Intel Xeon (AVX-512, no AMX), the matrix products of an 11-row step at 24 layers
took 49 ms through F.linear and 35 ms packed, against 23 ms for one row (chapter 2). One-row
steps and the prefill use the plain weights; the packed copies double the memory the weights
take while decoding. A packed copy is made the first time it is needed and again whenever one
of its weights changes (version counter or storage), so a model that goes on training after an
evaluation never decodes with stale weights; under autograd, or on another device or dtype,
every layer computes as before.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from vita_mini.model.llm import MLP, Attention

# Products of 2..PACKED_ROWS rows use the packed weights: the catch-up after 10 MCTP tokens has
# 11 rows, the modules' own catch-ups up to as many. One copy, packed for PACKED_ROWS rows,
# serves every count from 2 to PACKED_ROWS (tests/test_engine.py checks each against F.linear).
PACKED_ROWS = 16
# Only products with at least 2^18 weights (1 MiB in fp32) are packed. Below that the call
# costs more than it saves: the toy model's weights (all in the CPU's cache) were as fast or
# faster through F.linear, a 512x512 weight 12% faster packed, 768x768 32% (2-core Intel Xeon).
PACKED_MIN_WEIGHTS = 1 << 18

# owner module -> (state of its weights when packed, packed copy, stacked bias, shape [N, in])
_packed = WeakIdKeyDictionary()


def mkl_packing_available() -> bool:
    """MKL's packed GEMM is in PyTorch's x86 builds; ARM builds (Apple laptops) lack it."""
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


def takes_packed(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x [..., in] times ``weight`` goes through a packed copy: 2..PACKED_ROWS rows,
    fp32 on the CPU, and no gradient to record. (The forwards below first ask, inline, whether
    x is one row, Vanilla's case, so that a one-token step pays almost nothing for this.)"""
    rows = x.numel() // x.shape[-1]
    return (1 < rows <= PACKED_ROWS and x.is_cpu and x.dtype == torch.float32
            and weight.dtype == torch.float32 and not (weight.requires_grad and torch.is_grad_enabled()))


def packed_linear(x: torch.Tensor, owner: nn.Module, linears: list[nn.Linear]) -> torch.Tensor:
    """x [..., in] through the linear layers ``linears`` stacked into one product ->
    [..., their outputs side by side]. ``owner`` keeps the packed copy of the stacked weights,
    (re)made when any of them has changed since it was packed."""
    params = [p for layer in linears for p in (layer.weight, layer.bias) if p is not None]
    state = tuple((p._version, p.data_ptr()) for p in params)
    entry = _packed.get(owner)
    if entry is None or entry[0] != state:
        stacked = torch.cat([layer.weight.detach() for layer in linears])  # [N, in]
        bias = None if linears[0].bias is None else torch.cat([layer.bias.detach() for layer in linears])
        packed = torch.ops.mkl._mkl_reorder_linear_weight(stacked, PACKED_ROWS)
        # MKL reads only the shape [N, in] of the plain weight here, so a zero-stride stand-in
        # for it keeps no second copy
        entry = (state, packed, bias, stacked.new_zeros(1).expand(stacked.shape))
        _packed[owner] = entry
    _, packed, bias, shape = entry
    rows = x.numel() // x.size(-1)
    return torch.ops.mkl._mkl_linear(x, packed, shape, bias, rows)  # the last argument: row count


class DecodingLinear(nn.Linear):
    """An nn.Linear whose products of 2..PACKED_ROWS rows go through its packed weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() != x.shape[-1] and takes_packed(x, self.weight):
            return packed_linear(x, self, [self])
        return F.linear(x, self.weight, self.bias)


class DecodingAttention(Attention):
    """Attention whose q, k and v come out of one packed product for 2..PACKED_ROWS rows."""

    def projections(self, x):
        if x.numel() == x.shape[-1] or not takes_packed(x, self.q_proj.weight):
            return self.q_proj(x), self.k_proj(x), self.v_proj(x)
        qkv = packed_linear(x, self, [self.q_proj, self.k_proj, self.v_proj])  # [B, T, (H + 2 Hkv) D]
        kv_width = self.n_kv_heads * self.head_dim
        return qkv.split([self.n_heads * self.head_dim, kv_width, kv_width], dim=-1)


class DecodingMLP(MLP):
    """SwiGLU whose gate and up come out of one packed product for 2..PACKED_ROWS rows."""

    def gate_and_up(self, x):
        if x.numel() == x.shape[-1] or not takes_packed(x, self.gate_proj.weight):
            return self.gate_proj(x), self.up_proj(x)
        both = packed_linear(x, self, [self.gate_proj, self.up_proj])  # [B, T, 2F]
        return both.chunk(2, dim=-1)


def fp32_on_cpu(weight: torch.Tensor) -> bool:
    return weight.dtype == torch.float32 and weight.device.type == "cpu"


def use_decoding_layout(model: nn.Module) -> None:
    """Lay out every fp32 CPU linear layer of ``model`` for decoding, in place: weights stored
    transposed in memory, and (with MKL) attention layers, MLPs and the other linear layers
    large enough to pay turned into their Decoding* subclasses. Only forward changes:
    parameters, names and state_dict stay. Results equal the usual layout's up to the order of
    floating-point additions."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and fp32_on_cpu(module.weight) and module.weight.is_contiguous():
            module.weight.data = module.weight.data.t().contiguous().t()
    if not mkl_packing_available():
        return
    for module in model.modules():
        if type(module) is Attention:
            projections = [module.q_proj, module.k_proj, module.v_proj]
        elif type(module) is MLP:
            projections = [module.gate_proj, module.up_proj]
        elif type(module) is nn.Linear:
            projections = [module]
        else:
            continue
        weights = [layer.weight for layer in projections]
        if all(fp32_on_cpu(w) for w in weights) and sum(w.numel() for w in weights) >= PACKED_MIN_WEIGHTS:
            module.__class__ = {Attention: DecodingAttention, MLP: DecodingMLP,
                                nn.Linear: DecodingLinear}[type(module)]  # only forward changes
