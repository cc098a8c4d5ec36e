"""The generation engine, schedules, sampling and streaming."""

import pytest
import torch

from vita_mini.config import LLMConfig
from vita_mini.errors import VitaError
from vita_mini.infer.decode import greedy_generate
from vita_mini.infer.decoding_layout import (PACKED_ROWS, DecodingAttention, DecodingLinear, DecodingMLP,
                                              mkl_packing_available, use_decoding_layout)
from vita_mini.infer.engine import Engine
from vita_mini.infer.sampling import Sampling, choose
from vita_mini.infer.schedule import MODES, expand, ideal_speedup, parse_schedule
from vita_mini.infer.stream import AudioChunk, TextPiece, stream_events
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.vocab import AUDIO_OFFSET, BOA, END, EOA, text_ids

CFG = LLMConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=128)
V = AUDIO_OFFSET + 16


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    llm = LLM(CFG, V).eval()
    mctp = MCTP(CFG, 10).eval()
    with torch.no_grad():  # larger weights than the init, so that greedy picks vary
        for p in list(llm.parameters()) + list(mctp.parameters()):
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return llm, mctp


def rule(schedule, n):
    """The schedule rule written out longhand, as tutorials/paper.md §5 states it."""
    out, i = [], 0
    while len(out) < n:
        pair = min(i, len(schedule) - 2)
        big, small = schedule[pair], schedule[pair + 1]
        out += ["M"] * (n if big == float("inf") else int(big))
        out += [f"m{k}" for k in range(small)]
        i += 2
    return out[:n]


@pytest.mark.parametrize("mode", list(MODES))
def test_named_modes_expand_by_the_rule(mode):
    got = ["M" if s < 0 else f"m{s}" for s in expand(MODES[mode], 40)]
    assert got == rule(MODES[mode], 40)


def test_expansions_spelled_out():
    def short(mode):
        return "".join("M" if s < 0 else str(s) for s in expand(MODES[mode], 30))
    assert short("vanilla") == "M" * 30
    assert short("turbo") == "M0123456789M0123456789M0123456"
    assert short("boost") == "M0123456789MMMM0123456789MMMM0"
    assert short("balance") == "M0123MMM01234567MMMM0123456789"


def test_schedule_parsing_and_errors():
    assert parse_schedule("Boost") == (1, 10, 4, 10)
    assert parse_schedule("[1, 10]") == (1, 10)
    assert parse_schedule([2, 3]) == (2, 3)
    assert parse_schedule("inf,0") == MODES["vanilla"]
    for bad in ["warp", "1,10,4", "0,10", "1,-1", "inf,0,1,1", "a,b"]:
        with pytest.raises(VitaError, match="vanilla, balance, boost, turbo"):
            parse_schedule(bad)
    with pytest.raises(VitaError, match="has 3 modules"):
        parse_schedule("1,10", n_modules=3)


def test_ideal_speedup_matches_the_paper():
    assert ideal_speedup(MODES["turbo"], 0.11) == pytest.approx(5.24, abs=0.01)
    assert ideal_speedup(MODES["boost"], 0.11) == pytest.approx(2.75, abs=0.01)
    assert ideal_speedup(MODES["vanilla"], 0.11) == 1.0


