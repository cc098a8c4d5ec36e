"""Tests for the Qwen2-style LLM (vita_mini/model/llm.py)."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from vita_mini.config import LLMConfig
from vita_mini.model.llm import (LLM, Attention, DecoderLayer, KVCache, RotaryEmbedding,
                                 apply_rotary, attend_documents, attend_stacked_groups, causal_mask,
                                 expand_kv_heads, hf_qwen2_key, packed_documents)

V = 50
ATOL = 1e-5  # fp32: cached/packed/reference paths agree to float rounding (logits are O(1))


def small_cfg(**kw):
    base = dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, max_seq_len=64)
    base.update(kw)
    return LLMConfig(**base)


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = LLM(small_cfg(**kw), V).eval()
    # Give norms and biases non-trivial values so the tests exercise them too.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


# ----------------------------------------------------------------------------------------------
# An independent reference: explicit loops, explicit softmax, repeat_interleave for GQA.


def ref_forward(sd, cfg, tokens):
    H, Hkv = cfg.n_heads, cfg.n_kv_heads
    D = cfg.d_model // H
    B, T = tokens.shape

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.rms_eps)

    def rope(x, pos):  # x [D], explicit pairs (i, i + D/2)
        out = torch.empty_like(x)
        for i in range(D // 2):
            a = pos * cfg.rope_theta ** (-2 * i / D)
            c, s = math.cos(a), math.sin(a)
            out[i] = x[i] * c - x[i + D // 2] * s
            out[i + D // 2] = x[i + D // 2] * c + x[i] * s
        return out

    x = sd["embed_tokens.weight"][tokens].double()
    sd = {k: v.double() for k, v in sd.items()}
    for layer in range(cfg.n_layers):
        p = lambda n: sd[f"layers.{layer}.{n}"]  # noqa: E731
        h = rms(x, p("input_layernorm.weight"))
        q = (h @ p("self_attn.q_proj.weight").T + p("self_attn.q_proj.bias")).view(B, T, H, D)
        k = (h @ p("self_attn.k_proj.weight").T + p("self_attn.k_proj.bias")).view(B, T, Hkv, D)
        v = (h @ p("self_attn.v_proj.weight").T + p("self_attn.v_proj.bias")).view(B, T, Hkv, D)
        k = k.repeat_interleave(H // Hkv, dim=2)
        v = v.repeat_interleave(H // Hkv, dim=2)
        out = torch.zeros(B, T, H, D, dtype=torch.float64)
        for b in range(B):
            for hd in range(H):
                qs = [rope(q[b, t, hd], t) for t in range(T)]
                ks = [rope(k[b, t, hd], t) for t in range(T)]
                for t in range(T):
                    scores = torch.stack([qs[t] @ ks[j] / math.sqrt(D) for j in range(t + 1)])
                    w = torch.exp(scores - scores.max())
                    w = w / w.sum()
                    out[b, t, hd] = sum(w[j] * v[b, j, hd] for j in range(t + 1))
        x = x + out.reshape(B, T, H * D) @ p("self_attn.o_proj.weight").T
        h = rms(x, p("post_attention_layernorm.weight"))
        g = h @ p("mlp.gate_proj.weight").T
        u = h @ p("mlp.up_proj.weight").T
        x = x + (g * torch.sigmoid(g) * u) @ p("mlp.down_proj.weight").T
    x = rms(x, sd["norm.weight"])
    return x @ sd["lm_head.weight"].T, x


def test_matches_naive_reference():
    model = make_model()
    tokens = torch.randint(0, V, (2, 7))
    with torch.no_grad():
        logits, hidden = model(tokens)
    ref_logits, ref_hidden = ref_forward(model.state_dict(), model.cfg, tokens)
    assert logits.shape == (2, 7, V) and hidden.shape == (2, 7, 32)
    torch.testing.assert_close(logits, ref_logits.float(), atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden, ref_hidden.float(), atol=ATOL, rtol=1e-5)


def test_mha_without_gqa_matches_reference():
    model = make_model(n_kv_heads=4)
    tokens = torch.randint(0, V, (1, 5))
    with torch.no_grad():
        logits, _ = model(tokens)
    ref_logits, _ = ref_forward(model.state_dict(), model.cfg, tokens)
    torch.testing.assert_close(logits, ref_logits.float(), atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------------------------


def test_causality():
    model = make_model()
    a = torch.randint(0, V, (2, 12))
    b = a.clone()
    b[:, 6:] = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        la, _ = model(a)
        lb, _ = model(b)
    torch.testing.assert_close(la[:, :6], lb[:, :6], atol=ATOL, rtol=0)
    assert not torch.allclose(la[:, 6:], lb[:, 6:], atol=1e-3)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])  # G = 4, 2 query heads per k/v head; MHA
def test_kv_cache_matches_full_forward(n_kv_heads):
    model = make_model(n_kv_heads=n_kv_heads)
    tokens = torch.randint(0, V, (2, 20))
    with torch.no_grad():
        full, full_h = model(tokens)
        cache = model.new_cache(2, max_len=32)
        pieces = [model(tokens[:, :5], cache=cache)[0]]  # prefill 5
        for t in range(5, 9):  # 4 single steps
            pieces.append(model(tokens[:, t:t + 1], cache=cache)[0])
        pieces.append(model(tokens[:, 9:15], cache=cache)[0])  # catch-up chunk of 6
        pieces.append(model(tokens[:, 15:16], cache=cache)[0])  # and single steps again
        last, h = model(tokens[:, 16:20], cache=cache, logits_for_last_only=True)
    assert cache[0].length == 20 and len(cache) == 2
    torch.testing.assert_close(torch.cat(pieces, 1), full[:, :16], atol=ATOL, rtol=0)
    assert last.shape == (2, 1, V)
    torch.testing.assert_close(last, full[:, -1:], atol=ATOL, rtol=0)
    torch.testing.assert_close(h, full_h[:, 16:], atol=ATOL, rtol=0)


def test_one_token_without_cache_is_a_full_forward():
    model = make_model()
    tokens = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        one, _ = model(tokens[:, :1])
        full, _ = model(tokens)
    torch.testing.assert_close(one, full[:, :1], atol=ATOL, rtol=0)


def test_causal_mask_is_offset_to_the_last_positions():
    want = torch.tensor([[1, 1, 1, 0, 0],   # query at position 2 of 5 keys
                         [1, 1, 1, 1, 0],
                         [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(3, 5), want)
    assert torch.equal(causal_mask(4, 4), torch.ones(4, 4, dtype=torch.bool).tril())
    assert torch.equal(causal_mask(3, 5, groups=2), torch.cat([want, want]))  # stacked query groups


def test_expand_kv_heads_against_a_loop():
    x = torch.randn(2, 3, 5, 4)  # [B, Hkv, S, D]
    y = expand_kv_heads(x, 4)
    assert y.shape == (2, 12, 5, 4)
    for h in range(12):  # query head h reads k/v head h // 4
        assert torch.equal(y[:, h], x[:, h // 4])
    assert expand_kv_heads(x, 1) is x


@pytest.mark.parametrize("T", [1, 3])
def test_stacked_groups_equal_attention_per_query_head(T):
    torch.manual_seed(0)
    B, H, Hkv, S, D = 2, 6, 2, 7, 4
    q, k, v = torch.randn(B, H, T, D), torch.randn(B, Hkv, S, D), torch.randn(B, Hkv, S, D)
    mask = causal_mask(T, S) if T > 1 else None
    got = attend_stacked_groups(q, k, v, mask)
    assert got.shape == (B, H, T, D)
    for h in range(H):  # explicit softmax over the keys of k/v head h // G
        kh, vh = k[:, h // (H // Hkv)], v[:, h // (H // Hkv)]  # [B, S, D]
        scores = q[:, h] @ kh.transpose(1, 2) / math.sqrt(D)  # [B, T, S]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        torch.testing.assert_close(got[:, h], scores.softmax(-1) @ vh, atol=1e-6, rtol=0)
    if mask is not None:  # the mask already stacked for the G query groups gives the same
        assert torch.equal(attend_stacked_groups(q, k, v, causal_mask(T, S, groups=H // Hkv)), got)


def test_attention_catch_up_chunk_equals_the_rows_path():
    """The cached path over a chunk of T new positions after S-T cached ones (a prefill, then a
    catch-up as after MCTP steps) equals the training path over the whole row."""
    torch.manual_seed(0)
    attn = Attention(d_model=64, n_heads=8, n_kv_heads=2).eval()  # G = 4
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 11, 64)
    with torch.no_grad():
        full = attn(x, *rope(torch.arange(11)))
        cache = KVCache(2, 2, 16, 8)
        first = attn(x[:, :5], *rope(torch.arange(5)), cache=cache)
        chunk = attn(x[:, 5:], *rope(torch.arange(5, 11)), cache=cache)
    assert cache.length == 11
    torch.testing.assert_close(torch.cat([first, chunk], 1), full, atol=ATOL, rtol=0)


def test_cached_attention_accepts_a_strided_kernel_output(monkeypatch):
    """On CUDA, attention kernels may return their output in a transposed memory layout (an
    H200 did, for the 12-layer benchmark model). The decode path must not assume a contiguous one."""
    reference = make_model()
    tokens = torch.randint(0, V, (1, 12))
    with torch.no_grad():
        full, _ = reference(tokens)
        plain_sdpa = F.scaled_dot_product_attention

        def strided_sdpa(q, *args, **kwargs):  # same values, [B, T, H, D] memory order
            y = plain_sdpa(q, *args, **kwargs)
            return y.transpose(1, 2).contiguous().transpose(1, 2)

        monkeypatch.setattr(F, "scaled_dot_product_attention", strided_sdpa)
        cache = reference.new_cache(1, max_len=16)
        pieces = [reference(tokens[:, :5], cache=cache)[0]]
        pieces += [reference(tokens[:, t:t + 1], cache=cache)[0] for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=ATOL, rtol=0)


def test_cache_api():
    model = make_model()
    cache = model.new_cache(1, max_len=4)
    assert isinstance(cache[0], KVCache) and cache[0].k.shape == (1, 2, 4, 8)
    with torch.no_grad():
        none, hidden = model(torch.zeros(1, 3, dtype=torch.long), cache=cache, return_logits=False)
        assert none is None and hidden.shape == (1, 3, 32)
        with pytest.raises(ValueError):
            model(torch.zeros(1, 2, dtype=torch.long), cache=cache)  # 5 > max_len 4
        with pytest.raises(ValueError):
            model(torch.zeros(1, 2, dtype=torch.long), cache=model.new_cache(1),
                  doc_ids=torch.zeros(1, 2, dtype=torch.long))
        attn, x = model.layers[0].self_attn, torch.zeros(1, 2, 32)
        cos, sin = model.rotary_emb(torch.arange(2))
        with pytest.raises(ValueError, match="packed documents"):  # the cached path builds its own mask
            attn(x, cos, sin, cache=model.new_cache(1)[0], documents=[[2]])


def test_config_validation():
    with pytest.raises(ValueError):
        LLM(small_cfg(n_heads=5), V)  # 32 % 5
    with pytest.raises(ValueError):
        LLM(small_cfg(n_heads=4, n_kv_heads=3), V)  # 4 % 3


def test_gqa_and_rope_shapes():
    model = make_model(d_model=64, n_heads=8, n_kv_heads=2)
    attn = model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (8 * 8, 64)
    assert attn.k_proj.weight.shape == (2 * 8, 64) and attn.v_proj.weight.shape == (2 * 8, 64)
    assert attn.o_proj.weight.shape == (64, 64)
    cos, sin = model.rotary_emb(torch.arange(10))
    assert cos.shape == sin.shape == (10, 8)
    cos, sin = model.rotary_emb(torch.arange(10).expand(3, 10))
    assert cos.shape == (3, 10, 8)


def test_rope_is_a_relative_rotation():
    torch.manual_seed(0)
    D = 16
    rope = RotaryEmbedding(D, theta=10000.0)
    q, k = torch.randn(1, 1, 1, D), torch.randn(1, 1, 1, D)

    def rot(x, pos):
        cos, sin = rope(torch.tensor([pos]))
        return apply_rotary(x, cos, sin)

    for pos in (0, 3, 100):  # norm-preserving
        torch.testing.assert_close(rot(q, pos).norm(), q.norm(), atol=1e-5, rtol=0)
    dots = [(rot(q, m) * rot(k, m - 4)).sum() for m in (4, 9, 37, 200)]  # same offset 4
    for d in dots[1:]:
        torch.testing.assert_close(d, dots[0], atol=1e-4, rtol=0)
    other = (rot(q, 9) * rot(k, 2)).sum()  # offset 7 differs
    assert not torch.allclose(other, dots[0], atol=1e-3)


def test_attention_per_document_equals_one_masked_call():
    """attend_documents (one call per packed document) against the block-diagonal causal mask
    it replaced, built here with plain loops, values and gradients."""
    torch.manual_seed(0)
    documents = [[5, 9, 2], [16]]  # two rows of 16 positions: three documents, then one
    q, k, v = (torch.randn(2, 3, 16, 4, requires_grad=True) for _ in range(3))
    mask = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    for r, lengths in enumerate(documents):
        start = 0
        for n in lengths:
            for t in range(start, start + n):
                mask[r, 0, t, start:t + 1] = True  # t sees its own document up to itself
            start += n
    fast = attend_documents(q, k, v, documents)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=0)
    grads = torch.autograd.grad(fast.square().sum(), (q, k, v))
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for g, h in zip(grads, reference_grads):
        torch.testing.assert_close(g, h, atol=1e-5, rtol=0)


def test_packed_documents_positions_and_lengths():
    doc_ids = torch.tensor([[0, 0, 0, 1, 1, 0, 0, 2], [4] * 8])  # id 0 again: a new document
    positions, lengths = packed_documents(doc_ids)
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 1, 0], list(range(8))]
    assert lengths == [[3, 2, 2, 1], [8]]


def test_packed_docs_equal_separate_runs():
    model = make_model()
    a, b = torch.randint(0, V, (1, 7)), torch.randint(0, V, (1, 5))
    pad = torch.zeros(1, 3, dtype=torch.long)
    packed = torch.cat([a, b, pad], 1)
    doc_ids = torch.tensor([[0] * 7 + [1] * 5 + [2] * 3])  # padding as its own doc
    with torch.no_grad():
        lp, hp = model(packed, doc_ids=doc_ids)
        la, _ = model(a)
        lb, _ = model(b)
        # a second row with another layout, to check rows are independent
        doc_ids2 = torch.tensor([[5] * 5 + [3] * 7 + [5] * 3])  # a repeated id stays apart
        two, _ = model(torch.cat([packed, torch.cat([b, a, pad], 1)]),
                       doc_ids=torch.cat([doc_ids, doc_ids2]))
    torch.testing.assert_close(lp[:, :7], la, atol=ATOL, rtol=0)
    torch.testing.assert_close(lp[:, 7:12], lb, atol=ATOL, rtol=0)
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(two[1:, :5], lb, atol=ATOL, rtol=0)
    torch.testing.assert_close(two[1:, 5:12], la, atol=ATOL, rtol=0)  # doc id 3 between two 5s


def test_decoder_layer_standalone_with_cache():
    torch.manual_seed(0)
    cfg = small_cfg()
    layer = DecoderLayer(cfg).eval()
    rope = RotaryEmbedding(8, cfg.rope_theta)
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        cos, sin = rope(torch.arange(9))
        full = layer(x, cos, sin)
        cache = KVCache(2, cfg.n_kv_heads, 16, 8)
        outs = []
        for s, e in [(0, 4), (4, 5), (5, 9)]:
            cos, sin = rope(torch.arange(s, e))
            outs.append(layer(x[:, s:e], cos, sin, cache=cache))
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------------------------
# Hugging Face Qwen2 compatibility.

HF_KEY = re.compile(
    r"^(lm_head\.weight"
    r"|model\.embed_tokens\.weight"
    r"|model\.norm\.weight"
    r"|model\.layers\.\d+\.(input_layernorm|post_attention_layernorm)\.weight"
    r"|model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)"
    r"|model\.layers\.\d+\.self_attn\.o_proj\.weight"
    r"|model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)\.weight)$")


def test_biases_and_untied_head():
    model = make_model()
    attn, mlp = model.layers[0].self_attn, model.layers[0].mlp
    assert all(m.bias is not None for m in (attn.q_proj, attn.k_proj, attn.v_proj))
    assert all(m.bias is None for m in (attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj,
                                        model.lm_head))
    assert model.lm_head.weight.data_ptr() != model.embed_tokens.weight.data_ptr()
    torch.manual_seed(0)
    fresh = LLM(small_cfg(), V)  # init: biases zero, norms one
    assert torch.all(fresh.layers[0].self_attn.q_proj.bias == 0)
    assert torch.all(fresh.norm.weight == 1)
    assert abs(fresh.embed_tokens.weight.std().item() - 0.02) < 0.003


def test_hf_key_mapping():
    assert hf_qwen2_key("lm_head.weight") == "lm_head.weight"
    assert hf_qwen2_key("embed_tokens.weight") == "model.embed_tokens.weight"
    assert hf_qwen2_key("layers.1.self_attn.k_proj.bias") == "model.layers.1.self_attn.k_proj.bias"
    model = make_model()
    keys = [hf_qwen2_key(k) for k in model.state_dict()]
    bad = [k for k in keys if not HF_KEY.match(k)]
    assert not bad, bad
    per_layer = 2 + 3 * 2 + 1 + 3  # norms, q/k/v weight+bias, o, mlp
    assert len(keys) == 3 + per_layer * model.cfg.n_layers
    assert model.num_parameters() == sum(v.numel() for v in model.state_dict().values())


# ----------------------------------------------------------------------------------------------


def test_overfits_one_batch():
    torch.manual_seed(0)
    cfg = LLMConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_seq_len=64)
    model = LLM(cfg, V)
    tokens = torch.randint(0, V, (4, 32))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(400):
        logits, _ = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1, f"loss {loss.item():.3f} after {step + 1} steps"
