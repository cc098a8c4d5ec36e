"""``--compile``: torch.compile the blocks where eager PyTorch wastes the most time.

In eager mode every element-wise operation (RMSNorm's square, mean and scale, SwiGLU's SiLU and
product, LayerNorm and GELU in the codec) reads and writes its whole tensor, one kernel each;
the profiles of chapters 0-3 put a quarter to two fifths of a CPU training step there.
torch.compile traces a block once and emits fused kernels (C++ with OpenMP on a CPU, Triton on
a GPU). We compile the blocks with fixed, simple control flow: the decoder's MLP and RMSNorm, and
the codec's and the judge's residual conv blocks. Attention stays eager: it calls the attention
kernel once per packed document (model/llm.py ``attend_documents``), a Python loop whose shapes
change every batch.

``Module.compile`` compiles a module in place, so parameter names, checkpoints and the rest of
the code are unchanged. The first step of a stage is slow (tens of seconds on a 2-core CPU:
compiling); ``dynamic=True`` keeps one compiled version across sequence lengths.
"""

from __future__ import annotations

from torch import nn

from vita_mini.audio.conv import ResBlock
from vita_mini.model.llm import MLP, RMSNorm

COMPILED_BLOCKS = (MLP, RMSNorm, ResBlock)


def compile_blocks(model: nn.Module) -> int:
    """Compile every block of ``model`` listed in COMPILED_BLOCKS, in place; how many."""
    blocks = [m for m in model.modules() if isinstance(m, COMPILED_BLOCKS)]
    for block in blocks:
        block.compile(dynamic=True)
    return len(blocks)
