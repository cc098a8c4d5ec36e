"""Verified MCTP decoding: greedy output equals Vanilla's, drafts accepted and rolled back."""

import re

import pytest
import torch

from vita_mini.config import LLMConfig
from vita_mini.errors import VitaError
from vita_mini.infer.engine import Engine
from vita_mini.infer.sampling import Sampling
from vita_mini.infer.stream import AudioChunk, stream_events
from vita_mini.infer.verified import VerifiedEngine
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.vocab import AUDIO_OFFSET, BOA, EOA

CFG = LLMConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=160)
V = AUDIO_OFFSET + 16


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    llm, mctp = LLM(CFG, V).eval(), MCTP(CFG, 10).eval()
    with torch.no_grad():  # larger weights than the init, so that greedy picks vary
        for p in list(llm.parameters()) + list(mctp.parameters()):
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return llm, mctp


class OracleDrafts(VerifiedEngine):
    """Modules that draft the LLM's own next token (from a full forward without cache), except
    at the draft numbers in ``wrong``, where they draft ``wrong_token``: drafts that are
    accepted, and drafts that are rejected in the middle of a run. The modules still run, so
    their caches advance and must be cut back as usual."""

    def __init__(self, llm, mctp, wrong=(), wrong_token=None):
        super().__init__(llm, mctp)
        self.wrong, self.wrong_token, self.calls, self.log = set(wrong), wrong_token, 0, []

    def module_step(self, k):
        own = super().module_step(k)  # what module k computed: kept for the recomputation test
        self.log.append((k, self.n - 1, self.ids[0, :self.n].tolist(), own.clone()))
        self.calls += 1
        logits = self.llm(self.ids[:, :self.n])[0][0, -1]  # the LLM's choice here, recomputed
        if self.calls in self.wrong:
            bad = self.wrong_token if self.wrong_token is not None else int(logits.argmax()) ^ 1
            logits = torch.zeros_like(logits)
            logits[bad] = 1.0
        return logits


PROMPTS = [torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in range(3, 11)]


@pytest.mark.parametrize("schedule", ["turbo", "boost", "balance", [1, 3], [2, 1, 1, 4]])
def test_greedy_verified_output_is_vanillas_for_every_prompt(models, schedule):
    llm, mctp = models
    vanilla, verified = Engine(llm, mctp), VerifiedEngine(llm, mctp)
    for prompt in PROMPTS[:5]:
        want = vanilla.generate_ids(prompt, 50, "vanilla", stop=None)
        got = [t.id for t in verified.generate(prompt, 50, schedule, stop=None)]
        assert got == want, prompt


def test_accepted_and_rejected_drafts_are_cut_back_everywhere(models):
    llm, mctp = models
    prompt = PROMPTS[4]
    want = Engine(llm, mctp).generate_ids(prompt, 70, "vanilla", stop=None)
    perfect = OracleDrafts(llm, mctp)
    tokens = list(perfect.generate(prompt, 70, "turbo", stop=None))
    assert [t.id for t in tokens] == want
    assert all(accepted == drafted for drafted, accepted in perfect.acceptance)  # nothing rejected
    assert len(perfect.acceptance) == 8 and {t.source for t in tokens} == {-1, *range(10)}  # 1 + 6 x 11 + 3
    flawed = OracleDrafts(llm, mctp, wrong={3, 14, 15, 27})  # rejections inside runs, then after them
    tokens = list(flawed.generate(prompt, 70, "turbo", stop=None))
    assert [t.id for t in tokens] == want
    # (drafts checked, accepted) per LLM forward: the prefill, then a rejection at the 3rd, 4th
    # and 7th draft of three runs (draft 15 comes after 14's rejection), then a clean run
    assert flawed.acceptance[:5] == [(0, 0), (10, 2), (10, 3), (10, 6), (10, 10)]


