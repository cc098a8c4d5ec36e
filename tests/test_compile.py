"""``--compile`` (train/compile.py): the compiled blocks compute what the eager ones do."""

import pytest
import torch

from vita_mini.audio.conv import ResBlock
from vita_mini.model.llm import MLP, RMSNorm
from vita_mini.train.compile import compile_blocks


def _blocks() -> torch.nn.ModuleDict:
    torch.manual_seed(0)
    return torch.nn.ModuleDict({"mlp": MLP(32, 64), "norm": RMSNorm(32), "conv": ResBlock(32)})


@pytest.mark.slow  # compiling takes about a minute on a 2-core CPU
def test_compiled_blocks_match_eager_forward_and_backward():
    model, eager = _blocks(), _blocks()  # the same weights
    assert compile_blocks(model) == 3
    for length in (7, 12):  # two lengths: one compiled version serves both (dynamic=True)
        x = torch.randn(2, length, 32, requires_grad=True)
        outputs = {}
        for label, blocks in (("compiled", model), ("eager", eager)):
            x.grad = None
            y = blocks["mlp"](blocks["norm"](x)) + blocks["conv"](x.transpose(1, 2)).transpose(1, 2)
            y.pow(2).sum().backward()
            outputs[label] = (y.detach(), x.grad.clone())
        assert torch.allclose(outputs["compiled"][0], outputs["eager"][0], atol=1e-5)
        assert torch.allclose(outputs["compiled"][1], outputs["eager"][1], atol=1e-4)
    assert list(model.state_dict()) == list(eager.state_dict())  # checkpoints keep their names
