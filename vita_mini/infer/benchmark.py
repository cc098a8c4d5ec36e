"""Speed of the four inference modes, measured as the paper does (tutorials/paper.md §7).

Random weights (speed does not depend on what the weights know), a prompt of 32 random tokens,
then N new tokens (default 1024) with no stop token, greedy, batch 1, in every mode, for several
model sizes. Per mode and size it reports:

    total      seconds for the prompt and all N tokens
    tok/s      N / total
    speedup    Vanilla's total / this mode's total
    first      seconds until the first complete audio chunk exists: the first t1 + a1 tokens
               of the interleave (1 + 10 = 11 with [1, 10, 4, 10]), prompt included
    r          one MCTP step's time / one Vanilla LLM step's time (means over the runs)
    ideal      (m + k) / (m + k*r) for the mode's repeating pair [m, k], from the measured r
    c          one LLM step's time in this mode / one Vanilla LLM step's time. After a run of k
               MCTP tokens the LLM ingests k+1 tokens in one forward; on a GPU that costs about
               the same as one token (c ~ 1, the paper's assumption), on a small CPU it does not
    ideal(c)   (m + k) / (m*c + k*r): the best any engine can do on this machine, given c and r
    GB/s       (Vanilla) bytes of weights one Vanilla LLM step reads (every layer and the LM
               head; of the embedding table one row) / the step's time: the memory bandwidth
               it achieves. A one-token step streams the weights once, so its speed limit is
               the machine's bandwidth, and this column says how close Vanilla comes to it

If measured speedup is close to ideal, the engine spends its time in the model, not in
bookkeeping. Vanilla is the same engine with no MCTP steps, i.e. plain KV-cache decoding
(tests/test_engine.py checks that it equals greedy decoding with and without the cache).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from vita_mini.config import LLMConfig
from vita_mini.infer.engine import Engine
from vita_mini.infer.schedule import MODES, ideal_speedup
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.checkpoint import save_json
from vita_mini.vocab import BOOST_RATIO

# (name, config): the toy LLM, a 12-layer and a 24-layer model; head_dim 64 from 512 on
SIZES = [
    ("toy 6L-192", LLMConfig()),
    ("12L-512", LLMConfig(d_model=512, n_layers=12, n_heads=8, n_kv_heads=2, d_ff=1408)),
    ("24L-768", LLMConfig(d_model=768, n_layers=24, n_heads=12, n_kv_heads=2, d_ff=2048)),
]


@dataclass
class Row:
    size: str
    params_m: float
    dtype: str
    mode: str
    total_s: float
    tokens_per_s: float
    speedup: float
    first_chunk_s: float
    r: float
    ideal_speedup: float
    c: float
    ideal_with_catchup: float
    weight_gb_per_s: float  # Vanilla's achieved weight bandwidth (the same number on every row)


def timed_run(engine: Engine, prompt: list[int], n_new: int, mode: str) -> dict:
    """Generate n_new tokens; the time of every step, by who took it."""
    start = time.perf_counter()
    last, llm_steps, mctp_steps, stamps = start, [], [], []
    for token in engine.generate(prompt, n_new, mode, stop=None):
        now = time.perf_counter()
        (llm_steps if token.source < 0 else mctp_steps).append(now - last)
        stamps.append(now - start)
        last = now
    return {"total": last - start, "llm": llm_steps, "mctp": mctp_steps, "stamps": stamps}


def mean(xs: list[float]) -> float:
    return sum(xs) / max(1, len(xs))


def random_engine(cfg: LLMConfig, vocab: int, n_prompt: int, n_new: int, n_modules: int = 10, seed: int = 0,
                  dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                  engine_class=Engine) -> tuple[Engine, list[int]]:
    """An engine over an LLM and MCTP cascade of random weights shaped by ``cfg``, with room for
    ``n_prompt + n_new`` positions, and a random prompt of ``n_prompt`` tokens."""
    cfg = LLMConfig(**{**asdict(cfg), "max_seq_len": n_prompt + n_new})
    torch.manual_seed(seed)
    llm = LLM(cfg, vocab).eval().to(device, dtype)
    mctp = MCTP(cfg, n_modules).eval().to(device, dtype)
    prompt = torch.randint(0, vocab, (n_prompt,), generator=torch.Generator().manual_seed(seed)).tolist()
    return engine_class(llm, mctp), prompt


@torch.no_grad()
def benchmark_size(name: str, cfg: LLMConfig, vocab: int, n_new: int, n_prompt: int = 32,
                   n_modules: int = 10, modes=tuple(MODES), seed: int = 0,
                   dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> list[Row]:
    engine, prompt = random_engine(cfg, vocab, n_prompt, n_new, n_modules, seed, dtype, device)
    llm = engine.llm
    chunk = BOOST_RATIO[0] + BOOST_RATIO[1]
    timed_run(engine, prompt, 16, "turbo")  # warm-up: first calls allocate and pick kernels
    runs = {mode: timed_run(engine, prompt, n_new, mode) for mode in modes}
    llm_step = mean(runs["vanilla"]["llm"][1:])  # decode steps (the first one is the prefill)
    mctp_step = mean([t for mode in modes if mode != "vanilla" for t in runs[mode]["mctp"]])
    r = mctp_step / llm_step
    n_params = llm.num_parameters() / 1e6  # the LLM alone (each module adds about one layer)
    bandwidth = step_weight_bytes(llm) / llm_step / 1e9
    rows = []
    for mode, run in runs.items():
        c = mean(run["llm"][1:]) / llm_step
        m, k = MODES[mode][-2:]
        with_catchup = 1.0 if k == 0 else (m + k) / (m * c + k * r)
        rows.append(Row(name, n_params, str(dtype).removeprefix("torch."), mode, run["total"], n_new / run["total"],
                        runs["vanilla"]["total"] / run["total"], run["stamps"][min(chunk, n_new) - 1],
                        r, ideal_speedup(MODES[mode], r), c, with_catchup, bandwidth))
    return rows


def step_weight_bytes(llm: LLM) -> int:
    """Bytes of weights one single-token LLM step reads: all parameters but the embedding
    table, of which it reads one row."""
    table = llm.embed_tokens.weight
    return (sum(p.numel() * p.element_size() for p in llm.parameters())
            - table.numel() * table.element_size() + table.size(1) * table.element_size())


def format_table(rows: list[Row]) -> str:
    head = (f"{'size':<11} {'params':>7} {'mode':<8} {'total s':>8} {'tok/s':>7} {'speedup':>8} "
            f"{'ideal':>6} {'of it':>6} {'first chunk ms':>14} {'r':>6} {'c':>5} {'ideal(c)':>8} {'of it':>6}"
            f" {'GB/s':>5}")
    lines = [head, "-" * len(head)]
    for x in rows:
        lines.append(f"{x.size:<11} {x.params_m:>6.1f}M {x.mode:<8} {x.total_s:>8.2f} "
                     f"{x.tokens_per_s:>7.0f} {x.speedup:>7.2f}x {x.ideal_speedup:>5.2f}x "
                     f"{x.speedup / x.ideal_speedup * 100:>5.0f}% {x.first_chunk_s * 1000:>14.1f} "
                     f"{x.r:>6.3f} {x.c:>5.2f} {x.ideal_with_catchup:>7.2f}x "
                     f"{x.speedup / x.ideal_with_catchup * 100:>5.0f}%"
                     + (f" {x.weight_gb_per_s:>5.1f}" if x.mode == "vanilla" else ""))
    return "\n".join(lines)


def run_benchmark(vocab: int, n_new: int = 1024, sizes=None, json_path: str | None = None,
                  dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                  log=print) -> list[Row]:
    where = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" \
        else f"cpu, {torch.get_num_threads()} threads"
    log(f"benchmark: random weights, 32 prompt tokens, {n_new} new tokens, vocabulary {vocab}, "
        f"greedy, batch 1, device {where}, {dtype}")
    rows = []
    for i, (name, cfg) in enumerate(sizes or SIZES):
        new = benchmark_size(name, cfg, vocab, n_new, dtype=dtype, device=device)
        table = format_table(new).split("\n")
        log("\n".join(table if i == 0 else table[2:]))  # the header once, then rows as they come
        rows += new
    if json_path:
        save_json(json_path, [asdict(x) for x in rows])
        log(f"wrote {json_path}")
    return rows
