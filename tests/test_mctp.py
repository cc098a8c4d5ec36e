"""The MCTP cascade: wiring, targets, initialization, and what stages 2 and 3 may touch."""

import pytest
import torch
import torch.nn.functional as F

from vita_mini.config import LLMConfig
from vita_mini.data.samples import pack
from vita_mini.vocab import IGNORE
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP, doc_positions, module_labels
from vita_mini.model.teacher_forced import mctp_losses
from vita_mini.vocab import Sample

CFG = LLMConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=64)
V = 280  # covers the specials (pack pads with PAD = 256)


def make(n_modules=3, seed=0):
    torch.manual_seed(seed)
    llm = LLM(CFG, V).eval()
    return llm, MCTP(CFG, n_modules).eval()


def test_module_k_target_is_token_k_plus_2_after_the_llm_state():
    x = torch.arange(20)[None]  # x_q = q: a target names its own position
    labels = torch.cat([x[:, 1:], torch.tensor([[IGNORE]])], dim=1)  # next-token labels
    positions = doc_positions(x, None)
    for k in range(4):
        target = module_labels(labels, positions, k)[0]
        for q in range(20):
            p = q - k - 1  # the LLM state module k's chain starts from
            if p < 0 or q == 19:
                assert target[q] == IGNORE
            else:
                assert target[q] == p + k + 2


def test_module_k_reads_the_llm_state_k_plus_1_positions_back():
    llm, mctp = make(3)
    tokens = torch.randint(0, V, (1, 12))
    with torch.no_grad():
        _, hidden = llm(tokens, return_logits=False)
        base = mctp(llm, tokens, hidden)
        p = 5
        bumped = hidden.clone()
        bumped[0, p] += 1.0
        moved = mctp(llm, tokens, bumped)
    for k in range(3):
        changed = (moved[k] - base[k]).abs().amax(-1)[0] > 1e-6  # [T]
        assert not changed[:p + k + 1].any(), f"module {k} saw the future"
        assert changed[p + k + 1], f"module {k} at {p + k + 1} must read the LLM state at {p}"


def test_shared_tensors_are_the_llms_own():
    llm, mctp = make(2)
    names = {n for n, _ in mctp.named_parameters()}
    assert not any("embed_tokens" in n or "lm_head" in n for n in names)
    assert all(n.startswith("mods.") for n in names)


def test_stage2_init_copies_the_last_layer_and_stage3_clones():
    llm, _ = make()
    one = MCTP.from_llm(llm)
    for (n, a), (_, b) in zip(one.mods[0].layer.state_dict().items(), llm.layers[-1].state_dict().items()):
        assert torch.equal(a, b), n
    assert torch.equal(one.mods[0].embed_norm.weight, torch.ones(CFG.d_model))
    assert torch.equal(one.mods[0].hidden_norm.weight, torch.ones(CFG.d_model))
    ten = one.grown(10)
    assert len(ten) == 10
    for k in range(10):
        for (n, a), (_, b) in zip(ten.mods[k].state_dict().items(), one.mods[0].state_dict().items()):
            assert torch.equal(a, b), (k, n)
    ten.mods[3].proj.weight.data += 1  # clones, not shared tensors
    assert not torch.equal(ten.mods[3].proj.weight, ten.mods[4].proj.weight)


def test_packed_documents_do_not_leak_into_each_other():
    llm, mctp = make(2)
    a, b = Sample([1, 2, 3, 4, 5, 6], [True] * 6), Sample([7, 8, 9, 10, 11], [True] * 5)
    packed = pack([a, b], 16)
    alone = pack([b], 16)
    with torch.no_grad():
        _, h = llm(packed.tokens, doc_ids=packed.doc_ids, return_logits=False)
        outs = mctp(llm, packed.tokens, h, packed.doc_ids)
        _, h1 = llm(alone.tokens, doc_ids=alone.doc_ids, return_logits=False)
        outs1 = mctp(llm, alone.tokens, h1, alone.doc_ids)
    for k in range(2):  # b sits at positions 6..10 of the packed row, 0..4 alone
        torch.testing.assert_close(outs[k][0, 6:11], outs1[k][0, 0:5], atol=1e-5, rtol=1e-4)


def test_a_stage_step_moves_only_the_modules():
    llm, mctp = make(3)
    llm.requires_grad_(False)
    before = {n: p.clone() for n, p in llm.state_dict().items()}
    mods_before = {n: p.clone() for n, p in mctp.state_dict().items()}
    opt = torch.optim.AdamW([p for p in mctp.parameters()], lr=1e-2)
    tokens = torch.randint(0, V, (2, 16))
    labels = torch.randint(0, V, (2, 16))
    for _ in range(3):
        loss = torch.stack(mctp_losses(llm, mctp, tokens, labels, None)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in llm.state_dict().items():
        assert torch.equal(p, before[n]), n
    assert any(not torch.equal(p, mods_before[n]) for n, p in mctp.state_dict().items())


def test_cascade_needs_a_module():
    with pytest.raises(ValueError, match="at least one module"):
        MCTP(CFG, 0)


def test_losses_equal_full_head_cross_entropy_with_ignored_positions():
    """mctp_losses runs the head only where a module has a target; against the plain way (head
    on every position, ignore_index), on a row with prompt positions and packed documents."""
    llm, mctp = make(3)
    tokens = torch.randint(0, V, (2, 24))
    labels = torch.randint(0, V, (2, 24))
    labels[:, :7] = IGNORE  # a prompt
    doc_ids = torch.tensor([[0] * 10 + [1] * 14, [0] * 24])
    fast = mctp_losses(llm, mctp, tokens, labels, doc_ids)
    _, hidden = llm(tokens, doc_ids=doc_ids)
    positions = doc_positions(tokens, doc_ids)
    for k, h in enumerate(mctp(llm, tokens, hidden, doc_ids)):
        plain = F.cross_entropy(llm.lm_head(h).flatten(0, 1), module_labels(labels, positions, k).flatten(),
                                ignore_index=IGNORE)
        torch.testing.assert_close(fast[k], plain)
