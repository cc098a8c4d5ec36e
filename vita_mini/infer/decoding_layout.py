"""Weights laid out for decoding on a CPU: the catch-up forward's few rows at full speed.

VITA-Audio's speedup assumes that the LLM's catch-up forward over k+1 tokens, after a run of k
MCTP tokens, costs about what a one-token forward costs (c = 1, tutorials/paper.md §5): a
one-token step only streams the weights from memory, so a few more rows should come free. On a
CPU the few rows are what costs: an 11-row product ``x @ W^T`` is a small matrix multiply, and
the library's general kernel for it runs far below the CPU's arithmetic rate, so the catch-up
cost about twice a one-token step (chapter 2, "How fast, on this laptop").

Two changes of layout, neither of them changing a value or a shape:

* every fp32 weight [out, in] is stored transposed in memory (strides (1, out)), the layout the
  CPU's one-row products run fastest with (13% faster on a 2-core AMD EPYC, measured in chapter
  2; in bf16 it was 20x slower, so bf16 keeps the usual one);
* where PyTorch is built with Intel's MKL (x86 builds), each fp32 linear layer also keeps a copy
  of its weight in MKL's packed GEMM format, made for a product of ``PACKED_ROWS`` rows, and
  products of 2 to ``PACKED_ROWS`` rows use it (:class:`DecodingLinear`). MKL picks its kernel
  for that shape once, when packing, instead of on every call. On a 2-core Intel Xeon
  (AVX-512, no AMX) the products of an 11-row step at 24 layers took 35 ms instead of 49 with the
  transposed layout, against 23 ms for one row (chapter 2). The copy doubles the memory the
  weights take while decoding; one-row products and the prefill still use the plain weight.

The packed copy is made the first time it is needed and made again whenever the weight changes
(its version counter or its storage moved), so a model that goes on training after an
evaluation never decodes with stale weights. Under autograd, or on another device or dtype, a
DecodingLinear is an ordinary nn.Linear.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

# Products of 2..PACKED_ROWS rows use the packed weight: the catch-up after 10 MCTP tokens has
# 11 rows, the modules' own catch-ups up to as many. One copy, packed for PACKED_ROWS rows,
# serves every count from 2 to PACKED_ROWS (tests/test_engine.py checks each against F.linear).
PACKED_ROWS = 16
# Only weights of at least 2^18 numbers (1 MiB in fp32) are packed. Below that the call costs
# more than it saves: the toy model's weights (all in the CPU's cache) were as fast or faster
# through F.linear, a 512x512 weight 12% faster packed, 768x768 32% (2-core Intel Xeon, chapter 2).
PACKED_MIN_WEIGHTS = 1 << 18

_packed = WeakIdKeyDictionary()  # weight -> ((version, data_ptr) when packed, packed copy)


def mkl_packing_available() -> bool:
    """MKL's packed GEMM is in PyTorch's x86 builds; ARM builds (Apple laptops) lack it."""
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


def packed_weight(weight: torch.Tensor) -> torch.Tensor:
    """The MKL-packed copy of ``weight`` [out, in] for PACKED_ROWS-row products, (re)made when
    the weight has changed since it was packed."""
    state = (weight._version, weight.data_ptr())
    seen, packed = _packed.get(weight, (None, None))
    if seen != state:
        packed = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach().contiguous(), PACKED_ROWS)
        _packed[weight] = (state, packed)
    return packed


class DecodingLinear(nn.Linear):
    """An nn.Linear whose products of 2..PACKED_ROWS rows (CPU, fp32, no autograd) go through
    MKL's packed weight. Same parameters, names and state_dict as the nn.Linear it replaces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        rows = x.numel() // x.size(-1)
        if (1 < rows <= PACKED_ROWS and x.device.type == "cpu" and x.dtype == w.dtype == torch.float32
                and not (torch.is_grad_enabled() and w.requires_grad)):
            # [..., in] -> [..., out]; the last argument tells MKL the product's row count
            return torch.ops.mkl._mkl_linear(x, packed_weight(w), w, self.bias, rows)
        return F.linear(x, w, self.bias)


def use_decoding_layout(model: nn.Module) -> None:
    """Lay out every fp32 CPU linear layer of ``model`` for decoding, in place: weights stored
    transposed in memory, and (with MKL) the layer turned into a DecodingLinear. Other dtypes
    and devices are left as they are. Results equal the usual layout's up to the order of
    floating-point additions."""
    packing = mkl_packing_available()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            weight = module.weight
            if weight.device.type != "cpu" or weight.dtype != torch.float32:
                continue
            if weight.is_contiguous():
                weight.data = weight.data.t().contiguous().t()
            if packing and type(module) is nn.Linear and weight.numel() >= PACKED_MIN_WEIGHTS:
                module.__class__ = DecodingLinear  # only forward changes; parameters stay
