"""Verified MCTP decoding: the modules' tokens are drafts that the LLM checks (beyond the paper).

VITA-Audio accepts every MCTP token as it is (tutorials/paper.md §5), trading quality for speed.
Speculative decoding (Leviathan et al., 2023; Medusa; EAGLE; DeepSeek-V3's multi-token
prediction, paper.md §9) treats such tokens as drafts instead: the LLM's next forward reads them
anyway (the catch-up forward over k+1 tokens), so it can score them almost for free. Greedy
verification keeps a draft while it equals the LLM's own choice at its position; at the first
that does not, the LLM's token replaces it and the drafts after it are dropped, from the sequence
and from every KV cache. The output is then Vanilla's, token for token, and each LLM forward
yields 1 + (drafts accepted) tokens instead of one.

One cycle, with s the position of the last token the LLM wrote (already verified) and k drafts
at s+1 .. s+k written by modules 0 .. k-1:

    LLM forward over s .. s+k          logits at s+j-1 give the LLM's choice for position s+j
    a = drafts equal to those choices, counted from the first
    a < k: position s+a+1 gets the LLM's choice; s+a+2 .. s+k are dropped (caches cut back)
    a = k: every draft stands, and the logits at s+k give one more token, at s+k+1

Sampling (temperature > 0) uses the speculative rejection rule (Leviathan et al., 2023; Chen et
al., 2023): a draft x that module k drew from its distribution q is kept with probability
min(1, p(x) / q(x)), p being the LLM's distribution at that position under the same temperature,
top-k and top-p; the first draft rejected is replaced by a token drawn from max(0, p - q),
renormalised; after a run with nothing rejected, one more token is drawn from p. Each token then
follows exactly the LLM's distribution, as in Vanilla sampling (tests/test_verified.py checks it
with a chi-square test). The repetition penalty, which makes p depend on the tokens before, is
not supported here.

Only verified tokens are yielded, so a stream (infer/stream.py) never shows a token, or an audio
chunk, that is later taken back.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from vita_mini.errors import VitaError
from vita_mini.infer.engine import Engine, Token, unsure
from vita_mini.infer.sampling import Sampling, choose, probabilities
from vita_mini.infer.schedule import steps
from vita_mini.vocab import END


class VerifiedEngine(Engine):
    """The engine with MCTP tokens as drafts the LLM verifies. ``acceptance`` holds,
    per LLM forward of the last generation, (drafts it checked, drafts it accepted)."""

    def rollback(self, keep: int) -> None:
        """Forget every position from ``keep`` on: the sequence, the LLM's cache and each
        module's cache end at keep - 1 (a cache that had not reached it stays as it is)."""
        self.n = keep
        self.llm_len = min(self.llm_len, keep)
        for layer_cache in self.llm_cache:
            layer_cache.length = self.llm_len
        for k, cache in enumerate(self.mod_caches):
            self.mod_len[k] = min(self.mod_len[k], keep)
            cache.length = self.mod_len[k]

    def verify_step(self, drafts: list[Token], draft_probs: list[torch.Tensor], sampling: Sampling,
                    generator: torch.Generator | None) -> list[Token]:
        """One LLM forward over every unseen position, the last len(drafts) of them drafts ->
        the drafts it accepts and the LLM's own next token (the caches cut back to match).
        ``draft_probs``: when sampling, the distribution each draft was drawn from."""
        start, end = self.llm_len, self.n
        logits, hidden = self.llm(self.ids[:, start:end], cache=self.llm_cache)  # [1, T, V], [1, T, C]
        first = end - len(drafts)  # position of the first draft; logits[0, i] are for start+i+1
        # rows[j]: the LLM's logits for draft j's position; rows[len(drafts)]: for the one after
        accepted, token = self.check_drafts(drafts, logits[0, first - 1 - start:], draft_probs, sampling, generator)
        keep = first + accepted  # positions 0 .. keep-1 stand
        self.llm_hidden[start:end] = hidden[0]
        self.llm_len = end
        self.rollback(keep)
        self._append(token)
        self.acceptance.append((len(drafts), accepted))
        return drafts[:accepted] + [Token(token, -1)]

    def check_drafts(self, drafts: list[Token], rows: torch.Tensor, draft_probs: list[torch.Tensor],
                     sampling: Sampling, generator: torch.Generator | None) -> tuple[int, int]:
        """The verification rule -> (drafts accepted, counted from the first; the LLM's token at
        the position after them). ``rows`` [len(drafts) + 1, V]: the LLM's logits for each
        draft's position and for the position after the last."""
        for j, draft in enumerate(drafts):
            if sampling.greedy:
                choice = int(rows[j].argmax())
                if draft.id != choice:
                    return j, choice
            else:
                p, q = probabilities(rows[j], sampling), draft_probs[j]
                if torch.rand(1, generator=generator).item() * q[draft.id] >= p[draft.id]:
                    # rejected (a draft x is kept with probability min(1, p(x) / q(x))):
                    # the token comes from the residual max(0, p - q), renormalised
                    residual = (p - q).clamp(min=0)
                    return j, int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
        # every draft stands: the LLM's token after the last one
        return len(drafts), choose(rows[len(drafts)], sampling, None, generator)

    @torch.no_grad()
    def generate(self, prompt: list[int], max_new_tokens: int, schedule="turbo",
                 sampling: Sampling | None = None, stop: int | None = END,
                 min_confidence: float | tuple[float, float] = 0.0) -> Iterator[Token]:
        """Yield verified tokens (with who wrote them) until ``stop`` or ``max_new_tokens``:
        the schedule's MCTP runs are drafts, each LLM forward checks the run before it.
        ``min_confidence`` > 0 (or a pair (text, audio), as in ``Engine.generate``): a run of
        drafts ends at the first module whose most likely token's probability is below it
        (that module's draft is not used)."""
        if self.mctp is None:
            raise VitaError("verified decoding checks the MCTP modules' drafts, but the checkpoint has "
                            "none: train them with python train.py --stage 2, then --stage 3")
        sampling = sampling or Sampling()
        if sampling.repetition_penalty != 1.0:
            raise VitaError(f"verified decoding takes no repetition penalty (got "
                            f"{sampling.repetition_penalty}): leave --repetition-penalty at 1")
        schedule, max_new_tokens, generator = self.start(prompt, max_new_tokens, schedule, sampling,
                                                         min_confidence)
        adaptive = max(self.thresholds) > 0
        self.acceptance = []
        who = steps(schedule)
        drafts: list[Token] = []
        draft_probs: list[torch.Tensor] = []  # when sampling: the distribution of each draft
        produced, drafting = 0, True  # drafting: False once this run's drafts are done
        while produced < max_new_tokens:
            source = next(who)
            if source >= 0:  # a draft, if there is room for it and the LLM's token after it
                drafting = drafting and produced + len(drafts) + 1 < max_new_tokens \
                    and not (drafts and drafts[-1].id == stop)
                if drafting:
                    logits = self.module_step(source)
                    if adaptive and unsure(logits, self.thresholds):
                        drafting = False  # the run ends here: the LLM checks what there is
                        continue
                    if sampling.greedy:
                        token = int(logits.argmax())
                    else:
                        draft_probs.append(probabilities(logits, sampling))
                        token = int(torch.multinomial(draft_probs[-1], 1, generator=generator))
                    self._append(token)
                    drafts.append(Token(token, source))
                continue
            verified = self.verify_step(drafts, draft_probs, sampling, generator)
            drafts, draft_probs, drafting = [], [], True
            for token in verified:
                yield token
                produced += 1
                if token.id == stop or produced == max_new_tokens:
                    return