def test_a_rejected_end_of_audio_never_reaches_the_stream(models):
    """A draft EOA that the LLM rejects would end an audio chunk in Turbo; verified, the stream
    has exactly Vanilla's chunks."""
    llm, mctp = models
    prompt = PROMPTS[6] + [BOA] + [AUDIO_OFFSET + i for i in range(5)]
    vanilla = Engine(llm, mctp).generate_ids(prompt, 50, "vanilla", stop=None)
    engine = OracleDrafts(llm, mctp, wrong={2, 9, 20}, wrong_token=EOA)
    tokens = list(engine.generate(prompt, 50, "turbo", stop=None))
    assert [t.id for t in tokens] == vanilla
    assert any(accepted < drafted for drafted, accepted in engine.acceptance)
    chunks = [e.codes for e in stream_events(tokens) if isinstance(e, AudioChunk)]
    assert chunks == [e.codes for e in stream_events(vanilla) if isinstance(e, AudioChunk)]


def test_stop_and_budget(models):
    llm, mctp = models
    prompt = PROMPTS[2]
    free = VerifiedEngine(llm, mctp).generate_ids(prompt, 40, "turbo", stop=None)
    stop = free[17]
    first = free.index(stop)
    assert VerifiedEngine(llm, mctp).generate_ids(prompt, 40, "turbo", stop=stop) == free[:first + 1]
    for n in (1, 5, 11, 12, 23):
        assert OracleDrafts(llm, mctp).generate_ids(prompt, n, "turbo", stop=None) == free[:n]


def test_bad_input_is_one_line(models):
    llm, mctp = models
    with pytest.raises(VitaError, match="verified decoding checks the MCTP modules' drafts"):
        list(VerifiedEngine(llm).generate([1, 2], 5, "turbo"))
    with pytest.raises(VitaError, match="takes no repetition penalty"):
        list(VerifiedEngine(llm, mctp).generate([1, 2], 5, "turbo", Sampling(temperature=0.8, repetition_penalty=1.2)))


@pytest.mark.parametrize("schedule", ["turbo", [1, 3, 2, 4]])
def test_module_states_after_rollbacks_equal_a_full_recomputation(models, schedule):
    """Every module step whose inputs all stood in the end computed what a teacher-forced
    forward of the cascade over the final sequence computes: the caches were cut back right."""
    llm, mctp = models
    engine = OracleDrafts(llm, mctp, wrong={3, 12, 16, 24, 33})  # rejections after accepted drafts
    prompt = PROMPTS[5]
    out = engine.generate_ids(prompt, 60, schedule, stop=None)
    final = prompt + out
    assert any(accepted < drafted for drafted, accepted in engine.acceptance)  # rollbacks happened
    with torch.no_grad():
        ids = torch.tensor([final])
        _, hidden = llm(ids)
        states = mctp(llm, ids, hidden)
    checked = 0
    for k, q, prefix, got in engine.log:
        if prefix == final[:q + 1]:
            torch.testing.assert_close(got, llm.lm_head(states[k][0, q]), atol=2e-4, rtol=1e-4)
            checked += 1
    assert checked >= 10


# chi-square critical values at alpha = 0.001 by degrees of freedom
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}


def chi_square_two_samples(a: list[int], b: list[int]) -> tuple[float, int]:
    """Pearson's statistic of the 2 x K table of two samples' counts, and its degrees of freedom."""
    cats = sorted(set(a) | set(b))
    counts = [[x.count(c) for c in cats] for x in (a, b)]
    total = len(a) + len(b)
    stat = 0.0
    for row, n in zip(counts, (len(a), len(b))):
        for c, observed in enumerate(row):
            expected = n * (counts[0][c] + counts[1][c]) / total
            stat += (observed - expected) ** 2 / expected
    return stat, len(cats) - 1


