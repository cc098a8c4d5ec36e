"""Where an LLM decoding step spends its time on this machine: one new token (a Vanilla step)
against the catch-up forward over k+1 tokens that follows k MCTP tokens (tutorials/paper.md §5).

    python -m vita_mini.infer.step_profile                        # every benchmark size, fp32
    python -m vita_mini.infer.step_profile --dtype bfloat16 --new 11 --context 512

VITA-Audio's speedup assumes the catch-up costs about what one token costs (c = 1): a one-token
step is bound by reading the weights, so a few more rows come almost free. This tool shows, per
benchmark size (infer/benchmark.py, random weights), what each step's time is made of: a
KV cache holding ``--context`` positions, then ``--repeats`` steps of 1 and of ``--new`` tokens,
each rolled back afterwards so that all see the same cache. Per step, in milliseconds:

    wall        the step without the profiler (median), and c = catch-up wall / one-token wall
    matmul      the linear layers (aten::mm, addmm, matmul, linear)
    attention   scaled-dot-product attention over the cache
    copies      copying and concatenating (the KV cache update, RoPE's halves, casts)
    elementwise norms, SiLU, RoPE's products, residual additions
    other ops   every other operator (views, indexing, arange, embedding)
    rest        the profiled step's wall time minus its operators' self time: Python between
                operators, and the profiler's own cost

Nothing is saved; the models are built from random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import asdict

import torch
from torch.profiler import ProfilerActivity, profile

from vita_mini.cli import run_main
from vita_mini.config import LLMConfig
from vita_mini.infer.benchmark import SIZES
from vita_mini.infer.decoding_layout import use_decoding_layout
from vita_mini.model.llm import LLM

CATEGORIES = ("matmul", "attention", "copies", "elementwise", "other ops", "rest")

# operator names -> category (any operator with "attention" in its name is attention)
OPERATOR_CATEGORIES = (
    ("matmul", {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
                "mkl::_mkl_linear"}),
    ("copies", {"aten::copy_", "aten::cat", "aten::repeat", "aten::clone", "aten::contiguous",
                "aten::_to_copy", "aten::to"}),
    ("elementwise", {"aten::mul", "aten::add", "aten::sub", "aten::div", "aten::div_", "aten::neg",
                     "aten::silu", "aten::pow", "aten::mean", "aten::rsqrt", "aten::exp",
                     "aten::rms_norm", "aten::_fused_rms_norm"}),
)


def category(name: str) -> str:
    if "attention" in name:
        return "attention"
    for label, names in OPERATOR_CATEGORIES:
        if name in names:
            return label
    return "other ops"


def one_step(llm: LLM, cache, tokens: torch.Tensor) -> None:
    """One cached forward of ``tokens`` [1, T], the logits of the last position only (as the
    engine's LLM step), then the cache rolled back to where it was."""
    length = cache[0].length
    llm(tokens, cache=cache, logits_for_last_only=True)
    for layer_cache in cache:
        layer_cache.length = length


@torch.no_grad()
def profile_size(cfg: LLMConfig, vocab: int, new: int, context: int, dtype: torch.dtype,
                 repeats: int, seed: int = 0) -> dict:
    """{1: row, new: row}: a row per step kind, {category: ms, "wall": ms}."""
    torch.manual_seed(seed)
    llm = LLM(LLMConfig(**{**asdict(cfg), "max_seq_len": context + new}), vocab).eval().to(dtype)
    use_decoding_layout(llm)  # the weights as the engine lays them out
    cache = llm.new_cache(1)
    llm(torch.randint(0, vocab, (1, context)), cache=cache, return_logits=False)  # the context
    rows = {}
    for T in (1, new):
        tokens = torch.randint(0, vocab, (1, T))
        for _ in range(3):  # warm-up: first calls pick kernels and allocate
            one_step(llm, cache, tokens)
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            one_step(llm, cache, tokens)
            walls.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(repeats):
                one_step(llm, cache, tokens)
            profiled = (time.perf_counter() - start) * 1e3 / repeats
        totals: dict[str, float] = defaultdict(float)
        for event in prof.key_averages():
            totals[category(event.key)] += event.self_cpu_time_total / 1e3 / repeats
        totals["rest"] = max(0.0, profiled - sum(totals.values()))
        rows[T] = {label: totals.get(label, 0.0) for label in CATEGORIES}
        rows[T]["wall"] = sorted(walls)[len(walls) // 2] * 1e3
    return rows


def format_table(results: dict[str, dict], new: int) -> str:
    header = ("| size | new tokens | wall ms | c | " + " | ".join(CATEGORIES) + " |")
    lines = [header, "|" + "---|" * (len(CATEGORIES) + 4)]
    for name, rows in results.items():
        for T, row in rows.items():
            c = row["wall"] / rows[1]["wall"]
            cells = [f"{row[label]:.1f}" for label in CATEGORIES]
            lines.append(f"| {name} | {T} | {row['wall']:.1f} | {c:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--new", type=int, default=11, help="tokens of the catch-up forward (k+1; Turbo: 11)")
    parser.add_argument("--context", type=int, default=512, help="positions already in the KV cache")
    parser.add_argument("--repeats", type=int, default=10, help="steps timed of each kind")
    parser.add_argument("--vocab", type=int, default=392, help="vocabulary size (the toy token space's)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    dtype = getattr(torch, args.dtype)
    print(f"decoding steps, random weights, {args.context} cached positions, {args.dtype}, "
          f"{torch.get_num_threads()} CPU threads; ms per step")
    results = {}
    for name, cfg in SIZES:
        results[name] = profile_size(cfg, args.vocab, args.new, args.context, dtype, args.repeats)
        print(f"{name}: done", flush=True)
    print(format_table(results, args.new))
    return 0


if __name__ == "__main__":
    run_main(main)
