"""How many drafts a device should ask for: the depth of verified MCTP decoding chosen from the
acceptance a model achieves and the costs this machine measures (beyond the paper: the paper's
modes have fixed depths, tutorials/paper.md §5; drafting and checking, §9).

Verified decoding (infer/verified.py) with the schedule [1, k]: every cycle, modules 0 .. k-1
draft k tokens and one LLM forward over k + 1 tokens checks them. Let a be the number of drafts
accepted in a cycle (counted from the first) and alpha_j = P(draft j accepted | drafts 0 .. j-1
were), the acceptance rate of module offset j. A cycle yields a + 1 tokens, on average

    E_k = 1 + alpha_0 + alpha_0 alpha_1 + ... + alpha_0 ... alpha_{k-1}    (= 1 + sum_j P(a > j))

and costs, in Vanilla LLM steps, c_k + k r_k: c_k = the (k+1)-token forward's time / a one-token
forward's, r_k = a module step's time / a one-token forward's (the benchmark's c and r,
infer/benchmark.py, measured here for every k with the schedule [1, k]). The expected speedup
over Vanilla is then

    S_k = E_k / (c_k + k r_k)

Deeper drafting adds tokens only as long as the product of acceptance rates stays large, and
adds k r_k and the growth of c_k always; the device's depth is the k with the largest S_k. On a
GPU (c ~ 1, r small) that is deep; on a 2-core CPU, where c and r are larger, shallower.

    python -m vita_mini.infer.depth --acceptance runs/toy/speed_quality.json            # 24L-768
    python -m vita_mini.infer.depth --acceptance runs/toy/speed_quality.json --size "toy 6L-192"

reads the acceptance records that ``python -m vita_mini.eval.speed_quality`` wrote for verified
Turbo on the trained model, measures c_k and r_k at a benchmark size (random weights: speed does
not depend on what the weights know), prints S_k for every k and the depth it picks, and checks
the projection once: it runs that size with the depth it picked, replaying the model's recorded
accepted lengths (``ReplayedEngine``), beside Vanilla.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from statistics import median

import torch

from vita_mini.cli import run_main
from vita_mini.config import LLMConfig
from vita_mini.errors import VitaError
from vita_mini.infer.benchmark import SIZES, random_engine, timed_run
from vita_mini.infer.engine import Token
from vita_mini.infer.sampling import Sampling
from vita_mini.infer.verified import VerifiedEngine


# ---- acceptance ---------------------------------------------------------------------------------
def acceptance_rates(records: list[tuple[int, int]], depth: int) -> list[float | None]:
    """alpha_j for j < depth from (drafts checked, drafts accepted) per LLM forward: of the
    forwards that checked draft j with every draft before it accepted, the share that accepted
    it (None where no forward got that far)."""
    rates = []
    for j in range(depth):
        reached = [accepted for drafted, accepted in records if drafted > j and accepted >= j]
        rates.append(sum(a > j for a in reached) / len(reached) if reached else None)
    return rates


def expected_tokens(rates: list[float | None], k: int) -> float:
    """E_k = 1 + alpha_0 + alpha_0 alpha_1 + ... (k terms): tokens per LLM forward at depth k
    (an offset that no forward reached counts as never accepted)."""
    total, survive = 1.0, 1.0
    for alpha in rates[:k]:
        survive *= alpha or 0.0
        total += survive
    return total


# ---- costs --------------------------------------------------------------------------------------
@dataclass
class Cost:
    k: int  # drafts per cycle (schedule [1, k])
    c: float  # the (k+1)-token forward / a one-token forward
    r: float  # a module step / a one-token forward


@torch.no_grad()
def measure_costs(cfg: LLMConfig, vocab: int, depths, n_new: int = 128, seed: int = 0) -> list[Cost]:
    """c_k and r_k for every k in ``depths``: the schedule [1, k] (unverified), each right after
    a Vanilla run it is compared with (a machine whose speed drifts then moves both alike), with
    random weights shaped by ``cfg``; each run generates ``n_new`` tokens. Medians of the step
    times, so that a moment's pause of the machine (another process, the OS) counts against no
    step kind in particular."""
    engine, prompt = random_engine(cfg, vocab, 32, n_new, max(depths), seed)
    timed_run(engine, prompt, 16, (1, max(depths)))  # warm-up: first calls allocate and pick kernels
    costs = []
    for k in depths:
        one = median(timed_run(engine, prompt, n_new, "vanilla")["llm"][1:])  # [1:]: without the prefill
        run = timed_run(engine, prompt, n_new, (1, k))
        costs.append(Cost(k, median(run["llm"][1:]) / one, median(run["mctp"]) / one))
    return costs


def projected_speedup(rates: list[float | None], cost: Cost) -> float:
    """S_k = E_k / (c_k + k r_k)."""
    return expected_tokens(rates, cost.k) / (cost.c + cost.k * cost.r)


def best_depth(rates: list[float | None], costs: list[Cost]) -> Cost:
    """The depth with the largest projected speedup."""
    return max(costs, key=lambda cost: projected_speedup(rates, cost))


def format_depths(rates: list[float | None], costs: list[Cost]) -> str:
    best = best_depth(rates, costs).k
    lines = [f"{'k':>3} {'alpha_k-1':>9} {'E_k':>6} {'c_k':>6} {'r_k':>6} {'c_k + k r_k':>11} {'S_k':>6}"]
    for cost in costs:
        alpha = rates[cost.k - 1]
        lines.append(f"{cost.k:>3} {'-' if alpha is None else f'{alpha:.2f}':>9} "
                     f"{expected_tokens(rates, cost.k):>6.2f} {cost.c:>6.2f} {cost.r:>6.3f} "
                     f"{cost.c + cost.k * cost.r:>11.2f} {projected_speedup(rates, cost):>5.2f}x"
                     + ("  <- chosen" if cost.k == best else ""))
    return "\n".join(lines)


# ---- the replay check ---------------------------------------------------------------------------
class ReplayedEngine(VerifiedEngine):
    """Verified decoding whose acceptance is read from a recording (drafts accepted per LLM
    forward, given to ``replay``, cycled) instead of compared with the LLM: a model of any size
    then does the work, in the same shapes, that a model with that acceptance profile would do."""

    def replay(self, accepted: list[int]) -> None:
        """From the next forward on, accept ``accepted[0]``, ``accepted[1]``, ... drafts (cycled)."""
        self.next_accepted = itertools.cycle(accepted)

    def check_drafts(self, drafts: list[Token], rows: torch.Tensor, draft_probs, sampling: Sampling,
                     generator) -> tuple[int, int]:
        if not drafts:  # a forward with nothing to check (a prompt's first) takes no entry
            return 0, int(rows[0].argmax())
        accepted = min(next(self.next_accepted), len(drafts))
        return accepted, int(rows[accepted].argmax())


@torch.no_grad()
def replay_speedup(cfg: LLMConfig, vocab: int, accepted: list[int], k: int, n_new: int,
                   seed: int = 0) -> dict:
    """Vanilla and verified [1, k] with the accepted lengths ``accepted`` replayed (each capped
    at k), alternately twice at random weights shaped by ``cfg`` -> measured and replayed
    tokens per forward, seconds, speedup."""
    engine, prompt = random_engine(cfg, vocab, 32, n_new, k, seed, engine_class=ReplayedEngine)
    engine.replay(accepted)
    list(engine.generate(prompt, 16, (1, k), stop=None))  # warm-up
    vanilla, replayed = [], []
    for _ in range(2):
        start = time.perf_counter()
        list(engine.generate(prompt, n_new, "vanilla", stop=None))
        vanilla.append(time.perf_counter() - start)
        engine.replay(accepted)  # from the start of the recording
        start = time.perf_counter()
        list(engine.generate(prompt, n_new, (1, k), stop=None))
        replayed.append(time.perf_counter() - start)
    return {"k": k, "vanilla_s": sum(vanilla), "replayed_s": sum(replayed),
            "speedup": sum(vanilla) / sum(replayed),
            "tokens_per_forward": n_new / len(engine.acceptance)}


# ---- the command line ---------------------------------------------------------------------------
def load_records(path: str) -> tuple[list[tuple[int, int]], int]:
    """The verified-Turbo acceptance records of a speed-quality JSON and the vocabulary size."""
    try:
        with open(path) as f:
            results = json.load(f)
        return [tuple(x) for x in results["acceptance_records"]], int(results["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise VitaError(f"{path}: not a results file of python -m vita_mini.eval.speed_quality "
                        f"({type(err).__name__}: {err})") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vita_mini.infer.depth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acceptance", required=True, help="the JSON of python -m vita_mini.eval.speed_quality")
    sizes = dict(SIZES)
    parser.add_argument("--size", default=SIZES[-1][0], choices=list(sizes),
                        help="benchmark size (default: the deepest)")
    parser.add_argument("--max-depth", type=int, default=10, help="deepest k tried (the cascade's modules)")
    parser.add_argument("--new", type=int, default=256, help="tokens per timed run of the replay")
    args = parser.parse_args(argv)
    records, vocab = load_records(args.acceptance)
    rates = acceptance_rates(records, args.max_depth)
    print(f"acceptance per module offset j (alpha_j, from {len(records)} LLM forwards of verified Turbo "
          f"in {args.acceptance}):")
    print("  " + "  ".join(f"{j}: {'-' if a is None else f'{a:.2f}'}" for j, a in enumerate(rates)))
    print(f"costs at {args.size}, random weights, {torch.get_num_threads()} CPU threads "
          f"(each k beside a Vanilla run; 128 tokens a run):")
    costs = measure_costs(sizes[args.size], vocab, range(1, args.max_depth + 1))
    print(format_depths(rates, costs))
    best = best_depth(rates, costs)
    checked = [accepted for drafted, accepted in records if drafted > 0]  # forwards that checked drafts
    replay = replay_speedup(sizes[args.size], vocab, checked, best.k, args.new)
    print(f"replay at k = {best.k}: the recorded accepted lengths, capped at {best.k}, on {args.size}: "
          f"{replay['tokens_per_forward']:.2f} tokens per LLM forward, Vanilla {replay['vanilla_s']:.2f} s, "
          f"replayed {replay['replayed_s']:.2f} s: measured speedup {replay['speedup']:.2f}x against "
          f"the projected {projected_speedup(rates, best):.2f}x")
    return 0


if __name__ == "__main__":
    run_main(main)