def test_sampled_verification_draws_from_the_llms_distribution():
    """Tokens 2 and 3 of an answer (MCTP drafts in [1, 3]) sampled 1200 times with verification
    and 1200 times with Vanilla: a two-sample chi-square test at alpha = 0.001 must not tell
    them apart (measured: 6.4 and 3.2 with 5 degrees of freedom, critical value 20.5). Its power,
    on the same model: Turbo's sampling (every draft accepted, the modules' own distribution) gives
    1455 and 291, asserted above 100 below; a wrong rule that draws a rejected draft's replacement
    from p instead of max(0, p - q) gave 47.9 at token 2 (tried once, by editing the engine)."""
    torch.manual_seed(5)
    small = LLMConfig(d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, max_seq_len=16)
    vocab = 6
    llm, mctp = LLM(small, vocab).eval(), MCTP(small, 3).eval()
    with torch.no_grad():
        for p in list(llm.parameters()) + list(mctp.parameters()):
            if p.dim() > 1:
                p.normal_(0, 0.6)
    vanilla, verified = Engine(llm, mctp), VerifiedEngine(llm, mctp)
    runs = {"vanilla": [], "verified": [], "turbo": []}
    for seed in range(1200):
        sampling = Sampling(temperature=1.0, seed=seed)
        runs["vanilla"].append(vanilla.generate_ids([1, 2], 3, "vanilla", sampling, stop=None))
        runs["verified"].append(verified.generate_ids([1, 2], 3, [1, 3], sampling, stop=None))
        runs["turbo"].append(vanilla.generate_ids([1, 2], 3, [1, 3], sampling, stop=None))
    for position in (1, 2):
        pick = {name: [r[position] for r in rows] for name, rows in runs.items()}
        stat, df = chi_square_two_samples(pick["vanilla"], pick["verified"])
        assert stat < CHI2_999[df], (position, stat, df)
        stat, df = chi_square_two_samples(pick["vanilla"], pick["turbo"])
        assert stat > 100, (position, stat, df)  # the test has the power to see a wrong rule


class Confidences(Engine):
    """Records each module step's top probability and position."""

    def module_step(self, k):
        logits = super().module_step(k)
        self.seen.append((self.n, logits.softmax(-1).max().item()))
        return logits


def test_adaptive_depth_lets_only_confident_modules_write(models):
    llm, mctp = models
    prompt = PROMPTS[3]
    vanilla = Engine(llm, mctp).generate_ids(prompt, 50, "vanilla", stop=None)
    engine = Confidences(llm, mctp)
    engine.seen = []
    never = list(engine.generate(prompt, 50, "turbo", stop=None, min_confidence=0.999))
    assert [t.id for t in never] == vanilla and all(t.source == -1 for t in never)  # no module is that sure
    engine.seen = []
    middle = list(engine.generate(prompt, 60, "turbo", stop=None, min_confidence=0.3))
    sure = {n for n, p in engine.seen if p >= 0.3}  # positions (n before the token) a module was sure at
    written = [i for i, t in enumerate(middle) if t.source >= 0]
    assert written and len(written) < len(middle)  # some modules wrote, some turns went to the LLM
    assert all(len(prompt) + i in sure for i in written)
    for i, t in enumerate(middle[1:], 1):  # after the LLM took a module's turn, a run starts at module 0
        if t.source >= 0 and middle[i - 1].source == -1:
            assert t.source == 0


def test_a_threshold_per_kind_of_token(models):
    """(text, audio): the threshold of the kind of the module's most likely token applies."""
    from vita_mini.vocab import is_audio
    llm, mctp = models
    engine = Engine(llm, mctp)
    kinds = {"text": lambda t: not (is_audio(t) or t in (BOA, EOA)), "audio": lambda t: is_audio(t) or t in (BOA, EOA)}
    for prompt in PROMPTS[:4]:
        # the same threshold for both kinds is the single threshold
        assert engine.generate_ids(prompt, 60, "turbo", stop=None, min_confidence=(0.3, 0.3)) == \
            engine.generate_ids(prompt, 60, "turbo", stop=None, min_confidence=0.3)
        for open_kind, pair in (("text", (0.0, 0.999)), ("audio", (0.999, 0.0))):
            out = list(engine.generate(prompt, 60, "turbo", stop=None, min_confidence=pair))
            assert all(kinds[open_kind](t.id) for t in out if t.source >= 0), (open_kind, prompt)
    # text tokens are most of this vocabulary: with text open, modules do write
    out = list(engine.generate(PROMPTS[0], 60, "turbo", stop=None, min_confidence=(0.0, 0.999)))
    assert any(t.source >= 0 for t in out)


