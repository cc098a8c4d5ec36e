"""The generation engine: LLM forwards and MCTP steps, interleaved by a schedule.

VITA-Audio's inference (tutorials/paper.md §5): a schedule (infer/schedule.py) says, for
every new token, whether the LLM writes it (one forward) or MCTP module k does (one light step).
MCTP tokens are accepted as they are, without verification (as in the paper; infer/verified.py
treats them as drafts the LLM checks).

Bookkeeping, for a sequence x_0 .. x_{n-1} (prompt + everything generated so far):

* The LLM has a KV cache over the first ``llm_len`` positions and their hidden states h_q. An LLM
  step ingests *every* token it has not seen (after a run of MCTP steps that is several) in one
  forward and picks x_n from the last position's logits.
* Module k has its own KV cache over its first ``mod_len[k]`` positions and its output states
  h^k_q. Module k runs at the last position q = n-1: its input there is x_q and h^{k-1}_{q-1} (the
  LLM's state for k = 0), and it picks x_n. Its cache may lag behind (it did not run while other
  modules or the LLM wrote tokens), so it first catches up, lazily: one forward over every
  position from ``mod_len[k]`` to q, whose inputs are all known by then - the LLM has seen up to
  q-1 when module 0 runs, and module k-1 has just run at q-1.
* At position 0 there is no previous state; modules read zeros there, as in training.

So every position is computed once by the LLM and at most once by each module, never twice,
and everything the modules compute equals a teacher-forced forward of the cascade over the
finished sequence (tested in tests/test_engine.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from vita_mini.errors import VitaError
from vita_mini.infer.decode import check_prompt
from vita_mini.infer.decoding_layout import use_decoding_layout
from vita_mini.infer.sampling import Sampling, choose
from vita_mini.infer.schedule import parse_schedule, steps
from vita_mini.model.llm import LLM, KVCache
from vita_mini.model.mctp import MCTP
from vita_mini.vocab import BOA, END, EOA, is_audio


def check_confidence(min_confidence: float | tuple[float, float]) -> tuple[float, float]:
    """A confidence threshold, or a pair (text, audio) -> the pair (text, audio)."""
    pair = tuple(min_confidence) if isinstance(min_confidence, (tuple, list)) else (min_confidence,) * 2
    if len(pair) != 2 or not all(0.0 <= t < 1.0 for t in pair):
        raise VitaError(f"confidence threshold {min_confidence}: must lie in [0, 1), or be a pair "
                        f"(text, audio) of such (0 = the schedule's full runs; a module writes only "
                        f"when its top probability reaches the threshold)")
    return pair


def unsure(logits: torch.Tensor, thresholds: tuple[float, float]) -> bool:
    """True if the most likely token under ``logits`` has a probability below the threshold of
    its kind: thresholds[1] for audio (codes, BOA, EOA), thresholds[0] for every other token."""
    top = logits.float().softmax(-1).max(-1)
    token = int(top.indices)
    return float(top.values) < thresholds[1 if is_audio(token) or token in (BOA, EOA) else 0]


@dataclass
class Token:
    id: int
    source: int  # -1: written by the LLM; k >= 0: written by MCTP module k


class Engine:
    """Generation with an LLM and (optionally) its MCTP cascade. One sequence at a time."""

    def __init__(self, llm: LLM, mctp: MCTP | None = None):
        self.llm, self.mctp = llm.eval(), None if mctp is None else mctp.eval()
        self.device = llm.lm_head.weight.device
        self.dtype = llm.lm_head.weight.dtype
        for model in (llm, mctp):
            if model is not None:
                use_decoding_layout(model)

    def check_schedule(self, schedule) -> tuple:
        schedule = parse_schedule(schedule)
        if max(schedule[1::2]) > 0:
            if self.mctp is None:
                raise VitaError("this schedule needs MCTP modules, but the checkpoint has none: "
                                "train them with python train.py --stage 2, then --stage 3 "
                                "(or use --mode vanilla)")
            parse_schedule(schedule, len(self.mctp))
        return schedule

    # ---- state ------------------------------------------------------------------------------
    def _reset(self, prompt: list[int], max_len: int) -> None:
        C = self.llm.cfg.d_model
        self.ids = torch.zeros(1, max_len, dtype=torch.long, device=self.device)
        self.ids[0, :len(prompt)] = torch.tensor(prompt)
        self.n = len(prompt)
        self.llm_cache = self.llm.new_cache(1, max_len, self.device, self.dtype)
        self.llm_len = 0
        self.llm_hidden = torch.zeros(max_len, C, device=self.device, dtype=self.dtype)
        n_mods = 0 if self.mctp is None else len(self.mctp)
        self.mod_caches = [KVCache(1, self.llm.cfg.n_kv_heads, max_len, self.llm.head_dim,
                                   self.device, self.dtype) for _ in range(n_mods)]
        self.mod_len = [0] * n_mods
        self.mod_hidden = torch.zeros(n_mods, max_len, C, device=self.device, dtype=self.dtype)

    def _append(self, token: int) -> None:
        self.ids[0, self.n] = token
        self.n += 1

    # ---- the two kinds of step --------------------------------------------------------------
    def llm_step(self) -> torch.Tensor:
        """Ingest every unseen token in one forward; logits [V] for the next token."""
        start, end = self.llm_len, self.n
        logits, hidden = self.llm(self.ids[:, start:end], cache=self.llm_cache,
                                  logits_for_last_only=True)  # [1, 1, V], [1, T, C]
        self.llm_hidden[start:end] = hidden[0]
        self.llm_len = end
        return logits[0, -1]

    def module_step(self, k: int) -> torch.Tensor:
        """Module k at the last position (catching up first); logits [V] for the next token.

        The catch-up is one cached forward over positions mod_len[k] .. q; its attention builds
        the offset causal mask itself (Attention.attend_cached)."""
        q = self.n - 1
        start = self.mod_len[k]
        source = self.llm_hidden if k == 0 else self.mod_hidden[k - 1]
        ready = self.llm_len if k == 0 else self.mod_len[k - 1]
        if ready < q:
            raise RuntimeError(f"module {k} at position {q} needs states up to {q - 1}")
        prev = source[max(start - 1, 0):q]  # [T, C], T = q + 1 - start (T - 1 rows at 0)
        if start == 0:  # nothing before position 0: zeros, as in training
            prev = torch.cat([torch.zeros_like(source[:1]), prev])
        llm = self.llm
        cos, sin = llm.rotary_emb(torch.arange(start, q + 1, device=self.device), self.dtype)
        h = self.mctp.mods[k](llm, llm.embed(self.ids[:, start:q + 1]), prev[None], cos, sin,
                              self.mod_caches[k])  # [1, T, C]
        self.mod_hidden[k, start:q + 1] = h[0]
        self.mod_len[k] = q + 1
        return llm.lm_head(h[0, -1])

    # ---- generation -------------------------------------------------------------------------
    def start(self, prompt: list[int], max_new_tokens: int, schedule, sampling: Sampling | None,
              min_confidence: float | tuple[float, float]) -> tuple:
        """Check a generation's arguments and empty the caches -> (schedule, max_new_tokens capped
        at llm.max_seq_len, the sampling generator or None when greedy)."""
        schedule = self.check_schedule(schedule)
        self.thresholds = check_confidence(min_confidence)  # (text, audio)
        check_prompt(prompt, self.llm.cfg.max_seq_len)
        max_new_tokens = min(max_new_tokens, self.llm.cfg.max_seq_len - len(prompt))
        self._reset(prompt, len(prompt) + max_new_tokens)
        greedy = sampling is None or sampling.greedy
        generator = None if greedy else torch.Generator(self.device).manual_seed(sampling.seed)
        return schedule, max_new_tokens, generator

    @torch.no_grad()
    def generate(self, prompt: list[int], max_new_tokens: int, schedule="vanilla",
                 sampling: Sampling | None = None, stop: int | None = END,
                 min_confidence: float | tuple[float, float] = 0.0) -> Iterator[Token]:
        """Yield new tokens one by one (with who wrote them) until ``stop`` (yielded too) or
        ``max_new_tokens``. The context is capped at llm.max_seq_len.

        ``min_confidence`` > 0: adaptive depth (beyond the paper). A module whose most likely
        token has a probability below it does not write: the LLM takes that turn, and the
        module run ends there (the LLM forward counts as the schedule's next LLM step). A pair
        (text, audio) sets one threshold per kind of the module's most likely token (audio:
        codes, BOA and EOA)."""
        schedule, max_new_tokens, generator = self.start(prompt, max_new_tokens, schedule, sampling,
                                                         min_confidence)
        adaptive = max(self.thresholds) > 0
        sampling = sampling or Sampling()
        who = steps(schedule)
        for _ in range(max_new_tokens):
            source = next(who)
            if source < 0:
                logits = self.llm_step()
            else:
                logits = self.module_step(source)
                if adaptive and unsure(logits, self.thresholds):
                    while source >= 0:  # the run ends; the LLM writes this token instead
                        source = next(who)
                    logits = self.llm_step()
            seen = self.ids[0, :self.n] if sampling.repetition_penalty != 1.0 else None
            token = choose(logits, sampling, seen, generator)
            self._append(token)
            yield Token(token, source)
            if token == stop:
                return

    def generate_ids(self, prompt: list[int], max_new_tokens: int, schedule="vanilla",
                     sampling: Sampling | None = None, stop: int | None = END,
                     min_confidence: float | tuple[float, float] = 0.0) -> list[int]:
        return [t.id for t in self.generate(prompt, max_new_tokens, schedule, sampling, stop, min_confidence)]