def full_forward_greedy(llm, prompt, n):
    """Greedy decoding with no cache at all: a full forward over the whole sequence per token."""
    ids = list(prompt)
    for _ in range(n):
        logits, _ = llm(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_vanilla_equals_greedy_with_and_without_cache(models):
    llm, mctp = models
    prompt = torch.randint(0, 256, (9,)).tolist()
    engine = Engine(llm, mctp).generate_ids(prompt, 30, "vanilla", stop=None)
    with torch.no_grad():
        cached = greedy_generate(llm, prompt, 30, stop=-1)
        full = full_forward_greedy(llm, prompt, 30)
    assert engine == cached == full
    assert len(set(engine)) > 3  # the check means something only if the tokens vary


class Recording(Engine):
    def llm_step(self):
        logits = super().llm_step()
        self.log.append((-1, self.n - 1, logits.clone()))
        return logits

    def module_step(self, k):
        logits = super().module_step(k)
        self.log.append((k, self.n - 1, logits.clone()))
        return logits


@pytest.mark.parametrize("schedule", ["turbo", "boost", "balance", [2, 3, 1, 7]])
def test_cached_logits_equal_a_full_recomputation(models, schedule):
    llm, mctp = models
    engine = Recording(llm, mctp)
    engine.log = []
    prompt = torch.randint(0, 256, (7,)).tolist()
    out = engine.generate_ids(prompt, 60, schedule, stop=None)
    ids = torch.tensor([prompt + out])
    with torch.no_grad():
        logits, hidden = llm(ids)
        states = mctp(llm, ids, hidden)
    assert {k for k, _, _ in engine.log} >= {-1, 0, 1, 2}
    for k, q, got in engine.log:
        want = logits[0, q] if k < 0 else llm.lm_head(states[k][0, q])
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_sources_follow_the_schedule(models):
    llm, mctp = models
    tokens = list(Engine(llm, mctp).generate([1, 2, 3], 25, "turbo", stop=None))
    assert [t.source for t in tokens] == expand(MODES["turbo"], 25)


def test_mctp_schedule_without_modules_names_the_stage(models):
    llm, _ = models
    with pytest.raises(VitaError, match="--stage 2"):
        Engine(llm).generate_ids([1, 2], 5, "boost")
    assert len(Engine(llm).generate_ids([1, 2], 5, "vanilla", stop=None)) == 5


def test_sampling():
    logits = torch.tensor([1.0, 3.0, 2.0, -1.0])
    assert choose(logits, Sampling()) == 1
    assert choose(logits, Sampling(temperature=1.0, top_k=1)) == 1
    assert choose(logits, Sampling(temperature=1.0, top_p=0.01)) == 1
    # a penalty strong enough moves the choice off a token already seen
    assert choose(logits, Sampling(repetition_penalty=10.0), seen=torch.tensor([1])) == 2
    g = torch.Generator().manual_seed(0)
    draws = {choose(logits, Sampling(temperature=5.0), generator=g) for _ in range(200)}
    assert draws == {0, 1, 2, 3}
    g = torch.Generator().manual_seed(0)
    draws = {choose(logits, Sampling(temperature=5.0, top_k=2), generator=g) for _ in range(200)}
    assert draws == {1, 2}
    with pytest.raises(VitaError, match="top-p"):
        Sampling(top_p=0)


def test_sampled_generation_is_reproducible(models):
    llm, mctp = models
    s = Sampling(temperature=1.0, top_k=20, seed=3)
    a = Engine(llm, mctp).generate_ids([5, 6, 7], 30, "boost", s, stop=None)
    b = Engine(llm, mctp).generate_ids([5, 6, 7], 30, "boost", s, stop=None)
    assert a == b


class FakeCodec:
    samples_per_token = 4

    def decode(self, codes, voice=0):
        return torch.repeat_interleave(codes.float(), 4)


def test_stream_chunks_end_exactly_at_end_of_audio():
    a = lambda *c: [AUDIO_OFFSET + x for x in c]  # noqa: E731
    ids = (text_ids("hé") + [BOA] + a(1, 2, 3) + [EOA] + text_ids("y") + [BOA] + a(4, 5)
           + [EOA] + [BOA] + a(6) + [END])
    events = list(stream_events(ids, FakeCodec()))
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert [c.codes for c in chunks] == [[1, 2, 3], [4, 5]]  # the unfinished third is not a chunk
    assert "".join(e.text for e in events if isinstance(e, TextPiece)) == "héy"
    assert chunks[0].wav.tolist() == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    assert chunks[1].wav.tolist() == [4.0] * 4 + [5.0] * 4  # left context cut off again
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["TextPiece", "TextPiece", "AudioChunk", "TextPiece", "AudioChunk"]


def test_benchmark_reports_every_mode_and_size(tmp_path):
    from vita_mini.infer.benchmark import run_benchmark

    sizes = [("a", CFG), ("b", LLMConfig(d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=64))]
    path = tmp_path / "speed.json"
    rows = run_benchmark(V, n_new=24, sizes=sizes, json_path=str(path), log=lambda *_: None)
    assert [(r.size, r.mode) for r in rows] == [(s, m) for s in "ab" for m in MODES]
    for r in rows:
        assert r.total_s > 0 and r.first_chunk_s <= r.total_s and r.r > 0
        assert r.tokens_per_s == pytest.approx(24 / r.total_s)
    assert all(r.speedup == 1.0 and r.ideal_speedup == 1.0 for r in rows if r.mode == "vanilla")
    from vita_mini.infer.benchmark import step_weight_bytes
    llm = LLM(CFG, V)
    layers = sum(p.numel() for p in llm.layers.parameters()) + sum(p.numel() for p in llm.norm.parameters())
    assert step_weight_bytes(llm) == 4 * (layers + V * CFG.d_model + CFG.d_model)  # + LM head, one row
    assert all(r.weight_gb_per_s > 0 for r in rows)
    import json
    assert len(json.loads(path.read_text())) == 8
    assert {r.dtype for r in rows} == {"float32"}
    half = run_benchmark(V, n_new=12, sizes=sizes[:1], dtype=torch.bfloat16, log=lambda *_: None)
    assert {r.dtype for r in half} == {"bfloat16"} and len(half) == len(MODES)


def test_step_profile_splits_a_one_token_and_a_catch_up_step():
    from vita_mini.infer.step_profile import CATEGORIES, category, format_table, profile_size

    rows = profile_size(CFG, V, new=5, context=8, dtype=torch.float32, repeats=2)
    assert sorted(rows) == [1, 5]
    for row in rows.values():
        assert row["wall"] > 0 and all(row[label] >= 0 for label in CATEGORIES)
        assert row["matmul"] > 0 and row["attention"] > 0  # every step runs both
    assert category("aten::addmm") == "matmul" and category("aten::cat") == "copies"
    assert category("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert category("aten::view") == "other ops"
    table = format_table({"a": rows}, 5)
    assert "| a | 5 |" in table and "| 1.00 |" in table


def test_decoding_layout_keeps_values_and_tokens():
    import copy

    torch.manual_seed(3)
    llm = LLM(CFG, V).eval()
    plain = copy.deepcopy(llm)
    use_decoding_layout(llm)
    q = llm.layers[0].self_attn.q_proj.weight
    assert q.shape == plain.layers[0].self_attn.q_proj.weight.shape and q.stride() == (1, q.size(0))
    assert all(torch.equal(a, b) for a, b in zip(llm.state_dict().values(), plain.state_dict().values()))
    tokens = torch.randint(0, V, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(llm(tokens)[0], plain(tokens)[0], atol=1e-5, rtol=0)
    prompt = tokens[0].tolist()
    assert greedy_generate(llm, prompt, 20, stop=None) == greedy_generate(plain, prompt, 20, stop=None)
    half = copy.deepcopy(plain).to(torch.bfloat16)
    use_decoding_layout(half)  # bf16 is left alone: the layout was 20x slower there
    assert half.layers[0].self_attn.q_proj.weight.is_contiguous()


WIDE = LLMConfig(d_model=512, n_layers=1, n_heads=8, n_kv_heads=2, d_ff=1024, max_seq_len=128)
needs_mkl = pytest.mark.skipif(not mkl_packing_available(), reason="this PyTorch build has no MKL")


@pytest.fixture(scope="module")
def wide_models():
    """Weights large enough (512 x 512 and up) for the engine to pack them for MKL."""
    torch.manual_seed(1)
    llm, mctp = LLM(WIDE, V).eval(), MCTP(WIDE, 3).eval()
    with torch.no_grad():
        for p in list(llm.parameters()) + list(mctp.parameters()):
            if p.dim() > 1:
                p.normal_(0, 0.1)
    return llm, mctp


@needs_mkl
@pytest.mark.parametrize("schedule", [[1, 3], [2, 3, 1, 2]])
def test_packed_catch_up_logits_equal_a_full_recomputation(wide_models, schedule):
    llm, mctp = wide_models
    engine = Recording(llm, mctp)
    layer = llm.layers[0]  # q, k, v stacked (768 x 512) and gate, up (2048 x 512): packed products
    assert isinstance(layer.self_attn, DecodingAttention) and isinstance(layer.mlp, DecodingMLP)
    assert isinstance(layer.mlp.down_proj, DecodingLinear) and isinstance(mctp.mods[0].proj, DecodingLinear)
    assert type(llm.lm_head) is torch.nn.Linear  # V x 512: too small to pay
    engine.log = []
    prompt = torch.randint(0, 256, (20,)).tolist()  # the prefill (20 rows) takes F.linear
    out = engine.generate_ids(prompt, 40, schedule, stop=None)
    ids = torch.tensor([prompt + out])
    with torch.no_grad():  # 60 rows at once: F.linear, the reference
        logits, hidden = llm(ids)
        states = mctp(llm, ids, hidden)
    for k, q, got in engine.log:
        want = logits[0, q] if k < 0 else llm.lm_head(states[k][0, q])
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


@needs_mkl
def test_decoding_linear_equals_f_linear_for_every_row_count_and_follows_its_weight():
    import copy

    torch.manual_seed(4)
    layer = torch.nn.Linear(512, 768)
    plain = copy.deepcopy(layer)
    use_decoding_layout(layer)
    assert isinstance(layer, DecodingLinear) and layer.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        for rows in range(1, PACKED_ROWS + 2):  # 1 and PACKED_ROWS + 1: F.linear; between: packed
            x = torch.randn(1, rows, 512)
            torch.testing.assert_close(layer(x), plain(x), atol=1e-5, rtol=1e-5)
        x = torch.randn(3, 512)
        layer.weight.mul_(2.0)  # an optimizer step would do this in place: the copy is remade
        torch.testing.assert_close(layer(x), 2 * (plain(x) - plain.bias) + plain.bias, atol=1e-5, rtol=1e-5)
    twin = copy.deepcopy(layer)  # the packed copy is not part of the module: deepcopy works
    assert torch.equal(twin.weight, layer.weight)
    x = torch.randn(3, 512, requires_grad=True)
    layer(x).sum().backward()  # under autograd it is an ordinary nn.Linear
    assert layer.weight.grad is not None and x.grad is not None