@pytest.mark.parametrize("text", ["0.7", "0.9,0.5", "abc", "0.1,0.2,0.3"])
def test_threshold_argument(text):
    import argparse
    from vita_mini.cli import threshold_arg
    if text in ("0.7", "0.9,0.5"):
        assert threshold_arg(text) == (0.7 if text == "0.7" else (0.9, 0.5))
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="give a threshold such as 0.7"):
            threshold_arg(text)


@pytest.mark.parametrize("threshold", [0.2, 0.5])
def test_adaptive_verified_output_is_still_vanillas(models, threshold):
    llm, mctp = models
    for prompt in PROMPTS[:4]:
        want = Engine(llm, mctp).generate_ids(prompt, 50, "vanilla", stop=None)
        engine = OracleDrafts(llm, mctp, wrong={4, 9})
        assert engine.generate_ids(prompt, 50, "turbo", stop=None, min_confidence=threshold) == want


@pytest.mark.parametrize("threshold", [-0.1, 1.0, 2.0, (0.5, 1.2), (0.1, 0.2, 0.3)])
def test_a_threshold_outside_0_1_is_one_line(models, threshold):
    llm, mctp = models
    for engine in (Engine(llm, mctp), VerifiedEngine(llm, mctp)):
        with pytest.raises(VitaError, match=f"confidence threshold {re.escape(str(threshold))}: must lie in"):
            list(engine.generate([1, 2], 5, "turbo", min_confidence=threshold))


class DraftLog(VerifiedEngine):
    """Verified decoding that also keeps, per LLM forward, the draft ids and how many it accepted."""

    def check_drafts(self, drafts, rows, draft_probs, sampling, generator):
        accepted, token = super().check_drafts(drafts, rows, draft_probs, sampling, generator)
        self.checked.append(([d.id for d in drafts], accepted))
        return accepted, token


@pytest.mark.parametrize("schedule, max_new", [
    ("turbo", 100),
    pytest.param("turbo", None, marks=pytest.mark.slow),  # whole answers: about 4x the time
    pytest.param("boost", None, marks=pytest.mark.slow),
])
def test_greedy_verified_output_is_vanillas_on_every_prompt_of_the_evaluation_suite(tiny_full_run, schedule,
                                                                                      max_new):
    """The trained tiny model (not random weights): every TTS sentence of the test split and every
    spoken question (seen and text-only facts) that python -m vita_mini.eval asks; in the default
    suite the first 100 tokens of each answer (seven audio chunks of the interleave), whole answers
    in the slow tests."""
    from vita_mini.config import get_config
    from vita_mini.eval.suite import load_suite_data
    from vita_mini.vocab import SPOKEN_ANSWER_INSTRUCTION, TTS_INSTRUCTION, prompt_tokens, text_ids

    run, _, _ = tiny_full_run
    cfg = get_config("tiny", [f"cache_dir={run / 'cache'}"])
    cfg.run_dir = str(run / "run")
    data = load_suite_data(cfg, torch.device("cpu"), log=lambda *a: None)
    prompts = [prompt_tokens(TTS_INSTRUCTION, text_ids(t)) for t in data.test_texts]
    prompts += [prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, q.user) for q in data.sqa.test_seen + data.sqa.test_text]
    assert len(prompts) == 32
    plain, verified = Engine(data.llm, data.mctp), DraftLog(data.llm, data.mctp)
    verified.checked = []
    max_new = max_new or data.llm.cfg.max_seq_len
    for prompt in prompts:
        assert verified.generate_ids(prompt, max_new, schedule) == plain.generate_ids(prompt, max_new, "vanilla")
    # rollbacks happened, among them ones that took back a chunk boundary (a drafted BOA or EOA)
    rolled_back = [ids[accepted:] for ids, accepted in verified.checked if accepted < len(ids)]
    assert rolled_back and any(BOA in ids or EOA in ids for ids in rolled_back)
    assert any(accepted > 0 for _, accepted in verified.checked)  # and drafts were accepted too
