"""Inference modes: which model writes each token (tutorials/paper.md §5).

A schedule is a list [M1, m1, M2, m2, ...]: M LLM forwards (each yields one token), then m MCTP
steps (each yields one token, module 0, 1, ..., m-1 of the cascade), then the next pair. The last
pair repeats forever. Inside every run of m's the module index restarts at 0, because module k
continues the chain started by the LLM's latest hidden state (vita_mini/model/mctp.py).

    mode      schedule              per cycle
    vanilla   [inf, 0]              LLM only: the baseline
    balance   [1, 4, 3, 8, 4, 10]   then 4 LLM + 10 MCTP per cycle
    boost     [1, 10, 4, 10]        4 LLM + 10 MCTP: the LLM writes text, the modules BOA+audio+EOA
    turbo     [1, 10]               1 LLM + 10 MCTP

A model is trained on one text/audio interleave (``alignment_data.ratio``, recorded in its
checkpoint), and a schedule is *in step* with it when the modules write exactly the interleave's
audio chunks (BOA, codes, EOA) and the LLM exactly its text: the Boost mode on the Boost model,
Balance on the Balance model (the official code makes a model's training interleave its default
mode). Out of step, the modules write tokens of a kind they never learned to write at those
positions (Turbo's modules write text); Vanilla needs no step (the LLM writes everything).

With ``r`` = cost of one MCTP step / cost of one LLM step, a cycle of m LLM and k MCTP steps
costs m + k*r LLM steps for m + k tokens, so the ideal speedup over Vanilla is
(m + k) / (m + k*r): 5.2x for Turbo and 2.75x for Boost at the paper's r = 0.11.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from vita_mini import vocab
from vita_mini.errors import VitaError
from vita_mini.vocab import BALANCE_RATIO, BOOST_RATIO, check_ratio

INF = math.inf
MODES: dict[str, tuple] = {
    "vanilla": (INF, 0),
    "balance": BALANCE_RATIO,
    "boost": BOOST_RATIO,
    "turbo": (1, 10),
}
VALID_FORMS = ("a mode name (vanilla, balance, boost, turbo) or a schedule list M1,m1,M2,m2,... "
               "of even length with every M >= 1 (or inf, last pair only) and every m >= 0, "
               "e.g. 1,10,4,10")


def parse_schedule(spec: str | Sequence, n_modules: int | None = None) -> tuple:
    """A mode name, a list of numbers, or a string like "1,10,4,10" / "[1, 10]" -> a schedule.

    ``n_modules``: when given, no run of m's may need more modules than the cascade has."""
    if isinstance(spec, str) and spec.strip().lower() in MODES:
        schedule = MODES[spec.strip().lower()]
    else:
        items = spec.strip().strip("[]()").split(",") if isinstance(spec, str) else list(spec)
        try:
            schedule = tuple(INF if str(x).strip().lower() == "inf" else int(str(x).strip())
                             for x in items if str(x).strip())
        except ValueError:
            raise VitaError(f"schedule {spec!r}: unknown; use {VALID_FORMS}") from None
    if len(schedule) < 2 or len(schedule) % 2:
        raise VitaError(f"schedule {spec!r}: needs an even number of entries; use {VALID_FORMS}")
    big_m, small_m = schedule[0::2], schedule[1::2]
    if any(m < 1 for m in big_m) or any(m < 0 or m == INF for m in small_m):
        raise VitaError(f"schedule {spec!r}: every M must be >= 1 and every m >= 0; use {VALID_FORMS}")
    if INF in big_m[:-1]:
        raise VitaError(f"schedule {spec!r}: only the last M may be inf; use {VALID_FORMS}")
    if n_modules is not None and max(small_m) > n_modules:
        raise VitaError(f"schedule {spec!r} runs {max(small_m)} MCTP steps in a row, but the "
                        f"cascade has {n_modules} modules")
    return schedule


def steps(schedule: tuple) -> Iterator[int]:
    """Who writes each token, forever: -1 for an LLM forward, k >= 0 for MCTP module k."""
    i = 0
    while True:
        pair = min(i, len(schedule) - 2)
        n_llm, n_mctp = schedule[pair], schedule[pair + 1]
        done = 0
        while done < n_llm:  # n_llm may be inf (Vanilla)
            yield -1
            done += 1
        yield from range(int(n_mctp))
        i += 2


def expand(schedule: tuple, n_tokens: int) -> list[int]:
    """The first ``n_tokens`` entries of ``steps(schedule)``."""
    it = steps(schedule)
    return [next(it) for _ in range(n_tokens)]


def ideal_speedup(schedule: tuple, r: float) -> float:
    """(m + k) / (m + k*r) for the repeating last pair [m, k] (1.0 for Vanilla)."""
    m, k = schedule[-2], schedule[-1]
    if m == INF or k == 0:
        return 1.0
    return (m + k) / (m + k * r)


def in_step(schedule: tuple, interleave, n_tokens: int = 512) -> bool:
    """True if, over the first ``n_tokens`` of an answer, the modules write exactly the audio
    chunks of ``interleave`` [t1, a1, t2, a2, ...] and the LLM exactly its text (Vanilla: always).

    Interleave chunk i is t_i text tokens, then a_i audio tokens (BOA, a_i - 2 codes, EOA); the
    last pair repeats, like a schedule's."""
    if max(schedule[1::2]) == 0:
        return True
    # an answer of stand-ins laid out by vocab.interleave: text 0, codes 1, BOA/EOA (ids > 1)
    answer = vocab.interleave([0] * n_tokens, [1] * n_tokens, interleave)
    return all((writer >= 0) == (token != 0) for writer, token in zip(expand(schedule, n_tokens), answer))


def own_mode(interleave) -> str:
    """The inference mode a model trained on ``interleave`` runs by default: the named mode in
    step with it (boost for the Boost interleave), else the interleave itself as a schedule."""
    for name, schedule in MODES.items():
        if name != "vanilla" and in_step(schedule, interleave):
            return name
    return ",".join(str(x) for x in check_ratio(interleave))


def step_note(mode, interleave) -> str | None:
    """One line if ``mode``'s schedule is out of step with a model's training ``interleave``."""
    schedule = parse_schedule(mode)
    if in_step(schedule, interleave):
        return None
    return (f"note: mode {mode} {describe(schedule)} is out of step with this model's training "
            f"interleave {describe(tuple(interleave))}: its MCTP modules will write tokens of a "
            f"kind they did not learn to write at those places (its own mode: {own_mode(interleave)})")


def describe(schedule: tuple) -> str:
    return "[" + ", ".join("inf" if x == INF else str(int(x)) for x in schedule) + "]"
